"""The search page with images (issue 20), in headless Chromium: drop a photo, see what it was
read as and the music it finds, open an indexed image."""

from __future__ import annotations

import pytest
from test_serve_browser import BROWSER_ARGS, CHROMIUM

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def page_url(image_index, image_pipeline):
    from serve_support import live_server, shut_down

    from clamp3.serve.service import build_app

    media, idx = image_index
    app = build_app(idx, media, image_pipeline)
    try:
        with live_server(app) as base:
            yield base
    finally:
        shut_down(app)


def test_drop_an_image_to_search_and_open_an_indexed_image(page_url, image_index, image_pipeline, one_thread):
    from playwright.sync_api import sync_playwright

    media, _ = image_index
    caption = image_pipeline.captioner.caption(media / "scan.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(page_url)
            page.wait_for_function("() => document.getElementById('library').textContent.includes('items')")
            transfer = page.evaluate_handle(
                """bytes => {
                    const dt = new DataTransfer();
                    dt.items.add(new File([new Uint8Array(bytes)], 'my scan.png', {type: 'image/png'}));
                    return dt;
                }""",
                list((media / "scan.png").read_bytes()),
            )
            page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})
            page.wait_for_function(
                "() => document.getElementById('results-title').textContent.includes('read as')"
            )
            assert caption in page.inner_text("#results-title")
            first = page.locator(".result").first
            assert first.locator(".path").inner_text() == "scan.png"
            assert first.locator(".badge").inner_text() == "Image"
            first.locator("button.open").click()  # "Show image": the picture in the detail panel
            page.wait_for_function(
                "() => { const i = document.getElementById('image-view'); return !i.hidden && i.complete && i.naturalWidth > 0; }"
            )
            assert not problems, problems
        finally:
            browser.close()
