"""Training-time augmentations of the official data pipeline (§3.3, §3.5, §4.1).

Every function takes its randomness from an explicit ``numpy.random.Generator``; the data
pipeline gives each item its own generator seeded by (run seed, stage, epoch, position), so
an item is augmented the same way whichever process or worker builds it, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from clamp3.inputs import SEPARATOR

# Record fields that are never text (§4.1); every other str / list-of-str field is.
NON_TEXT_FIELDS = frozenset({"id", "filepaths", "language", "translations"})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _dedup(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v.strip()))


def text_fields(record: Mapping[str, Any]) -> list[str]:
    """The record's own text values (lists flattened), in field order, duplicates removed."""
    values: list[str] = []
    for key, value in record.items():
        if key not in NON_TEXT_FIELDS:
            values.extend(_strings(value))
    return _dedup(values)


def translation_fields(record: Mapping[str, Any]) -> list[str]:
    """The values of ``translations`` except its ``language`` entry, duplicates removed."""
    translations = record.get("translations") or {}
    values: list[str] = []
    for key, value in translations.items():
        if key != "language":
            values.extend(_strings(value))
    return _dedup(values)


def _lines(values: list[str]) -> list[str]:
    return [line for line in "\n".join(values).split("\n") if line.strip()]


def full_text(record: Mapping[str, Any]) -> str:
    """Every non-empty line of the record's own text fields, in order, joined with ``</s>``
    (the text used when text dropout is off)."""
    return SEPARATOR.join(_lines(text_fields(record)))


def eval_text(record: Mapping[str, Any]) -> str:
    """The official validation text: ``analysis`` (else :func:`full_text`, for records
    without one)."""
    analysis = record.get("analysis")
    if isinstance(analysis, str) and analysis.strip():
        return analysis
    return full_text(record)


def text_dropout(record: Mapping[str, Any], rng: np.random.Generator) -> str:
    """The official text dropout (§3.5).

    With probability 1/2 the candidates are the translations (if the record has any), else
    the record's own text fields. Their lines are pooled; each line is kept with probability
    1/2 (all lines if none survives), the kept lines are shuffled and joined with ``</s>``.
    """
    candidates = translation_fields(record) if rng.random() < 0.5 else []
    if not candidates:
        candidates = text_fields(record)
    lines = _lines(candidates)
    kept = [line for line in lines if rng.random() < 0.5] or lines
    return SEPARATOR.join(kept[i] for i in rng.permutation(len(kept)))


def is_mtf(text: str) -> bool:
    """MTF files start with ``ticks_per_beat`` (the patchiliser's own test)."""
    return text.lstrip().split(" ", 1)[0] == "ticks_per_beat"


def remove_instrument_info(text: str) -> str:
    """Drop what names the instruments, so the model cannot match text on them alone (§3.3).

    ABC: voice definition lines (``V:...``) are cut before `` nm=`` (else before `` snm=``).
    MTF: every ``program_change`` message gets program 0.
    """
    out = []
    mtf = is_mtf(text)
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        if mtf and body.startswith("program_change "):
            words = body.split(" ")
            body = " ".join([*words[:-1], "0"])
        elif not mtf and body.startswith("V:"):
            for marker in (" nm=", " snm="):
                cut = body.find(marker)
                if cut >= 0:
                    body = body[:cut]
                    break
        out.append(body + ending)
    return "".join(out)


def crop_start(n: int, length: int, rng: np.random.Generator | None) -> int:
    """Start of a ``length``-long window of an ``n``-long item (§3.3 step 6, §4.1).

    Items that fit start at 0. Longer ones: without ``rng`` (evaluation) the head; with it the
    head, the tail or a middle window (start uniform in ``1 .. n - length``), one of the three
    chosen uniformly, as the official random truncation.
    """
    excess = n - length
    if excess <= 0 or rng is None:
        return 0
    choice = int(rng.integers(3))
    if choice == 0:
        return 0
    if choice == 1:
        return excess
    return int(rng.integers(1, excess + 1))
