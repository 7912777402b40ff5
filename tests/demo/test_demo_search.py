"""``clamp3 demo --serve``: the demo's test pieces laid out for the search page (hard links named
by collection and title), then embedded, indexed and served with the demo's model; headless
Chromium searches them by text and by an uploaded score."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from demo_support import ready_corpus

from clamp3.demo.search import piece_folder, prepare_media, safe_name
from clamp3.utils.errors import InputError

CHROMIUM = os.environ.get("CLAMP3_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_media_folder_is_named_by_title_and_links_the_corpus_files(tmp_path, parity_dir):
    ready_corpus(tmp_path, parity_dir, n_test=3, pieces=30)
    media = prepare_media(tmp_path)
    folders = sorted(p.relative_to(media).as_posix() for p in media.glob("*/*"))
    assert folders == [f"Test Collection/Title {i}  a b [piece{i}]".replace("  ", " ") for i in range(3)]
    linked = media / folders[0] / "recording.wav"
    original = tmp_path / "corpus" / "pieces" / "piece0" / "audio.wav"
    assert not linked.is_symlink() and linked.stat().st_ino == original.stat().st_ino
    assert sorted(p.name for p in linked.parent.iterdir()) == [
        "performance.mid",
        "recording.wav",
        "score.musicxml",
    ]
    assert prepare_media(tmp_path) == media  # a rerun keeps what is there


def test_no_corpus_is_an_input_error_naming_the_folder(tmp_path):
    with pytest.raises(InputError) as err:
        prepare_media(tmp_path)
    assert err.value.path == str(tmp_path / "corpus")


def test_names_are_file_system_safe():
    assert safe_name('a/b\\c:d*e?"f<g>h|i\x01') == "a b c d e f g h i"
    assert safe_name("   ") == "untitled"
    assert piece_folder({"collection_name": "Bach/Chorales", "title": "BWV 66.6", "id": "x"}) == (
        "Bach Chorales/BWV 66.6 [x]"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def demo_page(tmp_path, parity_dir, tiny_model_dir):
    """``clamp3 demo --serve`` on a ready corpus with the tiny model, until the page answers."""
    import httpx

    ready_corpus(tmp_path, parity_dir, n_test=3, pieces=30)
    port = _free_port()
    cmd = [sys.executable, "-m", "clamp3.cli.main", "demo", "--workdir", str(tmp_path), "--pieces", "30"]
    cmd += ["--seconds-max", "4", "--model", str(tiny_model_dir), "--no-plot", "--quiet", "--serve"]
    log = open(tmp_path / "demo.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        cmd + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert server.poll() is None, (tmp_path / "demo.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo's search page did not come up")
        yield base, tmp_path
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited (the assertion says why)
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.mark.skipif(not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)), reason="chromium not installed")
def test_demo_serve_page_answers_a_text_query_and_an_upload(demo_page):
    from playwright.sync_api import sync_playwright

    base, work = demo_page
    log = (work / "demo.log").read_text(errors="replace")
    assert "text (en) -> sheet" in log and f"search page: {base}/" in log
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(base)
            page.wait_for_function("() => document.getElementById('library').textContent.includes('9 items')")
            page.fill("#q", "en piece 1")
            page.press("#q", "Enter")
            page.wait_for_selector(".result")
            paths = page.eval_on_selector_all(".result .path", "rows => rows.map(r => r.textContent)")
            assert len(paths) == 9 and all(p.startswith("Test Collection/Title ") for p in paths)
            page.screenshot(path=str(ARTIFACTS / "demo_search_text.png"), full_page=True)
            score = next((work / "search" / "media").glob("*/*/performance.mid"))
            page.set_input_files("#file-input", str(score))
            page.wait_for_function(
                "() => document.getElementById('results-title').textContent.includes('performance.mid')"
            )
            top = page.eval_on_selector_all(".result .path", "rows => rows.map(r => r.textContent)")[0]
            assert top == score.relative_to(work / "search" / "media").as_posix()
            page.screenshot(path=str(ARTIFACTS / "demo_search_upload.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()
