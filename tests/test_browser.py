"""The web pages in a real headless Chromium (Debian's), kept off the network: upload an example and get a
correctly sized result, the before/after slider and the download, a bad upload's message, and a short study
session whose answers land in the study file. Screenshots go to test-artifacts/ (SR3_TEST_ARTIFACTS)."""

import os
import shutil
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from sr3 import study
from sr3.serve.app import ServeConfig

from conftest import photo
from test_serve import LiveServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# skipped where Chromium is absent, except under CI, which installs it (.ci/run) and must run these
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Chromium is not installed")
ARTIFACTS = Path(os.environ.get("SR3_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
# no network beyond the loopback server: no updates, sync, metrics or safe-browsing lookups
FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--no-first-run", "--metrics-recording-only", "--disable-domain-reliability",
         "--safebrowsing-disable-auto-update", "--disable-features=OptimizationHints,MediaRouter"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh page that refuses (and records) any request not to the loopback server."""
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.outside = []

    def guard(route):
        if route.request.url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            page.outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert page.outside == [], f"the page reached outside the server: {page.outside}"


@pytest.fixture(scope="module")
def upscale_server():
    live = LiveServer(ServeConfig(models={"natural-4x": "natural-4x"}, max_pixels=40_000))
    yield live
    live.close()


def test_example_upscale_slider_and_download(page, upscale_server, tmp_path):
    page.goto(upscale_server.url)
    page.select_option("#example", "coffee-96x64.png")
    page.fill("#steps", "1")
    page.click("#go")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('after').naturalWidth > 0")
    assert page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]") == [384, 256]
    assert "Done" in page.text_content("#status")
    # the input is drawn over the result at the result's displayed size, so the slider wipes between aligned images
    size = "img => [img.getBoundingClientRect().width, img.getBoundingClientRect().height]"
    assert page.eval_on_selector("#before", size) == page.eval_on_selector("#after", size)
    page.fill("#slider", "20")
    page.dispatch_event("#slider", "input")
    assert page.eval_on_selector("#before-clip", "el => el.style.width") == "20%"
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "coffee-96x64_sr3.png"
    result = Image.open(saved)
    assert result.size == (384, 256) and result.text["sr3:model"] == "natural-4x"
    # the job survives a reload: the page finds it again by the id in its address
    page.reload()
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    assert "Done" in page.text_content("#status")


def test_uploaded_file_and_bad_upload_message(page, upscale_server, tmp_path):
    good, bad = tmp_path / "cup.png", tmp_path / "notes.png"
    photo("coffee").resize((40, 24)).save(good)
    bad.write_text("this is not an image")
    page.goto(upscale_server.url)
    page.set_input_files("#file", str(bad))
    page.fill("#steps", "1")
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image format" in page.text_content("#error")
    assert page.is_hidden("#result")
    page.set_input_files("#file", str(good))
    page.click("#go")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("document.getElementById('after').naturalWidth > 0")
    assert page.eval_on_selector("#after", "img => [img.naturalWidth, img.naturalHeight]") == [160, 96]
    assert page.is_hidden("#error")


def test_a_study_session_records_exactly_its_answers(page, tmp_path):
    dirs = {k: tmp_path / k for k in ("real", "fake", "lr")}
    for d in dirs.values():
        d.mkdir()
    for name in ("astronaut", "chelsea"):
        img = photo(name).resize((64, 64))
        img.save(dirs["real"] / f"{name}.png")
        img.resize((16, 16)).resize((64, 64)).save(dirs["fake"] / f"{name}.png")
        img.resize((16, 16)).save(dirs["lr"] / f"{name}.png")
    path = tmp_path / "study.sqlite"
    count = study.create_study(path, dirs["real"], {"bicubic": dirs["fake"]}, dirs["lr"])
    assert count == 4
    live = LiveServer(ServeConfig(models={}, study=path, show_seconds=0.2))
    try:
        page.goto(live.url)
        page.fill("#participant", "tester")
        page.click("#begin")
        clicks = []
        for k in range(count):
            page.wait_for_function(f"document.getElementById('progress-text').textContent === 'Trial {k + 1} of {count}'"
                                   " && !document.getElementById('choose-left').disabled")
            task1 = page.is_visible("#middle")
            assert ("middle image" in page.text_content("#question")) == task1
            side = "left" if k % 2 == 0 else "right"
            page.click(f"#choose-{side}")
            clicks.append(side == "left")
        page.wait_for_selector("#finished:not([hidden])")
    finally:
        live.close()
    with closing(study.connect(path)) as db:
        answers = db.execute("SELECT a.chose_left, a.fooled, t.real_left FROM answers a JOIN trials t ON t.id = a.trial"
                             " WHERE participant = 'tester' ORDER BY a.rowid").fetchall()
        rates = study.fool_rates(db)
    assert [bool(a[0]) for a in answers] == clicks
    assert all(bool(fooled) == (bool(chose_left) != bool(real_left)) for chose_left, fooled, real_left in answers)
    assert sum(r.answers for r in rates) == count
    assert sum(r.fooled for r in rates) == sum(a[1] for a in answers)
