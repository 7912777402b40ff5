"""MidiCaps (Melechovsky et al., 2024): captions of Lakh MIDI files.

Expected layout, as the Hugging Face release (``amaai-lab/MidiCaps``) unpacks::

    PATH/train.json     JSON lines, one per MIDI file: location (the MIDI path relative to
                        PATH, e.g. ``lmd_full/1/1a07....mid``), caption, genre, mood, key,
                        time_signature, tempo, ..., test_set (true for the held-out split)
    PATH/lmd_full/...   the MIDI files (``midicaps.tar.gz``)

Subsets: ``test`` (default; ``test_set`` true) or ``all``. Direction: caption -> MIDI.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import (
    BenchmarkData,
    TextQuery,
    field_of,
    json_records,
    relative_to,
    truthy,
)
from clamp3.utils.errors import InputError

NAME = "midicaps"
JSONL = "train.json"
SUBSETS = ("test", "all")
TEXT_TYPES = ("caption",)


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    jsonl, records = json_records(path, [JSONL], f"the MidiCaps records ({JSONL}, JSON lines)")
    subset = subset or "test"
    midi: dict[str, Path] = {}
    queries = []
    for where, record in records:
        location = field_of(record, "location", where)
        caption = field_of(record, "caption", where)
        if subset == "test" and not truthy(field_of(record, "test_set", where, (bool, int, str))):
            continue
        if location in midi:
            raise InputError(where, f"location {location!r} appears twice")
        midi[location] = relative_to(jsonl.parent, location)
        queries.append(TextQuery(location, location, caption, "caption"))
    if not queries:
        raise InputError(jsonl, f"no record in subset {subset!r}")
    return BenchmarkData(
        NAME, jsonl, {"midi": midi}, queries, [f"subset {subset}: {len(queries)} MIDI files"]
    )
