"""Facts about a piece, from its corpus metadata and from the score itself.

The facts are plain JSON values with language-neutral keys (``"minor"``, ``"violin"``,
``"chorale"``); :mod:`clamp3.corpus.texts` turns them into sentences in each language. Every
fact is read from the file or computed from the notes; what the files do not say (a collection's
era or usual instrument) comes from ``data/collections.json``, never guessed per piece.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from clamp3.corpus.select import PieceRef, load_collections

DURATION_TYPES = ("32nd", "16th", "eighth", "quarter", "half", "whole")
FILE_NAME_TITLE = re.compile(r"\.(mxl|xml|musicxml|krn|abc)$", re.IGNORECASE)
GENERIC_TITLES = {"first section", "second section", "third section", "untitled", "title"}


@lru_cache(maxsize=1)
def load_instruments() -> dict[str, Any]:
    text = (resources.files("clamp3.corpus") / "data" / "instruments.json").read_text(encoding="utf-8")
    return json.loads(text)["instruments"]


def describe(score: Any, ref: PieceRef) -> dict[str, Any]:
    """All facts about ``score`` (a parsed music21 Score) as a JSON-able dict.

    Keys: id, source, number, collection, collection_name, title, composer, traditional, era,
    region, place, genres, instruments (one per part), programs (General-MIDI, one per part),
    ensemble ([instrument, count] pairs), default_qpm, plus the musical facts of
    :func:`score_facts`.
    """
    spec = load_collections()["collections"][ref.collection]
    composer, era = _composer(score, ref, spec)
    instruments = [_instrument(part, spec) for part in score.parts]
    table = load_instruments()
    region, place = _region(score, spec)
    title = _title(score, ref, spec)
    facts: dict[str, Any] = {
        "id": ref.id,
        "source": ref.source,
        "number": ref.number,
        "collection": ref.collection,
        "collection_name": spec["name"],
        "title": title,
        "composer": composer,
        "traditional": bool(spec.get("traditional")),
        "era": era,
        "region": region,
        "place": place,
        "genres": _genres(title, spec),
        "instruments": instruments,
        "programs": [table[i]["program"] for i in instruments],
        "ensemble": _ensemble(score, instruments),
        "default_qpm": spec["default_qpm"],
    }
    facts.update(score_facts(score))
    return facts


def _clean_title(text: str) -> str:
    text = re.sub(r"^\s*\d+[a-z]?\s*(\(\d+\))?\.\s*", "", text)  # "48 (139). Cara mi donna", "15b. Kyrie"
    text = re.sub(r"\s*\(\d+-\d+\)(,\s*S\.\s*\d+)?\s*$", "", text)  # Essen: "(4-80), S. 102"
    text = text.strip().strip('"').strip()
    text = re.sub(r"\s*--\s*", " ", text).strip().rstrip(".").strip()
    if text.isupper():
        text = text.title().replace("'S", "'s")
    return text


def _humanize(path: str) -> str:
    """A title from a file path: ``haydn/opus74no1/movement2.mxl`` -> ``Op. 74 No. 1, movement 2``."""
    stem = Path(path).with_suffix("").as_posix().split("/", 1)[-1]
    words = stem.replace("_", " ").replace("/", ", ")
    words = re.sub(r"\bopus(\d+)", r"Op. \1 ", words)
    words = re.sub(r"(\d)\s*no(\d+)", r"\1 No. \2", words)
    words = re.sub(r"movement(\d+)", r"movement \1", words)
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", words)
    words = re.sub(r"\s+", " ", words).replace(" ,", ",").strip()
    return words[:1].upper() + words[1:]


def _title(score: Any, ref: PieceRef, spec: dict[str, Any]) -> str:
    md = score.metadata
    rule = spec.get("title_rule", "metadata")
    if rule == "bwv":
        return "BWV " + Path(ref.source).stem[3:]
    if rule == "monteverdi":
        # most of these files keep the madrigal's title, numbered, in the composer field
        raw = (md.composer or "") if md is not None else ""
        if re.match(r"^\s*\d+\.\s+[A-Za-z]", raw):
            return _clean_title(raw).capitalize()
        book, number = Path(ref.source).stem.split(".")[1:3]
        return f"Madrigal {book}.{number}"
    if rule == "mass" and md is not None and md.movementName:
        return f"{md.parentTitle}: {md.movementName}" if md.parentTitle else md.movementName
    candidates = [md.title, md.movementName] if md is not None else []
    for candidate in [*candidates, ref.title_hint]:
        if candidate and not FILE_NAME_TITLE.search(candidate):
            cleaned = _clean_title(str(candidate))
            if cleaned and cleaned.lower() not in GENERIC_TITLES:
                return cleaned
    return _humanize(ref.source)


def _composer(score: Any, ref: PieceRef, spec: dict[str, Any]) -> tuple[str | None, str | None]:
    data = load_collections()
    era = spec.get("era")
    if spec.get("composer"):
        return spec["composer"], era
    for prefix, known in data["composer_by_path"].items():
        if not prefix.startswith("_") and ref.source.startswith(prefix):
            return known["name"], known["era"] or era
    raw = (score.metadata.composer or "") if score.metadata is not None else ""
    raw = raw.splitlines()[0].strip() if raw.strip() else ""
    if not raw or raw.lower().startswith(("anonymous", "anon", "unknown")):
        return None, era
    known = data["composers"].get(raw)
    return (known["name"], known["era"] or era) if known else (raw, era)


def _region(score: Any, spec: dict[str, Any]) -> tuple[str | None, str | None]:
    """(region key, most specific place name) from a folk song's locale; else the collection's."""
    md = score.metadata
    locale = getattr(md, "localeOfComposition", None) if md is not None else None
    if not locale:
        return spec.get("region"), None
    tokens = [t.strip() for t in re.split(r"[,;/]", str(locale)) if t.strip()]
    regions = load_collections()["regions"]
    found = None
    for token in tokens:
        word = re.sub(r"\s*\(.*\)", "", token).lower()
        for key, names in regions.items():
            if not key.startswith("_") and word in names:
                found = key
    known = {name for key, names in regions.items() if not key.startswith("_") for name in names}
    place = tokens[-1] if tokens and tokens[-1].lower() not in known else None
    return found or spec.get("region"), place


def _genres(title: str, spec: dict[str, Any]) -> list[str]:
    genres = list(spec["genres"])
    for key, pattern in load_collections()["title_genres"].items():
        if not key.startswith("_") and re.search(pattern, title.lower()):
            generic = {"dance_tune", "piece", "song", "air"}
            genres = [g for g in genres if g not in generic] + [key]
            break
    return list(dict.fromkeys(genres))


def _instrument(part: Any, spec: dict[str, Any]) -> str:
    """Canonical instrument of a part: by its name, else the collection's usual instrument
    (ABC tunes and many old encodings name no instrument, or a wrong one such as a tenor
    saxophone for a 14th-century voice), else by music21's instrument object."""
    table = load_instruments()
    found = part.getInstrument(returnDefault=False)
    names = [part.partName or "", spec.get("instrument") or ""]
    names += [getattr(found, "instrumentName", None) or "", getattr(found, "partName", None) or ""]
    for name in names:
        if name in table:
            return name
        lowered = name.lower().strip()
        for key, entry in table.items():
            if lowered and any(re.search(p, lowered) for p in entry["patterns"]):
                return key
    return "piano"


def _ensemble(score: Any, instruments: list[str]) -> list[list[Any]]:
    """``[[instrument, count], ...]``; the staves of one piano or organ count once."""
    from music21 import stream

    counts: Counter[str] = Counter()
    previous = None
    for part, name in zip(score.parts, instruments):
        is_staff = isinstance(part, stream.PartStaff)
        if not (is_staff and previous == (name, True)):
            counts[name] += 1
        previous = (name, is_staff)
    return [[name, count] for name, count in counts.items()]


def pitch_name(pitch: Any) -> str:
    """``"F#"``, ``"Bb"``: letter plus accidental as # or b (music21 writes flats as -)."""
    return pitch.name.replace("-", "b")


def score_facts(score: Any) -> dict[str, Any]:
    """The facts read from the notes: key, meter, tempo, length, range, texture, rhythm, opening."""
    from music21 import harmony, meter, tempo

    flat = score.flatten()
    # chord symbols are labels above the staff, not sounding notes (music21 leaves them out of MIDI)
    notes = [n for n in flat.notes if not isinstance(n, harmony.Harmony)]
    pitches = [p for n in notes for p in n.pitches]
    if not pitches:
        raise ValueError("the score has no notes")
    low, high = min(pitches, key=lambda p: p.ps), max(pitches, key=lambda p: p.ps)
    key = score.analyze("key")
    # the meter of most bars: a stray first signature (music21 reads some ABC as 1/16) is ignored
    meters = [ts.ratioString for ts in flat.getElementsByClass(meter.TimeSignature)]
    marks = [m for m in flat.getElementsByClass(tempo.MetronomeMark) if m.number]
    top = score.parts[0] if score.parts else score
    top_notes = _sounding(top)
    bottom_notes = _sounding(score.parts[-1] if score.parts else score)
    facts = {
        "key_tonic": pitch_name(key.tonic),
        "key_mode": key.mode if key.mode in ("major", "minor") else "major",
        "meter": _main_meter(score.parts[0] if score.parts else score),
        "meter_changes": len(set(meters)) > 1,
        "tempo_qpm": round(float(marks[0].getQuarterBPM()), 1) if marks else None,
        "tempo_text": (marks[0].text or None) if marks else None,
        "bars": len(top.getElementsByClass("Measure")) or None,
        "quarter_length": float(score.highestTime),
        "pitch_low": pitch_name(low) + str(low.octave),
        "pitch_high": pitch_name(high) + str(high.octave),
        "ambitus": int(round(high.ps - low.ps)),
        "note_count": len(notes),
        "parts": len(score.parts) or 1,
        "texture": _texture(score),
        "rhythm": _main_rhythm(notes),
        "opening": [pitch_name(n.pitches[-1]) for n in top_notes[:4]],
        "final": pitch_name(bottom_notes[-1].pitches[0]) if bottom_notes else None,
        "pickup": _has_pickup(top),
        "largest_leap": _largest_leap(top_notes),
        "has_lyrics": any(n.lyrics for n in top_notes),
        "dynamics": sorted({d.value for d in flat.getElementsByClass("Dynamic")}),
    }
    return facts


def _sounding(stream_: Any) -> list[Any]:
    from music21 import harmony

    return [n for n in stream_.flatten().notes if not isinstance(n, harmony.Harmony)]


def _texture(score: Any) -> str:
    """monophonic, chordal (one part with chords), homophonic (parts mostly attack together) or
    polyphonic (independent rhythms)."""
    parts = list(score.parts) or [score]
    if len(parts) == 1:
        events = _sounding(parts[0])
        chords = sum(1 for e in events if len(e.pitches) > 1)
        return "chordal" if events and chords / len(events) > 0.2 else "monophonic"
    onsets = [{round(float(n.offset) * 12) for n in _sounding(p)} for p in parts]
    union = set().union(*onsets)
    together = sum(1 for t in union if sum(t in o for o in onsets) >= 0.75 * len(onsets))
    return "homophonic" if union and together / len(union) >= 0.6 else "polyphonic"


def _main_meter(part: Any) -> str | None:
    counts: Counter[str] = Counter()
    current = None
    for measure in part.getElementsByClass("Measure"):
        if measure.timeSignature is not None:
            current = measure.timeSignature.ratioString
        if current:
            counts[current] += 1
    return counts.most_common(1)[0][0] if counts else None


def _main_rhythm(notes: list[Any]) -> str | None:
    types = Counter(n.duration.type for n in notes if n.duration.type in DURATION_TYPES)
    return types.most_common(1)[0][0] if types else None


def _has_pickup(part: Any) -> bool:
    measures = list(part.getElementsByClass("Measure"))
    if not measures:
        return False
    first = measures[0]
    if first.number == 0 or first.paddingLeft > 0:
        return True
    ts = first.timeSignature or first.getContextByClass("TimeSignature")
    return ts is not None and first.duration.quarterLength < ts.barDuration.quarterLength


def _largest_leap(notes: list[Any]) -> int | None:
    tops = [n.pitches[-1].ps for n in notes]
    leaps = [abs(b - a) for a, b in zip(tops, tops[1:])]
    return int(max(leaps)) if leaps else None
