"""Transposed copies of a training piece: its ABC, MTF and facts moved to other keys.

Why: a few hundred pieces in their written keys show the text–symbolic stage each key a
dozen times or so, too rarely to learn that "D major" / "D-Dur" / "D大调" goes with ``K:D``
and with the notes it makes sharp. A copy moved to another key keeps everything else
(title, meter, rhythm, texture) and changes exactly the pitched facts, so the texts written
from it say what changed. Only training pieces get copies (the split of a group never moves,
so no copy of a validation or test piece exists), and copies have no audio: the text–audio
stage, which needs audio, never sees them.

How, without a second pass of music21 over the score:

- ABC: the piece's MusicXML -> xml2abc -> abctoolkit's own key-to-key transposition (the one
  the CLaMP authors use for augmentation; it moves by -5..+6 semitones to the target key
  signature) -> interleaved as every ABC file of the corpus.
- MTF: the piece's MIDI with every note of a pitched channel moved by the same number of
  semitones and each key-signature message respelled, written as MTF.
- Facts: key tonic, lowest and highest note, opening and final notes moved by the same
  interval (letter steps and semitones), so "F#4" a major third up is "A#4", never "Bb4".

Layout: ``pieces/<id>/transposed/<key>/score.abc, score.mtf, facts.json`` (``facts.json``
last, so a copy with facts is complete); the piece's own facts list them under
``"transposed"`` and the count asked for under ``"transposed_count"``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clamp3.corpus.select import stable_hash
from clamp3.utils.io import write_json_atomic, write_text_atomic

# Target key signatures: the twelve with at most six accidentals, each pitch class once.
KEYS = ("Db", "Ab", "Eb", "Bb", "F", "C", "G", "D", "A", "E", "B", "F#")
LETTERS = "CDEFGAB"
NATURAL = (0, 2, 4, 5, 7, 9, 11)  # semitones above C of each letter
PITCHED_FACTS = ("key_tonic", "pitch_low", "pitch_high", "final")
DIRECTORY = "transposed"
_PITCH = re.compile(r"^([A-G])(#{1,2}|b{1,2})?(-?\d+)?$")


@dataclass(frozen=True)
class Transposition:
    """A move to key signature ``key``: ``semitones`` (-5..+6) and ``steps`` letters (never of
    the opposite sign; 0 for D -> Db, a chromatic move on one letter)."""

    key: str
    semitones: int
    steps: int

    @property
    def name(self) -> str:
        """File- and id-safe: ``"Fs"`` for F#."""
        return self.key.replace("#", "s")


def between(source_key: str, target_key: str) -> Transposition:
    """The move from one major key signature name to another, as abctoolkit makes it:
    up when the target is 0-6 semitones above, else down."""
    semitones = (_pitch_class(target_key) - _pitch_class(source_key)) % 12
    if semitones >= 7:
        semitones -= 12
    up = (LETTERS.index(target_key[0]) - LETTERS.index(source_key[0])) % 7
    steps = up if semitones >= 0 else up - 7 if up else 0
    return Transposition(target_key, semitones, steps)


def choose(piece_id: str, source_key: str, count: int) -> list[Transposition]:
    """``count`` distinct target keys for a piece (never its own), the same on every run."""
    others = sorted((k for k in KEYS if _pitch_class(k) != _pitch_class(source_key)),
                    key=lambda k: stable_hash(f"transpose|{piece_id}|{k}"))
    return [between(source_key, key) for key in others[:count]]


def move_pitch(name: str, move: Transposition) -> str:
    """``"F#4"`` or ``"Bb"`` moved by ``move``: the letter by ``steps``, the sound by
    ``semitones``; the octave (when given) follows the letter, as in music21's names. A result
    that would need three sharps or flats is spelled on the neighbouring letter instead."""
    match = _PITCH.match(name)
    if not match:
        raise ValueError(f"not a pitch name: {name!r}")
    letter, accidental, octave = match.groups()
    index = LETTERS.index(letter)
    alter = (accidental or "").count("#") - (accidental or "").count("b")
    sound = NATURAL[index] + alter + move.semitones
    moved = index + move.steps
    new_alter = sound - (NATURAL[moved % 7] + 12 * (moved // 7))
    while abs(new_alter) > 2:  # a triple accidental: the next letter, as abctoolkit respells it
        moved += 1 if new_alter > 0 else -1
        new_alter = sound - (NATURAL[moved % 7] + 12 * (moved // 7))
    new_letter, octaves = LETTERS[moved % 7], moved // 7
    text = new_letter + ("#" * new_alter if new_alter > 0 else "b" * -new_alter)
    return text + (str(int(octave) + octaves) if octave is not None else "")


def moved_facts(facts: dict[str, Any], move: Transposition, copy_id: str) -> dict[str, Any]:
    """The facts of the copy: the pitched ones moved, ``id`` and ``transposition`` set."""
    out = dict(facts, id=copy_id, transposition={"key": move.key, "semitones": move.semitones})
    for field in PITCHED_FACTS:
        if out.get(field):
            out[field] = move_pitch(out[field], move)
    out["opening"] = [move_pitch(p, move) for p in facts.get("opening") or []]
    for key in ("transposed", "transposed_count", "transposed_failed", "warnings"):
        out.pop(key, None)
    return out


def source_key(abc: str) -> str:
    """The major key signature name of a standard ABC text's first ``K:`` field (C for none)."""
    from abctoolkit.transpose import lookup_key_according_to_keymode

    for line in abc.splitlines():
        if line.startswith("K:"):
            keymode = line[2:].strip().split()[0] if line[2:].strip() else "none"
            return "C" if keymode == "none" else lookup_key_according_to_keymode(keymode)
    return "C"


def transposed_abc(abc: str, move: Transposition, name: str) -> str:
    """Standard ABC (xml2abc output) -> interleaved ABC in ``move.key``."""
    from abctoolkit.transpose import transpose_an_abc_text

    from clamp3.preprocess import interleave_abc

    lines = [line + "\n" for line in abc.splitlines() if line.strip()]
    return interleave_abc(transpose_an_abc_text(lines, move.key), name=name)


def transposed_mtf(midi: tuple[int, list[Any]], move: Transposition) -> str:
    """MTF of ``midi`` = (ticks per beat, merged messages) with every note moved by
    ``move.semitones`` (not on channel 10, the drums) and key signatures respelled."""
    from clamp3.preprocess.mtf import messages_to_mtf

    ticks, messages = midi
    return messages_to_mtf(ticks, (_moved_message(msg, move) for msg in messages))


def _moved_message(msg: Any, move: Transposition) -> Any:
    if msg.type in ("note_on", "note_off", "polytouch") and msg.channel != 9:
        return msg.copy(note=min(127, max(0, msg.note + move.semitones)))
    if msg.type == "key_signature":
        minor = msg.key.endswith("m")
        tonic = move_pitch(msg.key[:-1] if minor else msg.key, move)
        try:
            return msg.copy(key=tonic + ("m" if minor else ""))
        except (KeyError, ValueError):  # mido knows at most seven accidentals: keep the old one
            pass
    return msg


def write_transposed(directory: Path, facts: dict[str, Any], count: int) -> tuple[list[str], list[str]]:
    """Write ``count`` transposed copies of the piece in ``directory`` (its MusicXML and MIDI
    exist); returns (ids of the copies, one reason per copy that could not be made). Copies
    already complete are kept. A copy that fails (a spelling the converter cannot write) is
    left out; it never fails the piece, whose own files are already made."""
    import mido

    from clamp3.preprocess import musicxml_to_abc

    abc = musicxml_to_abc(directory / "score.musicxml")
    midi_file = mido.MidiFile(directory / "score.mid")
    midi = (midi_file.ticks_per_beat, list(midi_file.merged_track))
    try:
        moves = choose(facts["id"], source_key(abc), count)
    except KeyError as exc:  # a key abctoolkit has no table for
        return [], [f"key signature {exc} cannot be transposed"]
    made, failed = [], []
    for move in moves:
        copy_id = f"{facts['id']}-to{move.name}"
        folder = directory / DIRECTORY / move.name
        if not (folder / "facts.json").is_file():
            try:
                files = (transposed_abc(abc, move, copy_id), transposed_mtf(midi, move))
                copy = moved_facts(facts, move, copy_id)
            except Exception as exc:  # abctoolkit raises bare Exception for spellings it lacks
                failed.append(f"{move.key}: {type(exc).__name__}: {exc}")
                continue
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / "score.abc", files[0])
            write_text_atomic(folder / "score.mtf", files[1])
            write_json_atomic(folder / "facts.json", copy)
        made.append(copy_id)
    return made, failed


def read_transposed(directory: Path, facts: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """(facts, files relative to ``directory``) of each copy listed in ``facts``."""
    out = []
    for copy_id in facts.get("transposed") or []:
        name = copy_id.rsplit("-to", 1)[1]
        folder = Path(DIRECTORY) / name
        copy = json.loads((directory / folder / "facts.json").read_text(encoding="utf-8"))
        out.append((copy, {"abc": str(folder / "score.abc"), "mtf": str(folder / "score.mtf")}))
    return out


def _pitch_class(key: str) -> int:
    return (NATURAL[LETTERS.index(key[0])] + key.count("#") - key.count("b")) % 12

