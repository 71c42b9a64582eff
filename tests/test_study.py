"""SR3's 2AFC study: trials from folders, one answer per participant and trial, fool rates with intervals,
answers that survive a killed server."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing

import pytest

from sr3 import study
from sr3.cli.main import main
from sr3.errors import SR3Error
from sr3.metrics.perceptual import wilson_interval

from conftest import photo

NAMES = ("astronaut", "chelsea", "coffee")


@pytest.fixture
def folders(tmp_path):
    """real/, two models' outputs and lr/, with the same three file names (real photos, small)."""
    dirs = {k: tmp_path / k for k in ("real", "sr3", "reg", "lr")}
    for d in dirs.values():
        d.mkdir()
    for name in NAMES:
        img = photo(name).resize((64, 64))
        img.save(dirs["real"] / f"{name}.png")
        img.rotate(1).save(dirs["sr3"] / f"{name}.png")
        img.resize((16, 16)).resize((64, 64)).save(dirs["reg"] / f"{name}.png")
        img.resize((16, 16)).save(dirs["lr"] / f"{name}.png")
    return dirs


def make(folders, tmp_path, lr=True):
    path = tmp_path / "study.sqlite"
    count = study.create_study(path, folders["real"], {"sr3": folders["sr3"], "reg": folders["reg"]},
                               folders["lr"] if lr else None, seed=0)
    return path, count


def test_create_makes_both_tasks_for_every_model_and_image(folders, tmp_path):
    path, count = make(folders, tmp_path)
    assert count == 2 * 3 * 2
    with closing(study.connect(path)) as db:
        tasks = db.execute("SELECT task, COUNT(*) FROM trials GROUP BY task").fetchall()
        assert tasks == [(1, 6), (2, 6)]
        assert db.execute("SELECT COUNT(*) FROM trials WHERE task = 1 AND lr_image IS NULL").fetchone() == (0,)
        sides = [row[0] for row in db.execute("SELECT real_left FROM trials")]
        assert 0 < sum(sides) < len(sides)  # left and right drawn, not fixed
        # the file holds the images themselves: byte for byte the real file
        real = db.execute("SELECT real_image FROM trials WHERE name = 'coffee' LIMIT 1").fetchone()[0]
        assert study.image_data(db, real) == (folders["real"] / "coffee.png").read_bytes()
    with pytest.raises(SR3Error, match="already exists"):
        make(folders, tmp_path)


def test_create_refuses_missing_outputs_and_broken_images(folders, tmp_path):
    (folders["sr3"] / "coffee.png").unlink()
    with pytest.raises(SR3Error, match="--fake sr3 .* no image named coffee"):
        make(folders, tmp_path)
    (folders["sr3"] / "coffee.png").write_bytes(b"not a png")
    with pytest.raises(SR3Error, match="cannot read image"):
        make(folders, tmp_path)
    assert not (tmp_path / "study.sqlite").exists()


def test_answers_are_one_per_trial_and_fool_rates_count_the_fake_side(folders, tmp_path):
    path, count = make(folders, tmp_path, lr=False)
    picks = {}
    with closing(study.connect(path)) as db:
        real_left = dict(db.execute("SELECT id, real_left FROM trials"))
        models = dict(db.execute("SELECT id, model FROM trials"))
        for k in range(count):
            trial, done, total = study.next_trial(db, "p1")
            assert (done, total) == (k, count)
            chose_left = k % 2 == 0
            picks[trial.id] = chose_left
            # what the participant sees: the real image on the side its draw says
            real = db.execute("SELECT real_image FROM trials WHERE id = ?", (trial.id,)).fetchone()[0]
            assert (trial.left == real) == bool(real_left[trial.id])
            assert study.record_answer(db, "p1", trial.id, chose_left, 1.5)
        assert study.next_trial(db, "p1")[0] is None
        assert not study.record_answer(db, "p1", trial.id, True, None)  # one answer per trial
        assert study.next_trial(db, "p2")[1] == 0  # another participant starts afresh
        rates = {(r.model, r.task): r for r in study.fool_rates(db)}
    for model in ("sr3", "reg"):
        fooled = sum(picks[t] != bool(real_left[t]) for t in picks if models[t] == model)
        r = rates[(model, 2)]
        assert (r.answers, r.fooled) == (3, fooled)
        assert r.interval == wilson_interval(fooled, 3)


def test_participants_see_their_own_order():
    class Db:
        def execute(self, *_):
            return [(i,) for i in range(1, 21)]

    a, b = study.trial_order(Db(), "alice"), study.trial_order(Db(), "bob")
    assert sorted(a) == list(range(1, 21)) and a != b and a == study.trial_order(Db(), "alice")


def test_cli_create_and_report_with_csv(folders, tmp_path, capsys):
    out = tmp_path / "s.sqlite"
    assert main(["study", "create", "--real", str(folders["real"]), "--fake", f"sr3={folders['sr3']}",
                 "--with-lr", str(folders["lr"]), "-o", str(out)]) == 0
    assert "6 trials" in capsys.readouterr().out
    with closing(study.connect(out)) as db:
        trial, _, _ = study.next_trial(db, "p")
        study.record_answer(db, "p", trial.id, True, None)
    report = tmp_path / "r.csv"
    assert main(["study", "report", str(out), "--csv", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "| sr3 |" in printed and "no answers" in printed  # one task answered once, the other not at all
    rows = list(csv.DictReader(report.open()))
    assert {r["task"] for r in rows} == {"1", "2"} and sum(int(r["answers"]) for r in rows) == 1
    assert main(["study", "create", "--real", str(folders["real"]), "--fake", "nodir", "-o", str(tmp_path / "x")]) == 2
    assert main(["study", "report", str(tmp_path / "missing.sqlite")]) == 2
    (tmp_path / "foreign.sqlite").write_bytes(b"")
    assert main(["study", "report", str(tmp_path / "foreign.sqlite")]) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_server_keeps_every_answer_it_acknowledged(folders, tmp_path):
    path, count = make(folders, tmp_path, lr=False)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "sr3.cli.main", "serve", "--study", str(path), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        answered = []
        for _ in range(4):
            state = json.load(urllib.request.urlopen(f"{base}/api/study/next?participant=p9"))
            trial = state["trial"]["id"]
            body = json.dumps({"participant": "p9", "trial": trial, "choice": "left", "seconds": 0.5}).encode()
            request = urllib.request.Request(f"{base}/api/study/answer", body, {"Content-Type": "application/json"})
            assert json.load(urllib.request.urlopen(request)) == {"recorded": True}
            answered.append(trial)
    finally:
        os.kill(server.pid, signal.SIGKILL)  # no shutdown, no flush: only what was committed survives
        server.wait()
    with closing(study.connect(path)) as db:
        rows = db.execute("SELECT trial FROM answers WHERE participant = 'p9'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(answered)
