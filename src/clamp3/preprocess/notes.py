"""MIDI messages -> sounding notes: the one reading of note events (synthesis, piano rolls).

The rule for overlapping notes of one key (same channel and pitch, struck again before it was
released) is first in, first out: each note-off ends the earliest note still sounding on that
key. Every note-on then gives one note with its own start and velocity (a re-struck key sounds
twice, as on a piano), and no note-off is lost; closing the old note at the new note-on would
shorten it to the re-strike, which MIDI does not say. A note-on with velocity 0 is a note-off; a note-off
with nothing sounding on its key is ignored; notes still sounding when the file ends are closed
there; a note that ends where it starts (zero length) is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Note:
    """A sounding note: ``start``/``end`` in seconds, MIDI ``pitch`` 0-127, ``velocity`` 1-127,
    the ``program`` (0-127) of its channel when it started, MIDI ``channel`` 0-15."""

    start: float
    end: float
    pitch: int
    velocity: int
    program: int
    channel: int


def read_midi_notes(messages: Iterable[Any], max_notes: int | None = None) -> tuple[list[Note], float, bool]:
    """Notes of timed MIDI ``messages`` -> (notes in the order they end, end time in s, cut?).

    ``messages`` are mido messages whose ``time`` is the delta in seconds (what iterating a
    ``mido.MidiFile`` yields: tracks merged, tempo map applied). Reading stops once
    ``max_notes`` notes are complete (then ``cut`` is True and the end time is that moment).
    """
    programs = [0] * 16
    sounding: dict[tuple[int, int], deque[tuple[float, int, int]]] = {}
    notes: list[Note] = []
    now = 0.0
    for msg in messages:
        now += float(msg.time)
        if msg.type == "program_change":
            programs[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            sounding.setdefault((msg.channel, msg.note), deque()).append(
                (now, msg.velocity, programs[msg.channel])
            )
        elif msg.type in ("note_on", "note_off") and sounding.get((msg.channel, msg.note)):
            _add(notes, sounding[(msg.channel, msg.note)].popleft(), now, msg.note, msg.channel)
            if max_notes is not None and len(notes) >= max_notes:
                return notes, now, True
    for (channel, pitch), starts in sounding.items():
        for started in starts:
            _add(notes, started, now, pitch, channel)
    return notes, now, False


def _add(notes: list[Note], started: tuple[float, int, int], end: float, pitch: int, channel: int) -> None:
    start, velocity, program = started
    if end > start:
        notes.append(Note(start, end, pitch, velocity, program, channel))
