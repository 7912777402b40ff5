"""What every data-set loader returns, and the checks that make a wrong layout fail loudly.

A loader turns the files of one data set, as a user downloads them, into a
:class:`BenchmarkData`: the music files of each piece by modality and the text queries
(each naming its piece, its text type and its language). The runner builds every direction
from it: each (text type, language) group -> each music modality, and, when a data set has
several music modalities, the emergent music -> music directions.

Music modalities are named ``sheet`` (ABC / MusicXML), ``midi`` (performance MIDI) and
``audio`` (a recording, or official MERT ``.npy`` features); text queries are plain strings.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp3.utils.errors import InputError
from clamp3.utils.io import read_text

MUSIC_MODALITIES = ("sheet", "midi", "audio")
ENGLISH = "en"


@dataclass(frozen=True)
class TextQuery:
    """One text query: ``key`` is the piece it describes; ``id`` names the query itself (a
    caption id, or the piece key when a piece has one text of this type)."""

    id: str
    key: str
    text: str
    text_type: str
    language: str = ENGLISH


@dataclass
class BenchmarkData:
    """A loaded data set. ``music[modality][key]`` is the file of a piece; ``queries`` are the
    texts; ``notes`` say what the loader assumed or left out (printed with the table)."""

    dataset: str
    source: Path
    music: dict[str, dict[str, Path]]
    queries: list[TextQuery]
    notes: list[str] = field(default_factory=list)
    emergent: bool = False  # score music -> music directions between the modalities present

    def text_groups(self) -> list[tuple[str, str]]:
        """The (text type, language) pairs present, in first-seen order."""
        return list(dict.fromkeys((q.text_type, q.language) for q in self.queries))

    def modalities(self) -> list[str]:
        """The music modalities with at least one piece, in :data:`MUSIC_MODALITIES` order."""
        return [m for m in MUSIC_MODALITIES if self.music.get(m)]


def select_queries(
    data: BenchmarkData, text_types: Sequence[str] | None, languages: Sequence[str] | None
) -> BenchmarkData:
    """``data`` with only the queries of ``text_types`` and ``languages`` (None: all).

    Raises :class:`InputError` naming what the data set has when a requested type or language
    is absent, rather than silently scoring nothing.
    """
    queries = data.queries
    for wanted, attr, what in ((text_types, "text_type", "text type"), (languages, "language", "language")):
        if wanted is None:
            continue
        present = list(dict.fromkeys(getattr(q, attr) for q in queries))
        missing = [w for w in wanted if w not in present]
        if missing:
            raise InputError(
                data.source,
                f"no {what} {', '.join(missing)} in {data.dataset}; it has: {', '.join(present) or 'none'}",
            )
        queries = [q for q in queries if getattr(q, attr) in wanted]
    return BenchmarkData(data.dataset, data.source, data.music, queries, list(data.notes), data.emergent)


# ------------------------------------------------------------------------------------- reading
def table_and_audio(path: Path, name: str, what: str, audio_layout: str) -> tuple[Path, Path]:
    """A captions table (``path`` itself, or ``name`` in the folder ``path``) and the ``audio``
    folder beside it, which must exist (else :class:`InputError` saying it should hold ``audio_layout``)."""
    table = find_file(path, [name], what)
    audio = table.parent / "audio"
    if not audio.is_dir():
        raise InputError(audio, f"not found; expected {audio_layout}")
    return table, audio


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """``root`` itself when it is a file, else the first of ``names`` inside the folder ``root``."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise InputError(root, "no such file or folder")
    for name in names:
        if (root / name).is_file():
            return root / name
    raise InputError(root, f"no {' or '.join(names)} here; expected {what}")


def json_records(
    path: Path, names: Sequence[str], what: str
) -> tuple[Path, Iterator[tuple[str, dict[str, Any]]]]:
    """A data set's JSON-lines file (:func:`find_file`) and its (where, object) pairs
    (:func:`read_json_lines`, read as the pairs are taken)."""
    jsonl = find_file(path, names, what)
    return jsonl, read_json_lines(jsonl)


def read_json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, object) per non-empty line of a JSON-lines file, ``where`` being
    ``"<path>:<1-based line>"`` for the loader's own errors; a line that is not a JSON object
    raises :class:`InputError` naming the file and the line."""
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}", f"not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{path}:{number}", "expected a JSON object per line")
        yield f"{path}:{number}", record


def read_csv_rows(path: Path, columns: Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row) per CSV data row (``where`` as in :func:`read_json_lines`); a missing
    column raises :class:`InputError` that names the file, the missing columns and those found."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    header = reader.fieldnames or []
    missing = [c for c in columns if c not in header]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}; the header has: {', '.join(header) or 'nothing'}"
        )
    for row in reader:
        yield f"{path}:{reader.line_num}", row


def field_of(record: dict[str, Any], name: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``record[name]``, which must exist and be of ``kind``; else :class:`InputError` naming
    ``where`` (file and line), the field and the fields the record does have."""
    if name not in record:
        raise InputError(
            where, f"missing field {name!r}; the record has: {', '.join(sorted(record)) or 'none'}"
        )
    value = record[name]
    if not isinstance(value, kind):
        raise InputError(where, f"field {name!r} is {type(value).__name__}, expected {_kind_name(kind)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def truthy(value: str | bool | int | None) -> bool:
    """CSV / JSON flags: ``True``, ``"True"``, ``"true"``, ``"1"``, 1 -> True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return str(value).strip().lower() in ("true", "1", "yes")


def relative_to(root: Path, path: str | os.PathLike) -> Path:
    """A path from a data file, relative to the data set's folder unless absolute."""
    p = Path(path)
    return p if p.is_absolute() else root / p
