"""Any other data set, through a generic manifest (JSON lines).

Layout::

    MANIFEST.jsonl      one JSON object per piece:
      "id"              unique piece id (string)
      "music"           {"sheet": path, "midi": path, "audio": path}: any non-empty subset;
                        paths relative to the manifest's folder (or absolute); every supported
                        extension (.xml .mxl .musicxml .abc .mid .midi .mtf .wav .flac .mp3 .ogg .npy)
      "texts"           {text type: string or list of strings}: English texts (or the record's
                        "language"), several strings = several queries for the piece
      "translations"    optional {language: {text type: string or list}}

Directions: every (text type, language) -> every music modality present, and the emergent
music -> music directions between the modalities present.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import (
    ENGLISH,
    MUSIC_MODALITIES,
    BenchmarkData,
    TextQuery,
    field_of,
    json_records,
    relative_to,
)
from clamp3.utils.errors import InputError

NAME = "manifest"
SUBSETS = ("all",)
TEXT_TYPES: tuple[str, ...] = ()  # whatever the manifest names


def _texts(value: object, where: str, what: str) -> list[str]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts) or not texts:
        raise InputError(where, f"{what} must be a non-empty string or a list of them")
    return texts


def _queries(key: str, texts: dict, language: str, where: str) -> list[TextQuery]:
    out = []
    for text_type, value in texts.items():
        items = _texts(value, where, f"texts[{text_type!r}]")
        for n, text in enumerate(items):
            qid = key if len(items) == 1 else f"{key}#{n + 1}"
            out.append(TextQuery(qid, key, text, text_type, language))
    return out


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    if path.is_dir():
        found = sorted(path.glob("*.jsonl"))
        if len(found) != 1:
            raise InputError(path, f"give the manifest file itself (found {len(found)} .jsonl files here)")
        path = found[0]
    jsonl, records = json_records(path, [], "a manifest (JSON lines)")
    music: dict[str, dict[str, Path]] = {m: {} for m in MUSIC_MODALITIES}
    queries: list[TextQuery] = []
    for where, record in records:
        key = field_of(record, "id", where)
        files = field_of(record, "music", where, dict)
        unknown = sorted(set(files) - set(MUSIC_MODALITIES))
        if unknown or not files:
            raise InputError(
                where, f"music modalities must be among {', '.join(MUSIC_MODALITIES)}, got {sorted(files)}"
            )
        for modality, rel in files.items():
            if key in music[modality]:
                raise InputError(where, f"piece id {key!r} appears twice")
            if not isinstance(rel, str) or not rel:
                raise InputError(where, f"music[{modality!r}] must be a path string")
            music[modality][key] = relative_to(jsonl.parent, rel)
        language = record.get("language", ENGLISH)
        queries += _queries(key, field_of(record, "texts", where, dict), language, where)
        for lang, texts in record.get("translations", {}).items():
            if not isinstance(texts, dict):
                raise InputError(where, f"translations[{lang!r}] must be an object of text types")
            queries += _queries(key, texts, lang, where)
    if not queries:
        raise InputError(jsonl, "no records")
    music = {m: files for m, files in music.items() if files}
    return BenchmarkData(NAME, jsonl, music, queries, emergent=True)
