"""Screenshot the search page of a finished demo (the README's picture of ``clamp3 demo --serve``).

    python docs/demo_screenshot.py [WORKDIR] [--out docs/images/demo-search.png] [--query TEXT]

Starts ``clamp3 demo --serve --workdir WORKDIR`` (every step is reused, so the page comes up in
seconds), searches the demo's test pieces with a text query in headless Chromium (the browser the
tests drive, ``CLAMP3_CHROMIUM`` or ``/usr/bin/chromium``), saves a full-page PNG and stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CHROMIUM = os.environ.get("CLAMP3_CHROMIUM", "/usr/bin/chromium")
# A query a listener could write; German, to show that the page searches in any of the five languages.
QUERY = "Ein Choral für vier Stimmen in Moll"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(base: str, server: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"clamp3 demo --serve exited with status {server.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit("the search page did not come up")


def screenshot(base: str, out: Path, query: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(base)
            page.wait_for_function("() => /\\d+ items/.test(document.getElementById('library').textContent)")
            page.fill("#q", query)
            page.press("#q", "Enter")
            page.wait_for_selector(".result")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/demo")
    parser.add_argument("--out", default=str(Path(__file__).parent / "images" / "demo-search.png"))
    parser.add_argument("--query", default=QUERY)
    args = parser.parse_args()
    port = free_port()
    cmd = [sys.executable, "-m", "clamp3.cli.main", "demo", "--workdir", args.workdir, "--quiet"]
    server = subprocess.Popen(
        [*cmd, "--no-plot", "--serve", "--port", str(port)], stdout=subprocess.DEVNULL, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base, server)
        screenshot(base, Path(args.out), args.query)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
