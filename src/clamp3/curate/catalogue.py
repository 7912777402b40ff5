"""The catalogue: one row per music item to annotate, read from CSV or JSONL.

Columns (CSV header or JSONL keys; names are case-insensitive):

* ``id`` (required, unique) — the item id written to the output.
* ``filepaths`` (required; aliases ``filepath``, ``file``, ``files``, ``path``, ``paths``) — the
  prepared music files the trainer reads (``.abc``/``.mtf``/``.npy``; others are rejected), relative
  to the catalogue's folder or absolute.
  Several paths are a JSON list or, in CSV, separated by ``;``.
* ``title`` (required; alias ``name``).
* ``artists`` (aliases ``artist``, ``composer``, ``composers``, ``performer``, ``performers``) — a list
  or a ``;``-separated string.
* anything else (year, album, region, genre, ...) — kept as metadata: shown to the LLM and counted
  as a grounding source, not copied to the output.

A bad row never stops the run: it becomes an :class:`InputError` naming the file, the row and
the reason, and the other rows are read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.inputs import unprepared_reason
from clamp3.utils.errors import InputError
from clamp3.utils.io import csv_rows, header_delimiter, jsonl_objects, read_text

_FILE_KEYS = ("filepaths", "filepath", "files", "file", "paths", "path")
_TITLE_KEYS = ("title", "name")
_ARTIST_KEYS = ("artists", "artist", "composers", "composer", "performers", "performer")
_LIST_SEPARATOR = ";"

MetadataValue = str | list[str]


@dataclass(frozen=True)
class CatalogueItem:
    """One music item. ``filepaths`` are absolute; ``metadata`` holds the other non-empty columns."""

    id: str
    filepaths: tuple[Path, ...]
    title: str
    artists: tuple[str, ...] = ()
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    def metadata_lines(self) -> list[str]:
        """``"key: value"`` lines of everything known about the item (for prompts and grounding)."""
        lines = [f"title: {self.title}"]
        if self.artists:
            lines.append(f"artists: {'; '.join(self.artists)}")
        for key, value in self.metadata.items():
            lines.append(f"{key}: {'; '.join(value) if isinstance(value, list) else value}")
        return lines


def read_catalogue(path: str | os.PathLike) -> tuple[list[CatalogueItem], list[InputError]]:
    """Items in file order plus one error per rejected row.

    Rows are rejected for: no id, a duplicate id (the first row wins), no title, no file paths, a
    file that does not exist or is not ``.abc``/``.mtf``/``.npy``, or (JSONL) a line that is not a JSON object. Raises
    :class:`InputError` only when the catalogue itself cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "catalogue file not found")
    rows, errors = _read_rows(path)
    items: list[CatalogueItem] = []
    seen: set[str] = set()
    for where, row in rows:
        try:
            item = _item_from_row(row, path.parent)
        except ValueError as exc:
            errors.append(InputError(f"{path}:{where}", str(exc)))
            continue
        if item.id in seen:
            errors.append(InputError(f"{path}:{where}", f"duplicate id {item.id!r} (the first row is kept)"))
            continue
        seen.add(item.id)
        items.append(item)
    return items, errors


def _read_rows(path: Path) -> tuple[list[tuple[str, dict]], list[InputError]]:
    """``(location, row)`` pairs; location is ``line N`` so errors point at the source."""
    text = read_text(path)
    errors: list[InputError] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        objects, errors = jsonl_objects(path, text.splitlines())
        rows = [(f"line {number}", row) for number, row in objects]
    else:
        rows = _csv_records(path, text)
    return rows, errors


def _csv_records(path: Path, text: str) -> list[tuple[str, dict]]:
    """``(line N, {header: cell})`` per data row, as ``csv.DictReader`` builds them (a short row
    fills ``None``, extra cells go under ``None``), numbered by the line each row starts on."""
    found = csv_rows(text, header_delimiter(text))
    rows = [(number, cells) for number, cells in found if any(c.strip() for c in cells)]
    if not rows:
        raise InputError(path, "CSV catalogue has no header row")
    header = rows[0][1]
    out = []
    for number, cells in rows[1:]:
        record: dict = {name: (cells[i] if i < len(cells) else None) for i, name in enumerate(header)}
        if len(cells) > len(header):
            record[None] = cells[len(header) :]
        out.append((f"line {number}", record))
    return out


def _item_from_row(row: dict, root: Path) -> CatalogueItem:
    lowered = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    item_id = _scalar(lowered.pop("id", None), "id")
    if not item_id:
        raise ValueError("no id")
    title = _scalar(_pop_first(lowered, _TITLE_KEYS), "title")
    if not title:
        raise ValueError(f"item {item_id!r}: no title")
    paths = _as_list(_pop_first(lowered, _FILE_KEYS))
    if not paths:
        raise ValueError(f"item {item_id!r}: no file paths")
    resolved = tuple((root / p).resolve() for p in paths)
    for original, full in zip(paths, resolved):
        if (unprepared := unprepared_reason(original)) is not None:
            raise ValueError(f"item {item_id!r}: {unprepared}")
        if not full.is_file():
            raise ValueError(f"item {item_id!r}: file not found: {original}")
    artists = tuple(_as_list(_pop_first(lowered, _ARTIST_KEYS)))
    metadata: dict[str, MetadataValue] = {}
    for key, value in lowered.items():
        values = _as_list(value)
        if values:
            metadata[key] = values if isinstance(value, list) else _scalar(value, key)
    return CatalogueItem(item_id, resolved, title, artists, metadata)


def _pop_first(row: dict, keys: tuple[str, ...]) -> object:
    """The first non-empty value among ``keys``; every alias is removed from ``row``."""
    found = None
    for key in keys:
        value = row.pop(key, None)
        if found is None and _as_list(value):
            found = value
    return found


def _scalar(value: object, field: str = "a value") -> str:
    """A JSON scalar as catalogue text (``true``, not Python's ``True``); an object or a list
    where one value is due is refused (it became its Python ``repr`` in the prompts)."""
    if isinstance(value, (dict, list)):
        raise ValueError(f"{field}: {json.dumps(value, ensure_ascii=False)[:60]} is not a single value")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value).strip()


def _as_list(value: object) -> list[str]:
    """A list of non-empty stripped strings from a JSON list or a ``;``-separated string."""
    if value is None:
        return []
    if isinstance(value, list):
        return [s for s in (_scalar(v) for v in value) if s]
    return [s.strip() for s in str(value).split(_LIST_SEPARATOR) if s.strip()]
