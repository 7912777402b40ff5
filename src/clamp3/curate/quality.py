"""Quality controls: grounding of annotations, language of texts, duplicate detection.

Grounding rule (measurable, reported per item). The *checkable facts* of an annotation are

* numbers of two or more digits (years, opus and catalogue numbers, tempos, chart places), and
* names: words that start with a capital letter and do not start a sentence (sentence-initial
  words are skipped because English capitalises them anyway); words of one letter are skipped.

A fact is *supported* when it occurs as a whole word in the sources — the item's metadata or a
retrieved passage — after case folding and transliteration to ASCII (so "Dvořák" matches
"Dvorak"). A decade ("1960s") is supported by any year of that decade in the sources and an
ordinal century ("19th century") by any year of that century. An annotation is **grounded** when
every number is supported and at least ``min_support`` of its names are. Numbers are strict
because a wrong year or opus number is a plain error; names are lenient because annotations
legitimately capitalise genre and style words ("Baroque", "Romantic") that sources may not use.

A retrieved passage is recorded as *used* when it supports at least one fact that the metadata
alone does not.

Language identification uses ``py3langid`` (BSD, ships its model inside the wheel, needs only
numpy, deterministic, 97 languages): fastText-based detectors need a model download, and
``langdetect`` is random unless seeded globally.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from unidecode import unidecode

from clamp3.curate.documents import Passage

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_NUMBER = re.compile(r"\d{2,}")
_SENTENCE_BREAK = re.compile(r"[.!?:;\n]")
_DECADE = re.compile(r"(\d{3})0s\b")
_CENTURY = re.compile(r"(\d{1,2})(?:st|nd|rd|th)\s+century", re.IGNORECASE)

# Detectors confuse these close varieties; a translation into one accepts the others.
_LANGUAGE_GROUPS = [{"no", "nb", "nn"}, {"zh", "yue", "wuu"}, {"sr", "hr", "bs"}, {"ms", "id"}]


@dataclass(frozen=True)
class Facts:
    """Checkable facts of a text: normalised numbers and names (see the module doc)."""

    numbers: frozenset[str]
    names: frozenset[str]
    decades: frozenset[str] = frozenset()  # "196" for "1960s"
    centuries: frozenset[int] = frozenset()  # 19 for "19th century"


@dataclass
class Grounding:
    """The grounding verdict of one annotation; ``support`` is in [0, 1]."""

    grounded: bool
    support: float
    unsupported: list[str] = field(default_factory=list)
    used_passages: list[str] = field(default_factory=list)
    checked: int = 0


def _normalise(text: str) -> str:
    return unidecode(text).casefold()


def extract_facts(texts: Iterable[str]) -> Facts:
    """The facts of several texts; each text starts a new sentence (list items, fields)."""
    numbers: set[str] = set()
    names: set[str] = set()
    decades: set[str] = set()
    centuries: set[int] = set()
    for text in texts:
        decades.update(m.group(1) for m in _DECADE.finditer(text))
        centuries.update(int(m.group(1)) for m in _CENTURY.finditer(text))
        for match in _NUMBER.finditer(text):
            if not _is_decade_or_century(text, match):
                numbers.add(match.group())
        previous_end = 0
        for index, match in enumerate(_WORD.finditer(text)):
            gap = text[previous_end : match.start()]
            previous_end = match.end()
            word = match.group()
            starts_sentence = index == 0 or bool(_SENTENCE_BREAK.search(gap))
            if len(word) > 1 and word[0].isupper() and not starts_sentence:
                names.add(_normalise(word))
    return Facts(frozenset(numbers), frozenset(names), frozenset(decades), frozenset(centuries))


def _is_decade_or_century(text: str, match: re.Match) -> bool:
    tail = text[match.end() : match.end() + 12].lower()
    return (len(match.group()) == 4 and match.group().endswith("0") and tail.startswith("s")) or bool(
        re.match(r"(st|nd|rd|th)\s+century", tail)
    )


class SourceIndex:
    """Words and numbers of one source text, for whole-word lookups."""

    def __init__(self, text: str) -> None:
        normalised = _normalise(text)
        self.words = set(_WORD.findall(normalised))
        self.numbers = set(re.findall(r"\d+", normalised))

    def supports_number(self, number: str) -> bool:
        return number in self.numbers

    def supports_decade(self, prefix: str) -> bool:
        return any(len(n) == 4 and n.startswith(prefix) for n in self.numbers)

    def supports_century(self, century: int) -> bool:
        return str(century) in self.numbers or any(
            len(n) == 4 and (int(n) - 1) // 100 + 1 == century for n in self.numbers
        )


def check_grounding(
    texts: Iterable[str], metadata: str, passages: list[Passage], min_support: float = 0.8
) -> Grounding:
    """Ground the annotation ``texts`` in ``metadata`` plus ``passages`` (rule in the module doc)."""
    facts = extract_facts(texts)
    meta = SourceIndex(metadata)
    indexes = [SourceIndex(f"{p.title}\n{p.text}") for p in passages]
    checks: list[tuple[str, bool, Callable[[SourceIndex], bool]]] = []  # (label, strict, probe)
    checks += [(n, True, lambda s, n=n: s.supports_number(n)) for n in sorted(facts.numbers)]
    checks += [(f"{d}0s", True, lambda s, d=d: s.supports_decade(d)) for d in sorted(facts.decades)]
    checks += [(f"century {c}", True, lambda s, c=c: s.supports_century(c)) for c in sorted(facts.centuries)]
    checks += [(w, False, lambda s, w=w: w in s.words) for w in sorted(facts.names)]
    unsupported: list[str] = []
    used = [False] * len(passages)
    strict_failed = False
    names_ok = 0
    for label, strict, probe in checks:
        in_meta = probe(meta)
        in_passages = [probe(s) for s in indexes]
        if in_meta or any(in_passages):
            names_ok += not strict
            if not in_meta:
                used = [u or hit for u, hit in zip(used, in_passages)]
        else:
            unsupported.append(label)
            strict_failed |= strict
    n_names = len(facts.names)
    support = names_ok / n_names if n_names else 1.0
    return Grounding(
        grounded=not strict_failed and support >= min_support,
        support=round(support, 4),
        unsupported=unsupported,
        used_passages=[p.key for p, u in zip(passages, used) if u],
        checked=len(checks),
    )


_LANGID_LOCK = threading.Lock()


def detect_language(text: str) -> str:
    """ISO 639-1 code (or the detector's code) of ``text``'s language, by ``py3langid``."""
    import py3langid

    # The identifier is a lazily built module-level object; build and use it under a lock.
    with _LANGID_LOCK:
        return py3langid.classify(text)[0]


def supported_languages() -> set[str]:
    """Codes ``detect_language`` can return."""
    from py3langid.langid import _get_identifier

    with _LANGID_LOCK:
        return set(_get_identifier().nb_classes)


def same_language(expected: str, detected: str) -> bool:
    """``True`` if ``detected`` is ``expected`` or a close variety a detector confuses with it."""
    if expected == detected:
        return True
    return any(expected in group and detected in group for group in _LANGUAGE_GROUPS)


def answer_language(fields: dict[str, str | list[str]], min_chars: int = 20) -> str | None:
    """The detected language of an answer's text fields joined, or ``None`` if too short to tell.

    Lists (genres, tags) are left out and the fields are judged together rather than one by one:
    a few words or a single sentence do not identify a language reliably (in tests, a tag list
    such as "calm, melodic" was taken for Dutch), a paragraph does.
    """
    text = "\n".join(value for value in fields.values() if isinstance(value, str))
    return detect_language(text) if len(text) >= min_chars else None


def duplicate_key(texts: Iterable[str]) -> str:
    """A fingerprint equal for texts that differ only in case, spacing, punctuation or accents."""
    normalised = " ".join(w for t in texts for w in re.sub(r"[\W_]+", " ", _normalise(t)).split())
    return hashlib.sha1(normalised.encode("utf-8")).hexdigest()
