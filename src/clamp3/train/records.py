"""Training data on disk: M4-RAG JSONL records and symbolic file lists, validated up front.

M4-RAG JSONL (§4.1), one object per line::

    {"id": "wikimt_0001", "filepaths": ["abc/0001.abc", "mtf/0001.mtf"], "language": "en",
     "title": "...", "genres": ["folk"], "background": "...", "analysis": "...",
     "translations": {"language": "de", "background": "...", "analysis": "..."}}

- ``id``: non-empty string (or integer);
- ``filepaths``: non-empty list of ``.abc`` / ``.mtf`` (symbolic) or ``.npy`` (audio features,
  (n, F) or (1, n, F) float) files, relative to the JSONL's folder (or absolute);
- ``language``: string, optional; ``translations``: object of strings / string lists, optional;
- every other string or list-of-strings field is text (numbers and the like are ignored);
  a record needs at least one text value. ``analysis`` is the validation text.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.inputs import PREPARED_KINDS, extensions, kind_of, unprepared_reason
from clamp3.utils.errors import InputError
from clamp3.utils.io import read_text
from clamp3.utils.walk import walk_files

MUSIC_EXTENSIONS = extensions(kinds=PREPARED_KINDS)  # what the trainer reads: .abc .mtf .npy
SYMBOLIC_EXTENSIONS = extensions("symbolic", kinds=PREPARED_KINDS)


def modality_of(path: str) -> str | None:
    """``symbolic`` / ``audio`` of a training file (by the input table), else None."""
    return kind_of(path).modality if Path(path).suffix.lower() in MUSIC_EXTENSIONS else None


def resolve_file(base_dir: Path, path: str) -> Path:
    """A record's file path: absolute as given, else relative to the JSONL's folder."""
    p = Path(path)
    return p if p.is_absolute() else base_dir / p


def _is_strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def validate_record(record: Any, base_dir: Path, check_files: bool = True) -> str | None:
    """The reason ``record`` is not a usable M4-RAG record, or None when it is."""
    from clamp3.train.augment import text_fields, translation_fields

    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    rid = record.get("id")
    if isinstance(rid, bool) or not isinstance(rid, str | int) or (isinstance(rid, str) and not rid.strip()):
        return "'id' must be a non-empty string"
    paths = record.get("filepaths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        return f"record {rid!r}: 'filepaths' must be a non-empty list of paths"
    for p in paths:
        if (unprepared := unprepared_reason(p)) is not None:
            return f"record {rid!r}: {unprepared}"
        if check_files and not resolve_file(base_dir, p).is_file():
            return f"record {rid!r}: file {p!r} does not exist (paths are relative to {base_dir})"
    if "language" in record and not isinstance(record["language"], str):
        return f"record {rid!r}: 'language' must be a string"
    translations = record.get("translations", {})
    if translations is not None and not isinstance(translations, dict):
        return f"record {rid!r}: 'translations' must be an object"
    for key, value in (translations or {}).items():
        if not _is_strings(value):
            return f"record {rid!r}: translations[{key!r}] must be a string or a list of strings"
    for key, value in record.items():
        if isinstance(value, list) and key != "filepaths" and not _is_strings(value):
            return f"record {rid!r}: field {key!r} must be a list of strings"
    if not text_fields(record) and not translation_fields(record):
        return f"record {rid!r}: no text (no non-empty string field besides id/filepaths/language)"
    return None


def load_records(path: str | os.PathLike, check_files: bool = True) -> list[dict[str, Any]]:
    """Read and validate an M4-RAG JSONL file (format in the module docstring).

    Returns the records as dicts, in file order; blank lines are skipped. ``check_files``
    also checks that every listed file exists. Raises :class:`InputError` naming
    ``<path>:<line>`` and the reason at the first bad line.
    """
    path = Path(path)
    base_dir = path.parent
    text = read_text(path)
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(where, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
        reason = validate_record(record, base_dir, check_files)
        if reason is not None:
            raise InputError(where, reason)
        records.append(record)
    if not records:
        raise InputError(path, "no records (the file is empty)")
    return records


def records_for(records: list[dict[str, Any]], modality: str) -> list[dict[str, Any]]:
    """Records that have a file of ``modality``, each with only those files in ``filepaths``."""
    out = []
    for record in records:
        paths = [p for p in record["filepaths"] if modality_of(p) == modality]
        if paths:
            out.append({**record, "filepaths": paths})
    return out


def list_symbolic_files(path: str | os.PathLike, check_files: bool = True) -> list[Path]:
    """M3 training files: a folder (searched recursively for ``.abc``/``.mtf``), a ``.txt`` list
    (one path per line, relative to the list's folder) or an M4-RAG ``.jsonl`` (its symbolic
    files). Sorted for folders, file order otherwise. ``check_files=False`` leaves listed files
    that do not exist to the caller (training screens them: :mod:`clamp3.train.screening`)."""
    path = Path(path)
    if path.is_dir():
        listing = walk_files(path, SYMBOLIC_EXTENSIONS)
        if listing.errors:  # training on part of a folder without a word would mislead
            raise listing.errors[0]
        files = listing.files
    elif path.suffix.lower() == ".jsonl":
        records = records_for(load_records(path, check_files), "symbolic")
        files = [resolve_file(path.parent, p) for r in records for p in r["filepaths"]]
    elif path.is_file():
        listed = [(n, line.strip()) for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip()]
        files = [resolve_file(path.parent, line) for _, line in listed]
        for (number, _), f in zip(listed, files, strict=True):  # the file's own line numbers
            if check_files and not f.is_file():
                raise InputError(f"{path}:{number}", f"file {f} does not exist")
    else:
        raise InputError(path, "no such folder or file list")
    if not files:
        raise InputError(path, "no .abc or .mtf files found")
    return files


def split_indices(n: int, fraction: float, seed: int, minimum: int = 1) -> tuple[list[int], list[int]]:
    """(train, eval) indices: a seeded random ``ceil(fraction * n)`` items, and at least
    ``minimum``, are held out.

    The same arguments always give the same split; at least one item stays in training.
    ``fraction == 0`` holds nothing out.
    """
    if fraction <= 0:
        return list(range(n)), []
    count = min(n - 1, max(minimum, math.ceil(fraction * n)))
    order = np.random.default_rng([seed, 0x5E1]).permutation(n)
    held = sorted(int(i) for i in order[:count])
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], held
