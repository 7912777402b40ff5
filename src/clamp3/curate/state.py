"""The resume state of a curation run: an append-only log of finished items.

Layout, next to the output ``OUT.jsonl``: a folder ``OUT.curate/`` with

* ``settings.json`` — the settings that decide record content (model, languages, fields, prompt
  fingerprint, ...), written atomically before the first item. A rerun with different settings
  stops with an error instead of mixing two kinds of records in one output.
* ``state.jsonl`` — one line per finished item (kept or rejected) with its record and provenance,
  appended and fsynced as each item finishes. A kill can only tear the last line; the next run
  cuts the torn tail before appending, so it never glues a new line onto a broken one. An item
  appears at most once (the first line wins), and items that failed for transport reasons are not
  written, so a rerun does them again: nothing is lost or duplicated.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from clamp3.utils.errors import InputError
from clamp3.utils.io import append_jsonl, write_json_atomic


class RunState:
    """Finished items of one output; :meth:`append` is thread-safe."""

    def __init__(self, folder: str | os.PathLike, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.settings_path = self.folder / "settings.json"
        self.path = self.folder / "state.jsonl"
        self.settings = settings
        self._lock = threading.Lock()

    def open(self) -> dict[str, dict[str, Any]]:
        """Check or write the settings, repair a torn tail, and return ``{id: entry}``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.settings_path.is_file():
            previous = json.loads(self.settings_path.read_text(encoding="utf-8"))
            changed = [
                f"{key}: {previous.get(key)!r} -> {self.settings.get(key)!r}"
                for key in sorted(set(previous) | set(self.settings))
                if previous.get(key) != self.settings.get(key)
            ]
            if changed:
                raise InputError(
                    self.settings_path,
                    "the finished items were made with other settings ("
                    + "; ".join(changed)
                    + "); use another output path or delete this folder to start over",
                )
        else:
            write_json_atomic(self.settings_path, self.settings)
        self._cut_torn_tail()
        entries: dict[str, dict[str, Any]] = {}
        for line in self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "id" in entry:
                entries.setdefault(entry["id"], entry)
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            append_jsonl(self.path, entry)

    def _cut_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())
