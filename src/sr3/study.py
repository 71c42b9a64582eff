"""SR3's human study (two-alternative forced choice): trials in one SQLite file, answers, fool rates.

A study file holds every image it shows (so it can be copied to another machine and served there), its
trials and the answers. Two tasks, as in the SR3 paper: task 1 shows the LR image between a real HR image
and a model's output ("which is the better high-quality version of the middle image?"); task 2 shows the
pair alone ("which came from a camera?"). A participant is fooled when they pick the model's output; the
fool rate is the fraction of answers that did (50%: people cannot tell, 0%: they always can). Left and
right are drawn per trial from the creation seed. Each answer is one committed transaction, so a server
killed at any moment keeps every answer it acknowledged.
"""

from __future__ import annotations

import csv
import random
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sr3.errors import SR3Error
from sr3.imaging import list_images, open_image
from sr3.metrics.perceptual import wilson_interval

TASKS = {
    1: "Which is the better high-quality version of the middle image?",
    2: "Which came from a camera?",
}

SCHEMA = """
CREATE TABLE images (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE trials (
    id INTEGER PRIMARY KEY,
    task INTEGER NOT NULL,
    model TEXT NOT NULL,
    name TEXT NOT NULL,
    real_image INTEGER NOT NULL REFERENCES images(id),
    fake_image INTEGER NOT NULL REFERENCES images(id),
    lr_image INTEGER REFERENCES images(id),
    real_left INTEGER NOT NULL
);
CREATE TABLE answers (
    participant TEXT NOT NULL,
    trial INTEGER NOT NULL REFERENCES trials(id),
    chose_left INTEGER NOT NULL,
    fooled INTEGER NOT NULL,
    seconds REAL,
    answered_at TEXT NOT NULL DEFAULT (datetime('now')),
    PRIMARY KEY (participant, trial)
);
"""


@dataclass(frozen=True)
class Trial:
    """One 2AFC question as a participant sees it: image ids left and right, the LR image id for task 1."""

    id: int
    task: int
    left: int
    right: int
    lr: int | None

    @property
    def question(self) -> str:
        return TASKS[self.task]


@dataclass(frozen=True)
class FoolRate:
    """The answers of one (model, task): how many, how many fooled, the rate and its 95% Wilson interval."""

    model: str
    task: int
    answers: int
    fooled: int

    @property
    def rate(self) -> float:
        return self.fooled / self.answers if self.answers else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.fooled, self.answers) if self.answers else (float("nan"), float("nan"))


def connect(path: str | Path, create: bool = False) -> sqlite3.Connection:
    """A connection to a study file (refusing a missing or foreign file), with durable commits."""
    path = Path(path)
    if not create and not path.is_file():
        raise SR3Error(f"no study file {path}; make one with `sr3 study create`")
    db = sqlite3.connect(path, timeout=30, isolation_level=None)  # explicit transactions only
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    if not create:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"images", "trials", "answers"} <= tables:
            db.close()
            raise SR3Error(f"{path} is not an sr3 study file")
    return db


def _matching(folder: Path, names: list[str], what: str) -> dict[str, Path]:
    files = {p.stem: p for p in list_images(folder)}
    missing = [n for n in names if n not in files]
    if missing:
        raise SR3Error(f"{what} {folder} has no image named {missing[0]} (of {len(missing)} missing)")
    return {n: files[n] for n in names}


def _image_bytes(path: Path) -> bytes:
    open_image(path)  # a broken file is named now, not when a participant meets it
    return path.read_bytes()


def create_study(
    path: str | Path,
    real: str | Path,
    fakes: dict[str, str | Path],
    lr: str | Path | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> int:
    """Write a study file: for every model and every image of `real` (by file stem), a task-2 trial, and a
    task-1 trial too when `lr` is given. Returns the number of trials. Refuses to overwrite a file."""
    path = Path(path)
    if path.exists():
        raise SR3Error(f"{path} already exists; choose a new study file")
    if not fakes:
        raise SR3Error("give at least one model's outputs with --fake NAME=DIR")
    names = [p.stem for p in list_images(real)][:limit]
    if not names:
        raise SR3Error(f"no images in {real}")
    real_files = _matching(Path(real), names, "--real")
    fake_files = {model: _matching(Path(d), names, f"--fake {model}") for model, d in fakes.items()}
    lr_files = _matching(Path(lr), names, "--with-lr") if lr else None
    rng = random.Random(seed)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    count = 0
    with closing(connect(tmp, create=True)) as db:
        db.executescript(SCHEMA)
        db.execute("BEGIN")
        ids: dict[Path, int] = {}

        def image(p: Path) -> int:
            if p not in ids:
                ids[p] = db.execute("INSERT INTO images (data) VALUES (?)", (_image_bytes(p),)).lastrowid
            return ids[p]

        for model, files in fake_files.items():
            for name in names:
                for task in (1, 2) if lr_files else (2,):
                    lr_id = image(lr_files[name]) if task == 1 else None
                    db.execute(
                        "INSERT INTO trials (task, model, name, real_image, fake_image, lr_image, real_left)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (task, model, name, image(real_files[name]), image(files[name]), lr_id, rng.random() < 0.5),
                    )
                    count += 1
        db.execute("COMMIT")
        db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to copy
    tmp.replace(path)
    return count


def trial_order(db: sqlite3.Connection, participant: str) -> list[int]:
    """Every trial id in this participant's own order (seeded by the id), so neighbours do not see one order."""
    ids = [row[0] for row in db.execute("SELECT id FROM trials ORDER BY id")]
    random.Random(f"sr3-study:{participant}").shuffle(ids)
    return ids


def check_participant(participant: str) -> str:
    """A participant id: 1 to 64 printable characters."""
    participant = participant.strip()
    if not (0 < len(participant) <= 64) or not participant.isprintable():
        raise SR3Error("a participant id is 1 to 64 printable characters")
    return participant


def next_trial(db: sqlite3.Connection, participant: str) -> tuple[Trial | None, int, int]:
    """The participant's next unanswered trial (None when done), with how many they answered and the total."""
    answered = {row[0] for row in db.execute("SELECT trial FROM answers WHERE participant = ?", (participant,))}
    order = trial_order(db, participant)
    for trial_id in order:
        if trial_id not in answered:
            task, real, fake, lr, real_left = db.execute(
                "SELECT task, real_image, fake_image, lr_image, real_left FROM trials WHERE id = ?", (trial_id,)
            ).fetchone()
            left, right = (real, fake) if real_left else (fake, real)
            return Trial(trial_id, task, left, right, lr), len(answered), len(order)
    return None, len(answered), len(order)


def record_answer(db: sqlite3.Connection, participant: str, trial_id: int, chose_left: bool, seconds: float | None) -> bool:
    """Store one answer in its own committed transaction; False if this participant already answered it."""
    row = db.execute("SELECT real_left FROM trials WHERE id = ?", (trial_id,)).fetchone()
    if row is None:
        raise SR3Error(f"no trial {trial_id} in this study")
    fooled = bool(chose_left) != bool(row[0])  # picked the side the model's output was on
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO answers (participant, trial, chose_left, fooled, seconds) VALUES (?, ?, ?, ?, ?)",
            (participant, trial_id, int(chose_left), int(fooled), seconds),
        )
        db.execute("COMMIT")
    except sqlite3.IntegrityError:
        db.execute("ROLLBACK")
        return False
    return True


def image_data(db: sqlite3.Connection, image_id: int) -> bytes | None:
    row = db.execute("SELECT data FROM images WHERE id = ?", (image_id,)).fetchone()
    return row[0] if row else None


def fool_rates(db: sqlite3.Connection) -> list[FoolRate]:
    """Fool rate per (model, task) over every answer."""
    rows = db.execute(
        "SELECT t.model, t.task, COUNT(a.trial), COALESCE(SUM(a.fooled), 0) FROM trials t"
        " LEFT JOIN answers a ON a.trial = t.id GROUP BY t.model, t.task ORDER BY t.model, t.task"
    )
    return [FoolRate(model, task, n, fooled) for model, task, n, fooled in rows]


def write_report_csv(rates: list[FoolRate], path: str | Path) -> None:
    """The fool-rate table as CSV: model, task, answers, fooled, rate, 95% interval."""
    try:
        with open(path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["model", "task", "answers", "fooled", "fool_rate", "ci95_low", "ci95_high"])
            for r in rates:
                low, high = r.interval
                out.writerow([r.model, r.task, r.answers, r.fooled, f"{r.rate:.4f}", f"{low:.4f}", f"{high:.4f}"])
    except OSError as exc:
        raise SR3Error(f"cannot write {path}: {exc}") from None
