"""Catalogue columns for an index: a CSV or JSONL file joined to the embeddings by key or path.

``clamp3 index EMB IDX --catalogue FILE`` stores these columns with every item, in both
back-ends, so ``--where`` can filter on them (``year >= 1950``, ``composer in [...]``,
``tags contains "chorale"``).

The file:

* **JSONL**: one object per line; values are strings, integers, floats, booleans or lists of
  strings (``null`` or absent = unknown).
* **CSV** (UTF-8, header row; separated by commas, or by ``;`` or tabs as the header shows,
  :func:`~clamp3.utils.io.header_delimiter`): a header may declare its type as ``name:type`` with type
  ``str``, ``int``, ``float``, ``bool`` or ``list`` (``tags:list``; a list cell is split on
  ``;``); without a declaration a column is ``int`` if every filled cell is an integer, else
  ``float`` if every one is a number, else ``str``. Empty cells are unknown.

The join column is ``key`` (or ``id``: the same thing, the relative path without extension
that the index uses) or ``path`` (the original input path as the embedding manifest records
it). Column names must be identifiers and may not reuse a base metadata name (key, path,
modality, npy, n_items, sha256, model). Catalogue rows that match no item are counted and
reported; items without a catalogue row simply have unknown values.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from clamp3.index.filters import COLUMN_TYPES, KEYWORDS
from clamp3.index.records import BASE_COLUMNS
from clamp3.utils.errors import InputError
from clamp3.utils.io import csv_rows, header_delimiter, read_text

JOIN_COLUMNS = ("key", "id", "path")
LIST_SEPARATOR = ";"
log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = set(BASE_COLUMNS) | {"id", "vector", "row", "score"}


@dataclass
class Catalogue:
    """Catalogue rows by join value. ``by`` is ``"key"`` or ``"path"``; ``columns`` maps each
    column to its type; ``matched`` counts the rows :meth:`join` used."""

    source: Path
    by: str
    columns: dict[str, str]
    rows: dict[str, dict[str, Any]]
    matched: set[str] = field(default_factory=set)

    def values_for(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The catalogue values of one item record (``key``, ``path``); unknown ones are None."""
        probe = str(record.get(self.by) or "")
        row = self.rows.get(_norm_path(probe) if self.by == "path" else probe)
        if row is not None:
            self.matched.add(probe if self.by == "key" else _norm_path(probe))
        return {name: (row or {}).get(name) for name in self.columns}

    def join(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``records`` with the catalogue columns added (new dicts). Rows whose join value is an
        item's *other* name (a path under ``key``, as ``folk/reel.mid`` for the key
        ``folk/reel``, or the reverse) match nothing; a warning says which column to use."""
        joined = [{**r, **self.values_for(r)} for r in records]
        other = "path" if self.by == "key" else "key"
        names = {_norm_path(str(r.get(other) or "")) for r in records}
        crossed = [v for v in self.unmatched_values if _norm_path(v) in names]
        if crossed:
            rows = "1 row names its" if len(crossed) == 1 else f"{len(crossed)} rows name their"
            log.warning(
                "%s: %s item by its %s under the %r column (e.g. %r), so they match nothing; name "
                "that column %r",
                self.source, rows, other, self.by, crossed[0], other,
            )  # fmt: skip
        return joined

    @property
    def unmatched(self) -> int:
        return len(self.unmatched_values)

    @property
    def unmatched_values(self) -> list[str]:
        """The join values (``by``) of the rows :meth:`join` found no item for, sorted."""
        return sorted(set(self.rows) - self.matched)


def _norm_path(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).as_posix().removeprefix("./")


def _check_name(source: Path, name: str) -> None:
    if not _NAME.match(name):
        # A column is a --where name and a Milvus field, whose names are ASCII identifiers.
        reason = f"column {name!r}: a name is ASCII letters, digits and _, not starting with a digit"
        raise InputError(source, f"{reason}; rename it, e.g. {_suggested_name(name)!r}")
    if name in _RESERVED:
        raise InputError(source, f"column {name!r} is a built-in metadata name; rename it")
    if name.lower() in KEYWORDS:
        raise InputError(source, f"column {name!r} is a word of the --where grammar; rename it")


def _suggested_name(name: str) -> str:
    """``name`` as an identifier: accents dropped (``Jahr_Ä`` -> ``Jahr_A``), any other
    character an ``_``, a leading digit prefixed."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ident = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", ascii_name.strip())).strip("_") or "column"
    return f"_{ident}" if ident[0].isdigit() else ident


def _cell(source: Path, line: int, name: str, kind: str, raw: Any) -> Any:
    """One value converted to ``kind`` (None for empty); errors name the file, line and column."""
    if raw is None or raw == "" or raw == []:
        return None
    try:
        if kind == "list":
            items = raw if isinstance(raw, list) else str(raw).split(LIST_SEPARATOR)
            values = [str(v).strip() for v in items if str(v).strip()]
            return values or None
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).strip().lower() in ("true", "false"):
                return str(raw).strip().lower() == "true"
            raise ValueError("expected true or false")
        if isinstance(raw, (list, dict)) or (isinstance(raw, bool) and kind != "str"):
            raise ValueError(f"expected a {kind}")
        if kind == "int":
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError("expected an integer")
            return int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        if kind == "float":
            return float(raw)
        return str(raw)
    except ValueError as exc:
        raise InputError(source, f"line {line}, column {name}: {raw!r} is not a {kind} ({exc})") from None


def _infer(values: list[Any]) -> str:
    filled = [v for v in values if v is not None and v != "" and v != []]
    if any(isinstance(v, list) for v in filled):
        return "list"
    if filled and all(isinstance(v, bool) for v in filled):
        return "bool"

    def number(v: Any, integer: bool) -> bool:
        if isinstance(v, bool):
            return False
        if isinstance(v, (int, float)):
            return not integer or float(v).is_integer()
        try:
            int(v) if integer else float(v)
            return True
        except ValueError:
            return False

    if filled and all(number(v, True) for v in filled):
        return "int"
    if filled and all(number(v, False) for v in filled):
        return "float"
    return "str"


def _warn_if_mostly_numbers(source: Path, name: str, values: list[Any], lines: list[int]) -> None:
    """A column of numbers with a few other cells is inferred as text, so ``--where 'year >
    1900'`` is then refused: say which cell made it text (typos such as ``c. 1720``).
    ``lines[i]`` is the file line of ``values[i]``."""
    filled = [(line, v) for line, v in zip(lines, values) if v not in (None, "", [])]
    odd = [(line, v) for line, v in filled if _infer([v]) == "str"]
    if filled and odd and len(odd) * 2 < len(filled):
        line, value = odd[0]
        log.warning(
            "%s: column %r is text, not a number, because of %d cell(s) such as line %d: %r; "
            "fix them, or declare the column (%s:int, %s:float) to have each one refused by line",
            source, name, len(odd), line, value, name, name,
        )  # fmt: skip


def _check_flat(source: Path, line: int, row: dict[str, Any]) -> None:
    """Refuse a JSONL value that is an object or holds a list (it cannot be a column)."""
    for name, value in row.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, (dict, list)) for item in items):
            shown = json.dumps(value, ensure_ascii=False)[:60]
            raise InputError(
                source,
                f"line {line}, column {name}: {shown} is nested; a value is a string, number, boolean "
                "or list of strings",
            )


def _read_rows(source: Path) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, str]]:
    """Raw rows with the file line each starts on, and declared types (CSV ``name:type``
    headers). Blank lines are skipped; a quoted CSV cell may span lines (:func:`csv_rows`)."""
    declared: dict[str, str] = {}
    if source.suffix.lower() == ".jsonl":
        rows = []
        for number, line in enumerate(read_text(source).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputError(source, f"line {number}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise InputError(source, f"line {number}: expected a JSON object")
            _check_flat(source, number, row)
            rows.append((number, row))
        return rows, declared
    if source.suffix.lower() != ".csv":
        raise InputError(source, "a catalogue is a .csv or .jsonl file")
    text = read_text(source)
    lines = [(n, cells) for n, cells in csv_rows(text, header_delimiter(text)) if cells]
    if not lines:
        return [], declared
    names = []
    for header in lines[0][1]:
        name, _, kind = header.strip().partition(":")
        if kind and kind not in COLUMN_TYPES:
            raise InputError(
                source, f"column {header!r}: type {kind!r} is not one of {', '.join(COLUMN_TYPES)}"
            )
        names.append(name)
        if kind:
            declared[name] = kind
    return [(n, dict(zip(names, cells))) for n, cells in lines[1:]], declared


def read_catalogue(path: str | os.PathLike) -> Catalogue:
    """Read and type-check a catalogue file (see the module docstring); errors name the file."""
    source = Path(path)
    if not source.is_file():
        raise InputError(source, "catalogue file not found")
    try:
        rows, declared = _read_rows(source)
    except csv.Error as exc:  # (reading and decoding errors are InputErrors of read_text)
        raise InputError(source, f"unreadable ({exc})") from None
    if not rows:
        raise InputError(source, "the catalogue has no rows")
    lines, rows = [n for n, _ in rows], [row for _, row in rows]
    names = list(dict.fromkeys(n for row in rows for n in row))
    joins = [n for n in JOIN_COLUMNS if n in names]
    if not joins:
        raise InputError(source, "needs a 'key' (or 'id') or a 'path' column to join it to the items")
    join = joins[0]
    by = "path" if join == "path" else "key"
    columns = {}
    for name in names:
        if name in JOIN_COLUMNS:
            continue
        _check_name(source, name)
        values = [row.get(name) for row in rows]
        columns[name] = declared.get(name) or _infer(values)
        if name not in declared and columns[name] == "str":
            _warn_if_mostly_numbers(source, name, values, lines)
    table: dict[str, dict[str, Any]] = {}
    for line, row in zip(lines, rows):
        raw_key = row.get(join)
        if raw_key in (None, ""):
            raise InputError(source, f"line {line}: empty {join}")
        value = _norm_path(str(raw_key)) if by == "path" else str(raw_key)
        if value in table:
            raise InputError(source, f"line {line}: {join} {value!r} appears twice")
        table[value] = {n: _cell(source, line, n, kind, row.get(n)) for n, kind in columns.items()}
    return Catalogue(source, by, columns, table)
