"""``errors.jsonl``: the one format of every stage's failure log.

Each line is one failed input: ``{"path": ..., "reason": ..., "time": ...}`` plus, for some
stages, fields of their own after those three (the corpus builder adds ``id``, ``stage``,
``message``, ``trace``). ``path`` names the input as the stage knows it (relative to the input
folder for ``embed`` and ``extract-audio``; the input as given on the command line for
``convert``; the embedding file for ``index``; the music21 corpus path for ``build-corpus``);
``reason`` is one line; ``time`` is when it failed, ISO-8601 in UTC to the second
(``"2026-12-01T22:10:00Z"``: readable, sortable as text, and free of the writer's time zone).

Writers: ``embed`` (``OUT/errors.jsonl``, ``errors.rank-K.jsonl`` per rank), ``convert``
(``OUT_DIR``), ``extract-audio`` (``OUT``), ``index`` (``INDEX_DIR``), ``build-corpus``
(``OUT``), ``benchmark`` (``OUT``, rewritten whole by each run; adds ``modality`` and
``key``). Lines are appended with :func:`clamp3.utils.io.append_jsonl` (flushed, so a killed
run keeps them) and read back with :func:`read_errors`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clamp3.utils.errors import InputError
from clamp3.utils.io import append_jsonl, atomic_path, read_jsonl

ERRORS_NAME = "errors.jsonl"
_FIELDS = ("path", "reason", "time")


def utc_now() -> str:
    """The current time as ``errors.jsonl`` records it (ISO-8601, UTC, seconds, ``Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class ErrorRecord:
    """One failed input; ``extra`` holds the stage's own fields (none for most stages)."""

    path: str
    reason: str
    time: str = field(default_factory=utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": self.reason, "time": self.time, **self.extra}


def error_record(path: str | os.PathLike, reason: str, **extra: Any) -> dict[str, Any]:
    """The JSON object of one failure now (for stages that keep records before writing them)."""
    return ErrorRecord(str(path), reason, extra=extra).to_json()


def append_error(log: str | os.PathLike, path: str | os.PathLike, reason: str, **extra: Any) -> None:
    """Append one failure to ``log`` (an ``errors.jsonl``), flushed to disk."""
    append_jsonl(log, error_record(path, reason, **extra))


def read_errors(log: str | os.PathLike) -> list[ErrorRecord]:
    """Every record of ``log`` (``[]`` when it does not exist); ``InputError`` naming the file
    for a line without ``path``, ``reason`` and ``time``."""
    records = []
    for data in read_jsonl(log):
        missing = [name for name in _FIELDS if not isinstance(data.get(name), str)]
        if missing:
            raise InputError(log, f"record {data!r:.80} lacks {', '.join(missing)}: not a clamp3 errors log")
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        records.append(ErrorRecord(data["path"], data["reason"], data["time"], extra))
    return records


def keep_errors(log: str | os.PathLike, keep: Callable[[str], bool]) -> None:
    """Rewrite ``log`` (atomically) with the latest record of each path that ``keep`` accepts:
    how a rerun drops the failures of inputs fixed or gone, and never lists one input twice."""
    if not os.path.exists(log):
        return
    latest = {r.path: r for r in read_errors(log)}
    with atomic_path(log) as tmp:
        tmp.touch()
        for record in latest.values():
            if keep(record.path):
                append_jsonl(tmp, record.to_json())
