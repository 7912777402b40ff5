"""Facts read from a score: key, meter, tempo, range, texture, opening, ensemble, titles."""

from __future__ import annotations

import pytest

music21 = pytest.importorskip("music21")

from music21 import chord, instrument, meter, note, stream, tempo  # noqa: E402

from clamp3.corpus.describe import _clean_title, _humanize, describe, score_facts  # noqa: E402
from clamp3.corpus.select import PieceRef  # noqa: E402


def _part(name, pitches, ql=1.0, ts="3/4", mark=None, cls=stream.Part):
    part = cls()
    part.partName = name
    part.append(meter.TimeSignature(ts))
    if mark:
        part.append(tempo.MetronomeMark(number=mark))
    for p in pitches:
        part.append(
            note.Note(p, quarterLength=ql) if isinstance(p, str) else chord.Chord(p, quarterLength=ql)
        )
    return part.makeMeasures()


def _score(*parts):
    score = stream.Score()
    for part in parts:
        score.insert(0, part)
    return score


def test_facts_of_a_homophonic_two_part_score():
    melody = ["D5", "F#5", "A5", "G5", "F#5", "E5", "D5", "C#5", "D5"]
    bass = ["D3", "D3", "F#3", "G3", "A3", "A3", "B3", "A3", "D3"]
    facts = score_facts(_score(_part("Violin", melody, mark=132), _part("Cello", bass, mark=132)))
    assert (facts["key_tonic"], facts["key_mode"]) == ("D", "major")
    assert facts["meter"] == "3/4" and facts["meter_changes"] is False
    assert facts["tempo_qpm"] == 132.0 and facts["bars"] == 3 and facts["quarter_length"] == 9.0
    assert (facts["pitch_low"], facts["pitch_high"], facts["ambitus"]) == ("D3", "A5", 31)
    assert facts["texture"] == "homophonic" and facts["parts"] == 2
    assert facts["opening"] == ["D", "F#", "A", "G"] and facts["final"] == "D"
    assert facts["rhythm"] == "quarter" and facts["largest_leap"] == 4 and facts["pickup"] is False


def test_texture_tells_voices_moving_apart_and_chords():
    lively = _part("Soprano", ["C5", "D5", "E5", "F5", "G5", "A5"], ql=0.5)
    slow = _part("Bass", ["C3", "G3"], ql=1.5)
    assert score_facts(_score(lively, slow))["texture"] == "polyphonic"
    chords = _part("Piano", [["C4", "E4", "G4"], ["F4", "A4", "C5"], ["G4", "B4", "D5"]])
    facts = score_facts(_score(chords))
    assert facts["texture"] == "chordal" and facts["tempo_qpm"] is None
    melody = _part("Flute", ["E5", "D5", "C5"])
    assert score_facts(_score(melody))["texture"] == "monophonic"


def test_minor_key_and_flats_are_spelled_with_b():
    facts = score_facts(_score(_part("Voice", ["B-4", "D-5", "F5", "E-5", "D-5", "C5", "B-4"])))
    assert (facts["key_tonic"], facts["key_mode"]) == ("Bb", "minor")
    assert facts["opening"] == ["Bb", "Db", "F", "Eb"]


def test_describe_uses_collection_knowledge_for_unnamed_parts():
    score = _score(_part("", ["G4", "A4", "B4", "C5", "D5", "G4"], ts="6/8", ql=0.5))
    ref = PieceRef("oneills1850-x-1", "oneills1850/x.abc", 1, "oneills", "oneills:x", "The Kesh Jig")
    score.metadata = music21.metadata.Metadata(title="THE KESH -- JIG.")
    facts = describe(score, ref)
    assert facts["title"] == "The Kesh Jig" and facts["genres"] == ["jig"]
    assert facts["instruments"] == ["violin"] and facts["programs"] == [40]
    assert facts["composer"] is None and facts["traditional"] and facts["region"] == "ireland"


def test_piano_staves_count_as_one_instrument():
    right = _part("Piano", ["C5", "E5", "G5"], cls=stream.PartStaff)
    left = _part("Piano", ["C3", "G3", "C3"], cls=stream.PartStaff)
    right.insert(0, instrument.Piano())
    left.insert(0, instrument.Piano())
    ref = PieceRef("chopin-x", "chopin/x.krn", None, "miscellany", "miscellany:chopin/x")
    facts = describe(_score(right, left), ref)
    assert facts["ensemble"] == [["piano", 1]] and facts["programs"] == [0, 0]
    assert facts["composer"] == "Frédéric Chopin" and facts["era"] == "romantic"


def test_titles_are_cleaned():
    assert _clean_title("48 (139). Cara mi donna") == "Cara mi donna"
    assert _clean_title("15b.  Kyrie: Humano Generi") == "Kyrie: Humano Generi"
    assert _clean_title("Den ich nicht gerne hab (4-80), S. 102") == "Den ich nicht gerne hab"
    assert _clean_title('"Faschingslied"') == "Faschingslied"
    assert _humanize("haydn/opus74no1/movement2.mxl") == "Op. 74 No. 1, movement 2"
