"""The search page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright): type a
query, see results, filter, play a recording, open a rendered score, drop a file, follow "more
like this". Screenshots are kept in ``test-artifacts/``. The page must log no errors (a CSP
violation or a script error would show up there)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from serve_support import QUERY_TEXT, app_for, library, live_server, tiny_model  # noqa: F401

pytest.importorskip("fastapi")

CHROMIUM = os.environ.get("CLAMP3_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver; `./run tests` installs it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def page_url(library, tiny_model):  # noqa: F811
    with app_for(library, tiny_model) as app, live_server(app) as base:
        yield base


def _open(url: str):
    """A headless tab on ``url`` whose console errors collect in ``tab.problems`` (a generator:
    the browser closes when it is resumed)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            tab = browser.new_page(viewport={"width": 1360, "height": 900})
            problems: list[str] = []
            tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(str(e)))
            tab.problems = problems
            tab.goto(url)
            yield tab
        finally:
            browser.close()


@pytest.fixture()
def page(page_url):
    yield from _open(page_url)


@pytest.fixture()
def catalogue_page(catalogue_url):
    yield from _open(catalogue_url)


def _results(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".result",
        "rows => rows.map(r => ({kind: r.dataset.kind, path: r.querySelector('.path').textContent}))",
    )


def test_search_listen_read_and_explore(page, library):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_function("() => document.getElementById('library').textContent.includes('10 items')")

    # Type a query: results with path, kind and score appear, best first.
    page.fill("#q", QUERY_TEXT)
    page.press("#q", "Enter")
    page.wait_for_selector(".result")
    assert _results(page)[0]["path"] == "texts/waltz.txt"
    assert "Showing 1–10 of 10" in page.inner_text("#status")
    assert page.locator(".result .score-value").first.inner_text().startswith("score ")

    # Filter to recordings, then play one.
    page.check("input[name=modality][value=audio]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result')].every(r => r.dataset.kind === 'audio')"
    )
    assert len(_results(page)) == 2
    page.click(".result .open")
    page.wait_for_function(
        "() => { const a = document.getElementById('player'); return !a.hidden && a.currentTime > 0.2; }",
        timeout=20_000,
    )
    page.screenshot(path=str(ARTIFACTS / "serve_browser_audio.png"), full_page=True)

    # Sheet music: open the rendered score.
    page.check("input[name=modality][value=symbolic]")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.result')].every(r => r.dataset.kind !== 'audio')"
    )
    page.click(".result[data-kind=score] .open")
    page.wait_for_function(
        "() => { const i = document.getElementById('score-image'); return i.complete && i.naturalWidth > 100; }",
        timeout=30_000,
    )
    assert page.inner_text("#score-page") == "Page 1 of 1"
    assert page.is_hidden("#player")
    page.screenshot(path=str(ARTIFACTS / "serve_browser.png"), full_page=True)

    # MIDI: a piano roll.
    page.click(".result[data-kind=midi] .open")
    page.wait_for_function(
        "() => { const i = document.getElementById('score-image'); return i.alt.includes('piano roll') && i.naturalWidth > 100; }",
        timeout=30_000,
    )
    page.screenshot(path=str(ARTIFACTS / "serve_browser_midi.png"), full_page=True)

    # More like this, from the detail panel: the item itself is left out.
    shown = page.inner_text("#detail-title")
    page.click("#detail-similar")
    page.wait_for_function(
        "() => document.getElementById('results-title').textContent.includes('music like')"
    )
    assert all(not r["path"].endswith(shown) for r in _results(page))
    assert not page.problems, page.problems


def test_drop_a_file_to_search(page, library):  # noqa: F811
    page.wait_for_function("() => document.getElementById('library').textContent.includes('items')")
    data = list((library.media / "midi/m21_k525short.mid").read_bytes())
    transfer = page.evaluate_handle(
        """bytes => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], 'query.mid', {type: 'audio/midi'}));
            return dt;
        }""",
        data,
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
    page.wait_for_function("() => document.getElementById('results-title').textContent.includes('query.mid')")
    assert _results(page)[0]["path"] == "midi/m21_k525short.mid"
    # A file the server refuses: the message is shown, nothing breaks.
    bad = page.evaluate_handle(
        "() => { const dt = new DataTransfer(); dt.items.add(new File(['hello'], 'notes.pdf')); return dt; }"
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": bad})
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert "not accepted" in page.inner_text("#status")
    assert not [p for p in page.problems if "415" not in p], page.problems


@pytest.fixture(scope="module")
def catalogue_url(library, tiny_model, tmp_path_factory):  # noqa: F811
    """The page over a copy of the library indexed with a catalogue (composer, year)."""
    import json

    from clamp3.index import build_index

    root = tmp_path_factory.mktemp("browser_catalogue")
    lib = library.copy(root)
    rows = [
        {"path": "texts/waltz.txt", "composer": "Chopin", "year": 1847},
        {"path": "texts/lied.txt", "composer": "Händel", "year": 1740},
        {"path": "scores/bach_bwv66_6.mxl", "composer": "Bach", "year": 1724},
    ]
    (root / "cat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index(lib.emb, lib.idx, overwrite=True, catalogue=root / "cat.jsonl", progress=False)
    with app_for(lib, tiny_model) as app, live_server(app) as base:
        yield base


def test_catalogue_facets_filter_the_results(catalogue_page):
    page = catalogue_page
    page.wait_for_selector("#facets:not([hidden])")
    page.click("#facets summary")
    page.fill("#q", QUERY_TEXT)
    page.press("#q", "Enter")
    page.wait_for_function("() => document.querySelectorAll('.result').length === 10")
    # A facet menu (with counts) and a number range make one filter.
    page.select_option("select[data-column=composer]", "Händel")
    page.click("#apply-filters")
    page.wait_for_function("() => document.querySelectorAll('.result').length === 1")
    assert _results(page)[0]["path"] == "texts/lied.txt"
    assert "where=composer" in page.url  # the filter is kept in the address bar
    page.select_option("select[data-column=composer]", "")
    page.fill("input[data-column=year][data-bound=to]", "1800")
    page.click("#apply-filters")
    page.wait_for_function("() => document.querySelectorAll('.result').length === 2")
    assert {r["path"] for r in _results(page)} == {"texts/lied.txt", "scores/bach_bwv66_6.mxl"}
    # A bad expression is an error message, not an unfiltered list.
    page.fill("input[data-column=year][data-bound=to]", "")
    page.fill("#where", "year >>= 3")
    page.click("#apply-filters")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert "where:" in page.inner_text("#status") and _results(page) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search_facets.png"), full_page=True)
    # The refused filter's 422 is the one console error; nothing else went wrong on the page.
    assert all("422" in problem for problem in page.problems)
