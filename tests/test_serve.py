"""`sr3 serve`: the job queue (one at a time, positions, failures, pruning) and the HTTP API against a live
server: upload, progress, result with metadata, and a 4xx with a message for every bad request."""

import io
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

import pytest
import uvicorn
from PIL import Image

from sr3.errors import ImageTooLarge
from sr3.imaging import open_image
from sr3.serve.app import STATIC, ServeConfig, create_app
from sr3.serve.jobs import JobQueue, QueueFull

from conftest import photo, tiny_weights


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(side: int = 40000) -> bytes:
    """A valid PNG header claiming side x side pixels (1.6 G), with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------- the queue


def _wait(predicate, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_jobs_run_one_at_a_time_in_order_and_report_positions(tmp_path):
    release, running, order = threading.Event(), [], []

    def run(job, progress):
        running.append(job.id)
        assert len(running) - len(order) == 1  # never two at once
        progress(1, 2)
        release.wait(10)
        order.append(job.id)
        return Image.new("RGB", (8, 4)), {"seed": job.seed}

    queue = JobQueue(tmp_path, run, lambda img, path, meta: img.save(path))
    a = queue.submit("m", None, 0, b"a")
    assert _wait(lambda: queue.get(a.id).status == "running")
    b, c = queue.submit("m", None, 1, b"b"), queue.submit("m", None, 2, b"c")
    assert (queue.position(a.id), queue.position(b.id), queue.position(c.id)) == (0, 1, 2)
    assert queue.get(a.id).done_steps == 1 and queue.get(a.id).total_steps == 2
    release.set()
    assert _wait(lambda: queue.get(c.id).status == "done")
    assert order == [a.id, b.id, c.id] and queue.get(c.id).result_size == (8, 4)
    assert queue.get(c.id).result_path.is_file() and queue.get(c.id).result_path.parent == tmp_path
    queue.close()


def test_a_failing_job_reports_its_error_and_the_worker_goes_on(tmp_path):
    def run(job, progress):
        if job.seed == 0:
            raise RuntimeError("out of memory")
        return Image.new("RGB", (2, 2)), {}

    queue = JobQueue(tmp_path, run, lambda img, path, meta: img.save(path))
    bad, good = queue.submit("m", None, 0, b"x"), queue.submit("m", None, 1, b"y")
    assert _wait(lambda: queue.get(good.id).status == "done")
    assert queue.get(bad.id).status == "failed" and "out of memory" in queue.get(bad.id).error
    queue.close()


def test_finished_jobs_beyond_the_limit_are_dropped_with_their_files(tmp_path):
    queue = JobQueue(tmp_path, lambda job, progress: (Image.new("RGB", (2, 2)), {}),
                     lambda img, path, meta: img.save(path), keep_jobs=2)
    first = queue.submit("m", None, 0, b"x")
    assert _wait(lambda: queue.get(first.id).status == "done")
    files = [first.input_path, queue.get(first.id).result_path]
    for seed in (1, 2):
        job = queue.submit("m", None, seed, b"x")
        assert _wait(lambda: queue.get(job.id).status == "done")
    assert queue.get(first.id) is None and not any(f.exists() for f in files)
    queue.close()


def test_open_image_refuses_too_many_pixels_and_bombs_from_the_header():
    with pytest.raises(ImageTooLarge, match="at most 100 are accepted"):
        open_image(io.BytesIO(_png_bytes(Image.new("RGB", (20, 10)))), max_pixels=100, name="x.png")
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        open_image(io.BytesIO(_bomb_png()), name="bomb.png")


# ---------------------------------------------------------------- the HTTP API


class LiveServer:
    """The app on a free loopback port, in a thread."""

    def __init__(self, cfg: ServeConfig):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert _wait(lambda: self.server.started)
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server():
    live = LiveServer(ServeConfig(models={"natural-4x": "natural-4x"}, max_pixels=40_000, max_upload_bytes=200_000))
    yield live
    live.close()


def request(server, path, fields=None, files=None):
    """(status, body) of a GET, or of a multipart POST when fields or files are given."""
    url = server.url + path
    if fields is None and files is None:
        req = urllib.request.Request(url)
    else:
        boundary = uuid.uuid4().hex
        parts = []
        for key, value in (fields or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
        for key, (name, data) in (files or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{name}"\r\n'
                         f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        req = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def finished(server, job_id):
    for _ in range(1200):
        status, body, _ = request(server, f"/api/jobs/{job_id}")
        job = json.loads(body)
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("job did not finish")


def test_upload_is_upscaled_with_its_settings_in_the_png(server):
    data = _png_bytes(photo("coffee").resize((48, 32)))
    status, body, _ = request(server, "/api/jobs", {"model": "natural-4x", "steps": "1", "seed": "5"},
                              {"file": ("cup.png", data)})
    assert status == 202, body
    job = finished(server, json.loads(body)["id"])
    assert job["status"] == "done" and (job["width"], job["height"]) == (192, 128)
    assert job["done_steps"] == job["total_steps"] == 1
    status, png, headers = request(server, job["result"])
    result = Image.open(io.BytesIO(png))
    assert status == 200 and result.size == (192, 128)
    assert result.text["sr3:model"] == "natural-4x" and result.text["sr3:seed"] == "5" and result.text["sr3:steps"] == "1"
    assert 'filename="cup_sr3.png"' in headers["content-disposition"]
    assert request(server, job["input"])[1] == data  # the page's "before" image, after a reload too


def test_a_bundled_example_runs(server):
    status, body, _ = request(server, "/api/jobs", {"example": "coffee-96x64.png", "steps": "1"})
    assert status == 202
    job = finished(server, json.loads(body)["id"])
    assert (job["width"], job["height"]) == (384, 256)


def test_the_page_and_its_assets_are_served_from_the_package(server):
    status, page, _ = request(server, "/")
    assert status == 200 and b"/static/app.js" in page
    for asset in ("app.js", "style.css"):
        assert request(server, f"/static/{asset}")[0] == 200
    assert b"http" not in (STATIC / "index.html").read_bytes().replace(b"http-equiv", b"")  # no remote asset
    models = json.loads(request(server, "/api/models")[1])
    assert [m["name"] for m in models["models"]] == ["natural-4x"] and "coffee-96x64.png" in models["examples"]
    assert models["models"][0]["denoise"] is False  # natural-4x was trained with no noise level


@pytest.mark.parametrize(
    "fields, files, status, message",
    [
        ({}, {"file": ("notes.txt", b"hello, not an image")}, 400, "not an image format"),
        ({}, {"file": ("cut.png", _png_bytes(photo("coffee").resize((48, 32)))[:300])}, 400, "cannot read image cut.png"),
        ({}, {"file": ("big.png", _png_bytes(Image.new("RGB", (300, 200))))}, 413, "at most 40,000 are accepted"),
        ({}, {"file": ("bomb.png", _bomb_png())}, 413, "pixels"),
        ({}, {"file": ("huge.png", b"\0" * 300_000)}, 413, "at most 0.2 MB"),
        ({}, {"file": ("empty.png", b"")}, 400, "empty"),
        ({"model": "../../etc/passwd"}, {"file": ("a.png", b"x")}, 422, "unknown model"),
        ({"steps": "0"}, {"file": ("a.png", b"x")}, 422, "steps must be a whole number from 1"),
        ({"seed": "abc"}, {"file": ("a.png", b"x")}, 422, "seed must be a whole number"),
        ({"denoise": "0.5"}, {"file": ("a.png", b"x")}, 422, "not trained with a noise level"),
        ({"denoise": "much"}, {"file": ("a.png", b"x")}, 422, "denoise must be a number from 0 to 1"),
        ({"example": "../app.py"}, None, 422, "no example named"),
        ({"model": "natural-4x"}, None, 400, "send an image file"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(server, fields, files, status, message):
    got, body, _ = request(server, "/api/jobs", fields, files)
    assert got == status, body
    assert message in json.loads(body)["error"]


def test_a_broken_form_is_a_400(server):
    body = b"--abc\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\nxx"  # never closed
    req = urllib.request.Request(server.url + "/api/jobs", body, {"Content-Type": "multipart/form-data; boundary=abc"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and "error" in json.loads(err.value.read())


def test_unknown_jobs_and_paths_are_404s(server):
    got, body, _ = request(server, "/api/jobs/nope")
    assert got == 404 and "no job nope" in json.loads(body)["error"]
    assert request(server, "/nothing-here")[0] == 404


def test_a_model_trained_with_a_noise_level_takes_a_denoise_strength(tmp_path):
    weights = tiny_weights(tmp_path / "aug.safetensors", ["model.augment_embedding=true", "augment.noise_max=0.05"])
    live = LiveServer(ServeConfig(models={"aug": str(weights)}))
    try:
        assert json.loads(request(live, "/api/models")[1])["models"][0]["denoise"] is True
        data = _png_bytes(photo("coffee").resize((24, 16)))
        for denoise in ("auto", "0.5"):
            status, body, _ = request(live, "/api/jobs", {"model": "aug", "steps": "1", "denoise": denoise}, {"file": ("cup.png", data)})
            job = finished(live, json.loads(body)["id"])
            text = Image.open(io.BytesIO(request(live, job["result"])[1])).text
            assert job["status"] == "done" and 0 < float(text["sr3:denoise"]) <= 1 and text["sr3:colour_fix"] == "False"
        assert float(text["sr3:denoise"]) == 0.5
    finally:
        live.close()


def test_an_sr_only_cascade_is_served_like_a_model_with_its_stages_in_the_png(tmp_path):
    tiny_weights(tmp_path / "a.safetensors", ["data.hr_size=32", "data.scale=2", "sampler.steps=1"], 2)
    tiny_weights(tmp_path / "b.safetensors", ["data.hr_size=32", "data.scale=2", "sampler.steps=2"], 3)
    (tmp_path / "cascade.yaml").write_text("stages:\n  - {model: a.safetensors}\n  - {model: b.safetensors}\n")
    data = _png_bytes(photo("coffee").resize((24, 16)))  # 384 pixels in, 6,144 out
    live = LiveServer(ServeConfig(models={"c": str(tmp_path)}, default_model="c", max_output_pixels=6_144))
    try:
        (info,) = json.loads(request(live, "/api/models")[1])["models"]
        assert info["takes_steps"] is False and info["scale"] == 4 and info["steps"] == 3 and info["denoise"] is False
        status, body, _ = request(live, "/api/jobs", {"model": "c", "seed": "2"}, {"file": ("cup.png", data)})
        job = finished(live, json.loads(body)["id"])
        assert job["status"] == "done" and (job["width"], job["height"]) == (96, 64)
        assert job["done_steps"] == job["total_steps"] == 3
        text = Image.open(io.BytesIO(request(live, job["result"])[1])).text
        assert [s["steps"] for s in json.loads(text["sr3:stages"])] == [1, 2] and text["sr3:seed"] == "2"
        for fields, status, message in (({"steps": "4"}, 422, "each stage samples as its file says"),
                                        ({"denoise": "0.5"}, 422, "takes no denoise"),):
            got, body, _ = request(live, "/api/jobs", {"model": "c", **fields}, {"file": ("cup.png", data)})
            assert got == status and message in json.loads(body)["error"]
        bigger = _png_bytes(photo("coffee").resize((25, 16)))  # its output would pass the server's limit
        got, body, _ = request(live, "/api/jobs", {"model": "c"}, {"file": ("cup.png", bigger)})
        assert got == 413, body
    finally:
        live.close()


def test_the_queue_is_bounded(tmp_path):
    release = threading.Event()

    def run(job, progress):
        release.wait(10)
        return Image.new("RGB", (4, 4)), {}

    queue = JobQueue(tmp_path, run, lambda img, path, meta: img.save(path), max_waiting=2)
    first = queue.submit("m", None, 0, b"a")
    assert _wait(lambda: queue.get(first.id).status == "running")
    queue.submit("m", None, 1, b"b"), queue.submit("m", None, 2, b"c")
    with pytest.raises(QueueFull, match="2 jobs are waiting"):
        queue.submit("m", None, 3, b"d")
    assert len(list(tmp_path.iterdir())) == 3  # the refused upload left no file
    release.set()
    queue.close()


def test_a_full_queue_answers_429_and_a_one_pixel_image_is_upscaled(monkeypatch):
    import sr3.serve.app

    release, real = threading.Event(), sr3.serve.app.Models.run
    monkeypatch.setattr(sr3.serve.app.Models, "run", lambda self, job, progress: release.wait(30) and real(self, job, progress))
    live = LiveServer(ServeConfig(models={"natural-4x": "natural-4x"}, max_waiting_jobs=1))
    try:
        data = _png_bytes(Image.new("RGB", (1, 1), (200, 30, 30)))
        post = lambda seed: request(live, "/api/jobs", {"seed": str(seed)}, {"file": ("dot.png", data)})  # noqa: E731
        first = json.loads(post(0)[1])["id"]
        assert _wait(lambda: json.loads(request(live, f"/api/jobs/{first}")[1])["status"] == "running")
        waiting, refused = post(1), post(2)
        assert (waiting[0], refused[0]) == (202, 429) and "busy" in json.loads(refused[1])["error"]
        release.set()
        job = finished(live, json.loads(waiting[1])["id"])
        assert job["status"] == "done" and (job["width"], job["height"]) == (4, 4)
    finally:
        release.set()
        live.close()
