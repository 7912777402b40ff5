"""Scores and MIDI files -> SVG, each rendering in a short-lived, resource-capped subprocess.

The child (``render_job.py``) runs verovio for MusicXML/MXL/ABC and the piano roll for MIDI/MTF.
A crash or a timeout there fails one request with a clear message and leaves the server up.
Results are cached in memory (least recently used first out, bounded in bytes) under the file's
path, size and modification time, so a re-opened score costs nothing and an edited one is redrawn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from clamp3.serve.errors import NotFound, Unavailable, Unprocessable

FORMATS = {
    ".xml": "musicxml",
    ".musicxml": "musicxml",
    ".mxl": "mxl",
    ".abc": "abc",
    ".mid": "midi",
    ".midi": "midi",
    ".mtf": "mtf",
}


@dataclass(frozen=True)
class Rendering:
    """``svg`` (UTF-8 bytes) of page ``page`` of ``pages``."""

    svg: bytes
    page: int
    pages: int


class Renderer:
    """Renders files to SVG; thread-safe. ``max_parallel`` bounds concurrent child processes;
    a request that cannot get a slot within ``timeout`` seconds gets ``Unavailable``."""

    def __init__(self, timeout: float = 30.0, max_parallel: int = 2, cache_bytes: int = 64 << 20):
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._cache: OrderedDict[tuple, Rendering] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._lock = threading.Lock()

    @staticmethod
    def can_render(path: str | os.PathLike) -> bool:
        return Path(path).suffix.lower() in FORMATS

    def render(self, path: Path, page: int = 1) -> Rendering:
        """SVG of ``page`` (1-based) of the score or MIDI file at ``path`` (already resolved).

        Raises ``NotFound`` for a page past the end, ``Unprocessable`` when the file cannot be
        drawn, ``Unavailable`` when every rendering slot stays busy.
        """
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise Unprocessable(f"{path.suffix or 'this'} files cannot be rendered; only scores and MIDI")
        try:
            stat = path.stat()
        except OSError as exc:  # removed since it was resolved
            raise NotFound(f"this item's file cannot be read ({exc.strerror})") from exc
        key = (str(path), stat.st_size, stat.st_mtime_ns, page)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if not self._slots.acquire(timeout=self.timeout):
            raise Unavailable("every score renderer is busy; try again in a moment")
        try:
            result = self._run(fmt, page, path)
        finally:
            self._slots.release()
        self._remember(key, result)
        return result

    def _run(self, fmt: str, page: int, path: Path) -> Rendering:
        command = [sys.executable, "-I", "-m", "clamp3.serve.render_job", fmt, str(page), str(path)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise Unprocessable(f"rendering took longer than {self.timeout:.0f} s and was stopped") from exc
        try:
            answer = json.loads(done.stdout)
        except ValueError:
            # No JSON: the child died (segfault, memory cap) before it could answer.
            raise Unprocessable(
                f"the renderer crashed on this file (exit status {done.returncode})"
            ) from None
        if not answer.get("ok"):
            pages = answer.get("pages")
            if pages and page > pages:
                raise NotFound(str(answer.get("error")))
            raise Unprocessable(f"cannot render this file: {answer.get('error')}")
        return Rendering(answer["svg"].encode("utf-8"), page, int(answer["pages"]))

    def _remember(self, key: tuple, result: Rendering) -> None:
        if len(result.svg) > self._cache_bytes // 4:
            return  # one huge page would evict everything else
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = result
            self._cached += len(result.svg)
            while self._cached > self._cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old.svg)
