"""The web application of `sr3 serve`: an upscale page with its JSON API, or SR3's 2AFC study.

Every asset (page, script, style, example images) ships in the package; the page loads nothing from the
network. Models are chosen by name from the server's own list, never by a path from the request; uploads
are checked (size, format, truncation, pixel count, decompression bombs) before they queue, and every
refusal is a 4xx with a one-line message the page shows.
"""

from __future__ import annotations

import json
import tempfile
import threading
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from importlib import resources
from io import BytesIO
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from sr3 import study
from sr3.errors import ImageTooLarge, SR3Error
from sr3.imaging import open_image, save_image
from sr3.pretrained import DEFAULT_MODEL, PRETRAINED, UPSCALING_CASCADES
from sr3.serve.jobs import Job, JobQueue, QueueFull
from sr3.upscaler import Upscaler, UpscaleSettings, load_upscaler

STATIC = Path(str(resources.files("sr3") / "serve" / "static"))
MAX_STEPS = 1000


@dataclass(frozen=True)
class ServeConfig:
    """What one server offers and accepts."""

    models: dict[str, str]  # name shown -> a shipped model or SR-only cascade, or a run's or cascade's path
    default_model: str = DEFAULT_MODEL
    max_pixels: int = 1_000_000  # input pixels per upload
    max_output_pixels: int = 16_000_000  # output pixels per job: a 16x cascade takes inputs of a 16th of a 4x model's
    max_upload_bytes: int = 20 * 2**20
    max_waiting_jobs: int = 16  # one more upload is refused with 429 until some have run
    device: str = "cpu"
    study: Path | None = None
    show_seconds: float = 3.0  # how long a study pair stays on screen


def offered_models(model: str) -> tuple[dict[str, str], str]:
    """The shipped SR models and SR-only cascades, plus a run, weights file or cascade given as
    `sr3 serve --model PATH`, and the name of `model` among them (preselected on the page)."""
    models = {name: name for name in PRETRAINED}
    models |= {name: name for name in UPSCALING_CASCADES}
    if model in models:
        return models, model
    load_upscaler(model)  # a path that is no upscaler fails at start
    models[Path(model).name] = model
    return models, Path(model).name


class ApiError(Exception):
    """A refused request: its HTTP status and the message the page shows."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Models:
    """Upscalers loaded on first use and kept (the shipped ones are a few MB each)."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self._loaded: dict[str, Upscaler] = {}
        self._lock = threading.Lock()

    def check(self, name: str) -> None:
        if name not in self.cfg.models:
            raise ApiError(422, f"unknown model '{name[:40]}'; this server offers: {', '.join(self.cfg.models)}")

    def get(self, name: str) -> Upscaler:
        self.check(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_upscaler(self.cfg.models[name], self.cfg.device)
            return self._loaded[name]

    def configured(self, name: str, steps: int | None, denoise: float | str) -> Upscaler:
        """The upscaler `name` with a job's settings, or the ApiError (422) that says why it takes none such."""
        try:
            return self.get(name).configured(UpscaleSettings(steps=steps, denoise=denoise))
        except SR3Error as exc:
            raise ApiError(422, str(exc)) from None

    def describe(self) -> list[dict]:
        out = []
        for name in self.cfg.models:
            up = self.get(name)
            description = PRETRAINED.get(name) or UPSCALING_CASCADES.get(name) or self.cfg.models[name]
            out.append({"name": name, "description": description, "default": name == self.cfg.default_model,
                        **up.describe()})
        return out

    def max_pixels(self, name: str) -> int:
        """The input pixels a job of this model may have: the upload limit, or less where the output would pass its own."""
        return min(self.cfg.max_pixels, self.cfg.max_output_pixels // self.get(name).scale ** 2)

    def run(self, job: Job, progress) -> tuple[Image.Image, dict]:
        upscaler = self.configured(job.model, job.steps, job.denoise)
        [(result, record)] = upscaler.upscale([open_image(job.input_path)], [job.seed], _counter(progress, upscaler.steps))
        return result, record


def _counter(progress, total: int):
    """A sampler callback that reports (steps done, total) to `progress`, starting at 0."""
    done = 0
    progress(0, total)

    def step(_):
        nonlocal done
        done += 1
        progress(done, total)

    return step


def check_upload(data: bytes, name: str, cfg: ServeConfig, max_pixels: int) -> None:
    """Refuse an upload that is no readable image within the limits, with the ApiError that says why."""
    if not data:
        raise ApiError(400, "the upload is empty: choose an image file")
    if len(data) > cfg.max_upload_bytes:
        raise ApiError(413, _too_big(len(data), cfg))
    try:
        open_image(BytesIO(data), max_pixels=max_pixels, name=name)
    except ImageTooLarge as exc:
        raise ApiError(413, str(exc)) from None
    except SR3Error as exc:
        raise ApiError(400, str(exc)) from None


def _too_big(size: int, cfg: ServeConfig) -> str:
    return f"the upload is {size / 2**20:.1f} MB; this server takes at most {cfg.max_upload_bytes / 2**20:.1f} MB"


def _int_field(form, key: str, low: int, high: int) -> int | None:
    text = str(form.get(key) or "").strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit() or not low <= int(text) <= high:
        raise ApiError(422, f"{key} must be a whole number from {low} to {high}; got '{text[:20]}'")
    return int(text)


def _denoise_field(form) -> float | str:
    """The form's denoise strength: "auto" or a number (none is 0); the model checks its range."""
    text = str(form.get("denoise") or "0").strip()
    try:
        return text if text == "auto" else float(text)
    except ValueError:
        raise ApiError(422, f"denoise must be a number from 0 to 1 or 'auto'; got '{text[:20]}'") from None


def _mime(data: bytes) -> str:
    """The media type of image bytes already checked to be an image."""
    with Image.open(BytesIO(data)) as img:
        return Image.MIME.get(img.format or "", "application/octet-stream")


def _examples() -> list[str]:
    return sorted(p.name for p in (STATIC / "examples").glob("*.png"))


def create_app(cfg: ServeConfig) -> FastAPI:
    """The application: the upscale page and API, or, with `cfg.study`, the study page and its API."""
    workdir = tempfile.TemporaryDirectory(prefix="sr3-serve-")
    models = Models(cfg)
    state: dict[str, JobQueue] = {}

    @asynccontextmanager
    async def lifespan(app):
        if cfg.study is None:
            state["queue"] = JobQueue(Path(workdir.name), models.run, save_image, max_waiting=cfg.max_waiting_jobs)
        yield
        if "queue" in state:
            state["queue"].close()
        workdir.cleanup()

    app = FastAPI(title="sr3", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    if cfg.study is not None:
        _study_routes(app, cfg)
        return app

    @app.get("/")
    def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/api/models")
    def list_models():
        return {"models": models.describe(), "examples": _examples(), "max_pixels": cfg.max_pixels,
                "max_upload_bytes": cfg.max_upload_bytes, "max_steps": MAX_STEPS}

    @app.post("/api/jobs", status_code=202)
    async def submit(request: Request):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > cfg.max_upload_bytes + 2**16:
            raise ApiError(413, _too_big(int(length), cfg))
        try:
            form = await request.form(max_files=1, max_fields=8)
        except MultiPartException as exc:
            raise ApiError(400, f"the upload is not a valid form: {exc.message}") from None
        model = str(form.get("model") or cfg.default_model)
        models.check(model)  # before the image is read
        steps = _int_field(form, "steps", 1, MAX_STEPS)
        seed = _int_field(form, "seed", 0, 2**31 - 1) or 0
        denoise = _denoise_field(form)
        models.configured(model, steps, denoise)  # the job's settings are checked before the image is read
        upload, example = form.get("file"), str(form.get("example") or "")
        if example:
            if example not in _examples():
                raise ApiError(422, f"no example named '{example[:40]}'")
            data, name = (STATIC / "examples" / example).read_bytes(), example
        elif upload is not None and hasattr(upload, "read"):
            data = await upload.read(cfg.max_upload_bytes + 1)
            name = Path(upload.filename or "upload").name
            check_upload(data, name, cfg, models.max_pixels(model))
        else:
            raise ApiError(400, "send an image file (field 'file') or an example name (field 'example')")
        try:
            job = state["queue"].submit(model, steps, seed, data, name, denoise)
        except QueueFull as exc:
            raise ApiError(429, str(exc)) from None
        return {"id": job.id, "position": state["queue"].position(job.id)}

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        job = _job(job_id)
        body = {"id": job.id, "status": job.status, "position": state["queue"].position(job.id), "model": job.model,
                "done_steps": job.done_steps, "total_steps": job.total_steps, "error": job.error, "seed": job.seed,
                "input": f"/api/jobs/{job.id}/input", "name": job.input_name}
        if job.status == "done":
            body |= {"width": job.result_size[0], "height": job.result_size[1], "result": f"/api/jobs/{job.id}/result"}
        return body

    @app.get("/api/jobs/{job_id}/result")
    def job_result(job_id: str):
        job = _job(job_id)
        if job.status != "done":
            raise ApiError(409, f"job {job_id} is {job.status}, not done")
        stem = Path(job.input_name).stem
        return FileResponse(job.result_path, media_type="image/png", filename=f"{stem}_sr3.png")

    @app.get("/api/jobs/{job_id}/input")
    def job_input(job_id: str):
        data = _job(job_id).input_path.read_bytes()
        return Response(data, media_type=_mime(data))

    def _job(job_id: str) -> Job:
        job = state["queue"].get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id[:40]} (finished jobs are kept for an hour)")
        return job

    return app


def _study_routes(app: FastAPI, cfg: ServeConfig) -> None:
    """The 2AFC study page and its API over the study file."""
    with closing(study.connect(cfg.study)):  # a missing or foreign file fails at start, not per request
        pass

    def db():
        return closing(study.connect(cfg.study))

    @app.get("/")
    def page():
        return FileResponse(STATIC / "study.html")

    @app.get("/api/study/next")
    def next_trial(participant: str = ""):
        try:
            participant = study.check_participant(participant)
        except SR3Error as exc:
            raise ApiError(422, str(exc)) from None
        with db() as conn:
            trial, done, total = study.next_trial(conn, participant)
        body = {"done": done, "total": total, "show_seconds": cfg.show_seconds, "trial": None}
        if trial is not None:
            url = "/api/study/image/{}".format
            body["trial"] = {"id": trial.id, "task": trial.task, "question": trial.question, "left": url(trial.left),
                             "right": url(trial.right), "lr": url(trial.lr) if trial.lr is not None else None}
        return body

    @app.get("/api/study/image/{image_id}")
    def image(image_id: int):
        with db() as conn:
            data = study.image_data(conn, image_id)
        if data is None:
            raise ApiError(404, f"no image {image_id} in this study")
        return Response(data, media_type=_mime(data))

    @app.post("/api/study/answer")
    async def answer(request: Request):
        try:
            body = json.loads(await request.body())
            participant = study.check_participant(str(body["participant"]))
            trial, choice = int(body["trial"]), body["choice"]
            seconds = float(body["seconds"]) if body.get("seconds") is not None else None
        except (ValueError, KeyError, TypeError):
            raise ApiError(422, "an answer is JSON {participant, trial, choice: left|right, seconds}") from None
        except SR3Error as exc:
            raise ApiError(422, str(exc)) from None
        if choice not in ("left", "right"):
            raise ApiError(422, "choice must be 'left' or 'right'")
        with db() as conn:
            try:
                recorded = study.record_answer(conn, participant, trial, choice == "left", seconds)
            except SR3Error as exc:
                raise ApiError(404, str(exc)) from None
        if not recorded:
            raise ApiError(409, f"trial {trial} was already answered by {participant}")
        return {"recorded": True}
