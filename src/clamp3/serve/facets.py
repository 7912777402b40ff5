"""Facets for the search page: the filterable columns of the live index and their values.

For every catalogue column (and ``modality``): its type and, for text, list and boolean
columns, the most frequent values with their counts; for number columns the smallest and
largest value. The page turns them into filter controls and writes the ``where`` expression
(:mod:`clamp3.index.filters`) the search requests carry. Hidden rows (outside the media root)
are not counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

MAX_VALUES = 50  # values listed per column: a menu, not an export


def facets(entries: list[dict[str, Any]], columns: dict[str, str], hidden: frozenset[int]) -> dict[str, Any]:
    """``{column: {"type", "values": [{"value", "count"}], "more", "min", "max"}}`` over ``entries``."""
    shown = [e for row, e in enumerate(entries) if row not in hidden]
    out: dict[str, Any] = {}
    for name, kind in {"modality": "str", **columns}.items():
        values = [e.get(name) for e in shown if e.get(name) is not None]
        facet: dict[str, Any] = {"type": kind, "values": [], "more": False, "min": None, "max": None}
        if kind in ("int", "float"):
            facet["min"], facet["max"] = (min(values), max(values)) if values else (None, None)
        else:
            flat = [v for value in values for v in value] if kind == "list" else values
            counts = Counter(flat).most_common()
            facet["values"] = [{"value": v, "count": n} for v, n in counts[:MAX_VALUES]]
            facet["more"] = len(counts) > MAX_VALUES
        out[name] = facet
    return out
