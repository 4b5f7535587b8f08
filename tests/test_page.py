"""The page on `gmlm serve` (web/), driven in a real headless Chromium by Playwright: the final texts equal
translate_batch's, every pass shows as a row, the winning candidate's column holds as many passes as
translate_batch's history, AR modes work, and a bad option shows the server's message.

Needs Playwright for Python (the test extra) and a Chromium: Debian's `chromium` package (.ci/run
installs it), or the one named by GMLM_CHROMIUM. Outside CI a missing browser skips this file with the
reason; with GMLM_REQUIRE_BROWSER=1 (set by .ci/run) it fails instead."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import MODELS

pytest.importorskip("gmlm_engine._core")
httpx = pytest.importorskip("httpx")


def _browser() -> str:
    path = os.environ.get("GMLM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    why = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        why = "Playwright for Python is not installed (pip install playwright)"
    if why is None and not path:
        why = "no Chromium found (apt-get install chromium, or set GMLM_CHROMIUM to a Chromium binary)"
    if why:
        if os.environ.get("GMLM_REQUIRE_BROWSER") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return path


@pytest.fixture(scope="module")
def page_server():
    from test_serving import _free_port

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gmlm_engine.tools.cli", "serve", "--model", str(MODELS / "gmlm-en-de"),
                             "--ar-model", str(MODELS / "ar-en-de"), "--port", str(port), "--threads", "1", "--max-texts", "4",
                             "--compute-type", "float32", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the server did not start: " + proc.stderr.read())
        time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


@pytest.fixture(scope="module")
def page(page_server):
    from playwright.sync_api import sync_playwright

    path = _browser()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(page_server + "/")
        pg.wait_for_selector("#mode option", state="attached")
        yield pg
        assert not errors, errors          # no script error on the page, in any test
        browser.close()


TEXTS = ["Children are playing soccer in a park.", "A woman in a red dress is reading a book on a bench."]


def _run(pg, texts, mode="gmlm", **fields):
    pg.select_option("#mode", mode)
    for k, v in fields.items():
        pg.fill(f"#{k}", str(v))
    pg.fill("#text", "\n".join(texts))
    pg.press("#text", "Enter")                        # Enter submits
    pg.wait_for_function("document.body.dataset.state === 'idle'", timeout=30000)


def _lines(pg):
    return pg.eval_on_selector_all(".line", """els => els.map(e => ({
        done: e.dataset.done, passes: Number(e.dataset.passes), iterations: Number(e.dataset.iterations),
        final: e.querySelector('.final').textContent, rows: e.querySelectorAll('tr.pass').length,
        win: e.querySelectorAll('td.cell.win').length, winner: e.querySelectorAll('th.winner').length,
        masked: e.querySelectorAll('.tok.masked').length}))""")


def test_refinement_shows_every_pass_and_the_results_of_translate_batch(page, tmp_path):
    from gmlm_engine import Translator

    tr = Translator(MODELS / "gmlm-en-de", compute_type="float32", intra_threads=1)
    want = tr.translate_batch(TEXTS, return_history=True)     # the defaults, which the page starts with
    _run(page, TEXTS)
    got = _lines(page)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert page.is_hidden("#error")
    assert [g["final"] for g in got] == [w.text for w in want]
    for g, w in zip(got, want):
        assert g["done"] == "1" and g["winner"] == 1 and g["masked"] > 0
        assert g["iterations"] == w.iterations                # the winner's passes
        assert g["rows"] == g["passes"] >= w.iterations       # one row per pass run
        assert g["win"] == len(w.history)                     # the winner ran in as many rows as it has passes
    shot = os.environ.get("GMLM_PAGE_SCREENSHOT")             # README's picture: GMLM_PAGE_SCREENSHOT=docs/page.png
    if shot:
        shutil.copy(tmp_path / "page.png", shot)


def test_ar_modes(page):
    from gmlm_engine import Translator

    tr = Translator(MODELS / "ar-en-de", compute_type="float32", intra_threads=1)
    for mode, beam in (("ar-greedy", 1), ("ar-beam", 3)):
        want = tr.translate_batch(TEXTS[:1], beam_size=beam)
        _run(page, TEXTS[:1], mode, **({"beam_size": beam} if mode == "ar-beam" else {}))
        got = _lines(page)
        assert [g["final"] for g in got] == [w.text for w in want]
        assert got[0]["rows"] == got[0]["passes"] >= len(want[0].tokens)   # a row per step


@pytest.mark.parametrize("lines,fields,status,message", [
    (1, {"iterations": 0}, 422, "iterations must be in [1, 1000], got 0"),
    (1, {"length_beam": 500}, 422, "length_beam must be in [1, "),
    (5, {}, 413, "text has 5 entries; at most 4 per request"),      # the server runs with --max-texts 4
])
def test_an_error_shows_the_servers_message(page, lines, fields, status, message):
    _run(page, (TEXTS * 3)[:lines], **fields)
    assert page.is_visible("#error")
    text = page.text_content("#error")
    assert f"HTTP {status}: " in text and message in text, text
    assert page.eval_on_selector_all(".line", "els => els.length") == 0
    page.fill("#iterations", "8")
    page.fill("#length_beam", "2")
