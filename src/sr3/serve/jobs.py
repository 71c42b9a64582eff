"""The sampling queue of `sr3 serve`: one job runs at a time per process, the rest wait their turn.

Diffusion sampling holds the network's activations for a whole image: two at once could exhaust memory, so
jobs run one by one on a worker thread, and a job reports its queue position and its progress (steps done
of the total). A job is addressed by a random id, so a reloaded page can fetch it again; inputs and
results live under the queue's own temporary folder with generated names, and finished jobs are dropped
(files and all) after `keep_seconds` or beyond `keep_jobs`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from sr3.errors import SR3Error


class QueueFull(SR3Error):
    """The queue holds as many waiting jobs as it takes: try again once some have run."""

Status = Literal["queued", "running", "done", "failed"]


@dataclass
class Job:
    """One upscale request and where it stands."""

    id: str
    model: str
    steps: int | None
    seed: int
    input_path: Path
    input_name: str = "image.png"  # the uploaded file's own name, for the download's name only
    denoise: float | str = 0.0  # a strength in [0, 1] or "auto", for models trained with a noise level
    status: Status = "queued"
    done_steps: int = 0
    total_steps: int = 0
    error: str | None = None
    result_path: Path | None = None
    result_size: tuple[int, int] | None = None
    finished_at: float | None = None
    created_at: float = field(default_factory=time.time)


# run(job, progress) -> the upscaled image; progress(done, total) reports sampling steps
Runner = Callable[[Job, Callable[[int, int], None]], tuple[Image.Image, dict]]
Saver = Callable[[Image.Image, Path, dict], None]


class JobQueue:
    """FIFO of jobs run by one worker thread; thread-safe; `close()` stops the worker."""

    def __init__(self, folder: Path, run: Runner, save: Saver, keep_jobs: int = 100, keep_seconds: float = 3600,
                 max_waiting: int = 16):
        """`max_waiting`: jobs that may wait at once; one more is refused (`QueueFull`), so memory and waits stay bounded."""
        self.folder, self._run, self._save = folder, run, save
        self.keep_jobs, self.keep_seconds, self.max_waiting = keep_jobs, keep_seconds, max_waiting
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: list[str] = []
        self._lock = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="sr3-jobs", daemon=True)
        self._worker.start()

    def submit(self, model: str, steps: int | None, seed: int, data: bytes, name: str = "image.png",
               denoise: float | str = 0.0) -> Job:
        """Queue an upscale of an image file's bytes (checked by the caller; kept under a generated name), or raise
        `QueueFull` when `max_waiting` jobs already wait."""
        job_id = secrets.token_urlsafe(12)
        path = self.folder / f"{job_id}-in"
        job = Job(job_id, model, steps, seed, path, name, denoise)
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"the server is busy: {len(self._waiting)} jobs are waiting already; try again in a while")
            path.write_bytes(data)
            self._prune()
            self._jobs[job_id] = job
            self._waiting.append(job_id)
            self._lock.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job_id: str) -> int:
        """How many jobs run or wait ahead of this one (0: it runs now or is finished)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.status != "queued":
                return 0
            running = any(j.status == "running" for j in self._jobs.values())
            return self._waiting.index(job_id) + int(running)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._worker.join(timeout=60)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._jobs[self._waiting.pop(0)]
                job.status = "running"
            self._execute(job)

    def _execute(self, job: Job) -> None:
        def progress(done: int, total: int) -> None:
            job.done_steps, job.total_steps = done, total

        try:
            image, meta = self._run(job, progress)
            path = self.folder / f"{job.id}-out.png"
            tmp = path.with_name(path.name + ".tmp.png")
            self._save(image, tmp, meta)
            tmp.replace(path)
            with self._lock:
                job.result_path, job.result_size, job.status = path, image.size, "done"
        except SR3Error as exc:
            self._fail(job, str(exc))
        except Exception as exc:  # a failed job must not stop the worker serving the others
            self._fail(job, f"sampling failed: {type(exc).__name__}: {exc}")
        finally:
            job.finished_at = time.time()

    def _fail(self, job: Job, message: str) -> None:
        with self._lock:
            job.status, job.error = "failed", message

    def _prune(self) -> None:
        """Drop finished jobs older than keep_seconds, then the oldest finished beyond keep_jobs (lock held)."""
        now = time.time()
        finished = [j for j in self._jobs.values() if j.finished_at is not None]
        stale = [j for j in finished if now - j.finished_at > self.keep_seconds]
        stale += [j for j in finished if j not in stale][: max(0, len(self._jobs) - len(stale) - self.keep_jobs + 1)]
        for job in stale:
            job.input_path.unlink(missing_ok=True)
            if job.result_path:
                job.result_path.unlink(missing_ok=True)
            del self._jobs[job.id]
