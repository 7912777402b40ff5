"""WikiMT (``sander-wood/wikimusictext``): 1,010 lead sheets with Wikipedia texts.

Expected layout (known second-hand, from the CLaMP release's description of its fields; a
record missing a field this loader needs is an error naming the file, the line and the field)::

    PATH/wikimusictext.jsonl    one JSON object per line: "melody" (the lead sheet, ABC text),
                                "text" (the Wikipedia text); also "title", "artist_name",
                                "genre" (not used)

Piece keys are the 4-digit line numbers. Direction: text -> sheet.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import BenchmarkData, TextQuery, field_of, json_records
from clamp3.evaluate.benchmarks.media import write_inline_scores
from clamp3.utils.errors import InputError

NAME = "wikimt"
JSONL = "wikimusictext.jsonl"
SUBSETS = ("all",)
TEXT_TYPES = ("text",)
SECOND_HAND = (
    "WikiMT layout known second-hand (fields melody, text): a mismatch stops with the file, line and field"
)


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    jsonl, records = json_records(path, [JSONL], f"the WikiMT records ({JSONL})")
    sheets, queries = {}, []
    for where, record in records:
        key = f"{len(sheets) + 1:04d}"
        sheets[key] = field_of(record, "melody", where)
        queries.append(TextQuery(key, key, field_of(record, "text", where), "text"))
    if not sheets:
        raise InputError(jsonl, "no records")
    music = {"sheet": write_inline_scores(sheets, work / NAME / "sheet", ".abc")}
    return BenchmarkData(NAME, jsonl, music, queries, [SECOND_HAND])
