"""WikiMT-X (``sander-wood/wikimt-x``): 1,000 lead-sheet / audio / text triplets.

Expected layout (the exact JSON keys are known only second-hand: the public loaders of
third-party evaluation code read them so; the dataset card was not reachable from here. A record
missing a key this loader needs is an error naming the file, the line and the field)::

    PATH/wikimt-x-public.jsonl          one JSON object per line (1,000 lines):
                                          "leadsheet"   the lead sheet as ABC text
                                          "background", "analysis", "description", "scene"
                                                        the four English text types
                                          (also "title", "artists", "genre": not used here)
    PATH/audio/<audio id>.<ext>         optional: the recordings (YouTube), .wav .mp3 .flac .ogg,
                                        or official MERT features .npy; <audio id> is read from
                                        the first of the fields "audio", "youtube_id", "ytid", "id"
                                        the record has
    PATH/midi/<key>.mid                 optional: performance MIDI of each piece (emergent
                                        sheet/MIDI/audio directions, the paper's "P")
    PATH/wikimt-x-public.<lang>.jsonl   optional: the same file translated (same lines in the same
                                        order; at least "background"), e.g. ``.ru.jsonl``

Piece keys are the 4-digit line numbers (``0001`` .. ``1000``), so translations and MIDI files
line up by position. Directions: each text type -> sheet and -> audio (English), background in
each translated language -> sheet and -> audio, and the emergent music -> music directions.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import (
    BenchmarkData,
    TextQuery,
    field_of,
    json_records,
    read_json_lines,
)
from clamp3.evaluate.benchmarks.media import files_by_stem, write_inline_scores
from clamp3.utils.errors import InputError

NAME = "wikimt-x"
JSONL = "wikimt-x-public.jsonl"
TEXT_TYPES = ("background", "analysis", "description", "scene")
AUDIO_ID_FIELDS = ("audio", "youtube_id", "ytid", "id")
SUBSETS = ("all",)
SECOND_HAND = (
    "WikiMT-X layout known second-hand (fields leadsheet, background, analysis, description, scene; "
    "audio id from audio/youtube_id/ytid/id): a mismatch stops with the file, line and field"
)


def _audio_id(record: dict, where: str) -> str:
    for name in AUDIO_ID_FIELDS:
        if isinstance(record.get(name), str) and record[name].strip():
            return record[name].strip()
    raise InputError(
        where,
        f"no audio id: none of the fields {', '.join(AUDIO_ID_FIELDS)} is a non-empty string; "
        f"the record has: {', '.join(sorted(record))}",
    )


def _translations(jsonl: Path, keys: list[str]) -> dict[str, list[tuple[str, dict]]]:
    """Language -> the (where, record) pairs of ``wikimt-x-public.<lang>.jsonl`` in line order."""
    out = {}
    for path in sorted(jsonl.parent.glob(f"{jsonl.stem}.*.jsonl")):
        lang = path.name[len(jsonl.stem) + 1 : -len(".jsonl")]
        records = list(read_json_lines(path))
        if len(records) != len(keys):
            raise InputError(
                path, f"has {len(records)} records but {jsonl.name} has {len(keys)}; lines must match"
            )
        out[lang] = records
    return out


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    """Read the layout of the module docstring; inline lead sheets are written to ``work/sheet``."""
    jsonl, records = json_records(path, [JSONL], f"the WikiMT-X records ({JSONL})")
    root = jsonl.parent
    keys, sheets, audio_ids, queries = [], {}, {}, []
    has_audio = (root / "audio").is_dir()
    for where, record in records:
        key = f"{len(keys) + 1:04d}"
        keys.append(key)
        sheets[key] = field_of(record, "leadsheet", where)
        for text_type in TEXT_TYPES:
            text = field_of(record, text_type, where)
            queries.append(TextQuery(key, key, text, text_type))
        if has_audio:
            audio_ids[key] = _audio_id(record, where)
    if not keys:
        raise InputError(jsonl, "no records")
    for lang, translated in _translations(jsonl, keys).items():
        for key, (where, record) in zip(keys, translated):
            text = field_of(record, "background", where)
            queries.append(TextQuery(key, key, text, "background", lang))
    music = {"sheet": write_inline_scores(sheets, work / NAME / "sheet", ".abc")}
    notes = [SECOND_HAND]
    if has_audio:
        found = files_by_stem(root / "audio")
        music["audio"] = {k: found[a] for k, a in audio_ids.items() if a in found}
        missing = sum(1 for a in audio_ids.values() if a not in found)
        if missing:
            notes.append(f"{missing} of {len(audio_ids)} recordings are not in {root / 'audio'}")
    else:
        notes.append(f"no {root / 'audio'} folder: the audio directions are left out")
    if (root / "midi").is_dir():
        midi = files_by_stem(root / "midi")
        music["midi"] = {k: midi[k] for k in keys if k in midi}
    return BenchmarkData(NAME, jsonl, music, queries, notes, emergent=True)
