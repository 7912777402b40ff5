"""A small additive synthesizer for MIDI files: the fallback when FluidSynth is absent.

It reads note events with mido and renders each note as a sum of harmonics under an ADSR
envelope, with one timbre per General-MIDI instrument family (program // 8): bowed strings
get a slow attack and vibrato, plucked and struck instruments decay, organ and reeds keep
their upper harmonics. It is not meant to sound like an orchestra; it gives audio whose
pitch, rhythm, tempo, loudness and rough timbre follow the score, so audio features vary
between pieces the way they do with a real synthesizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from clamp3.preprocess.notes import Note, read_midi_notes

RELEASE_TAIL = 1.0  # seconds of audio kept after the last note-off (the release rings on)


@dataclass(frozen=True)
class Timbre:
    """Relative amplitudes of harmonics 1, 2, ...; envelope times in seconds; ``decay_rate``
    (1/s) makes struck and plucked notes fade while held; ``vibrato`` is a depth in cents."""

    harmonics: tuple[float, ...]
    attack: float
    decay: float
    sustain: float
    release: float
    decay_rate: float = 0.0
    vibrato: float = 0.0


_PIANO = Timbre((1.0, 0.45, 0.25, 0.12, 0.06, 0.03), 0.005, 0.1, 0.7, 0.25, decay_rate=1.8)
_PLUCK = Timbre((1.0, 0.6, 0.3, 0.2, 0.1), 0.003, 0.05, 0.8, 0.2, decay_rate=3.0)
_MALLET = Timbre((1.0, 0.1, 0.3, 0.05), 0.002, 0.05, 0.6, 0.3, decay_rate=4.0)
_ORGAN = Timbre((1.0, 0.8, 0.6, 0.5, 0.3, 0.2, 0.1), 0.02, 0.05, 0.9, 0.08)
_BOWED = Timbre((1.0, 0.55, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05), 0.06, 0.1, 0.85, 0.15, vibrato=12.0)
_VOICE = Timbre((1.0, 0.35, 0.12, 0.05), 0.08, 0.1, 0.9, 0.2, vibrato=18.0)
_BRASS = Timbre((1.0, 0.7, 0.6, 0.45, 0.35, 0.25, 0.15), 0.04, 0.1, 0.8, 0.12)
_REED = Timbre((1.0, 0.2, 0.6, 0.15, 0.4, 0.1, 0.2), 0.03, 0.05, 0.85, 0.1, vibrato=6.0)
_PIPE = Timbre((1.0, 0.15, 0.05), 0.04, 0.05, 0.9, 0.12, vibrato=8.0)
_SYNTH = Timbre((1.0, 0.5, 0.33, 0.25, 0.2), 0.01, 0.1, 0.8, 0.2)

# One timbre per General-MIDI family (program // 8), in family order.
FAMILY_TIMBRES = (
    _PIANO,  # 0 piano
    _MALLET,  # 1 chromatic percussion
    _ORGAN,  # 2 organ
    _PLUCK,  # 3 guitar
    _PLUCK,  # 4 bass
    _BOWED,  # 5 strings
    _VOICE,  # 6 ensemble (strings ensemble, choir aahs, voice oohs)
    _BRASS,  # 7 brass
    _REED,  # 8 reed
    _PIPE,  # 9 pipe
    _SYNTH,  # 10 synth lead
    _SYNTH,  # 11 synth pad
    _SYNTH,  # 12 synth effects
    _PLUCK,  # 13 ethnic
    _MALLET,  # 14 percussive
    _MALLET,  # 15 sound effects
)
DRUM_CHANNEL = 9


def timbre_for(program: int) -> Timbre:
    return FAMILY_TIMBRES[max(0, min(program, 127)) // 8]


def read_notes(path: str | os.PathLike, seconds_max: float | None = None) -> tuple[list[Note], float]:
    """Notes of a MIDI file (tempo changes applied; overlapping notes as
    :mod:`clamp3.preprocess.notes` reads them), sorted by start and pitch, and the file's length
    in seconds. Notes starting at or after ``seconds_max`` are dropped and longer ones cut there.
    """
    import mido

    notes, length, _ = read_midi_notes(mido.MidiFile(str(path)))
    if seconds_max is not None:
        notes = [
            Note(n.start, min(n.end, seconds_max), n.pitch, n.velocity, n.program, n.channel)
            for n in notes
            if n.start < seconds_max
        ]
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes, length


def synthesize(notes: list[Note], seconds: float, sample_rate: int = 24000) -> np.ndarray:
    """Mono float32 audio of exactly ``round(seconds * sample_rate)`` samples, peak <= 1."""
    total = int(round(seconds * sample_rate))
    out = np.zeros(total, dtype=np.float64)
    for note in notes:
        start = int(round(note.start * sample_rate))
        if start >= total:
            continue
        if note.channel == DRUM_CHANNEL:
            wave = _drum(note, sample_rate)
        else:
            wave = _tone(note, timbre_for(note.program), sample_rate)
        stop = min(total, start + len(wave))
        out[start:stop] += wave[: stop - start]
    peak = float(np.max(np.abs(out))) if total else 0.0
    if peak > 1.0:
        out /= peak
    return out.astype(np.float32)


def _tone(note: Note, timbre: Timbre, sample_rate: int) -> np.ndarray:
    held = max(note.end - note.start, 0.02)
    n = int((held + timbre.release) * sample_rate)
    t = np.arange(n) / sample_rate
    freq = 440.0 * 2.0 ** ((note.pitch - 69) / 12.0)
    if timbre.vibrato:
        # vibrato sets in after 0.15 s, as players do on held notes
        depth = (2.0 ** (timbre.vibrato / 1200.0) - 1.0) * np.clip((t - 0.15) / 0.2, 0.0, 1.0)
        phase = 2 * np.pi * np.cumsum(freq * (1.0 + depth * np.sin(2 * np.pi * 5.5 * t))) / sample_rate
    else:
        phase = 2 * np.pi * freq * t
    wave = np.zeros(n)
    nyquist = sample_rate / 2
    for k, amp in enumerate(timbre.harmonics, start=1):
        if k * freq < nyquist:
            wave += amp * np.sin(k * phase)
    wave /= sum(timbre.harmonics)
    return wave * _envelope(t, held, timbre) * (note.velocity / 127.0) * 0.35


def _envelope(t: np.ndarray, held: float, timbre: Timbre) -> np.ndarray:
    attack = min(timbre.attack, held / 2)
    env = np.where(
        t < attack,
        t / max(attack, 1e-6),
        timbre.sustain + (1 - timbre.sustain) * np.exp(-(t - attack) / max(timbre.decay, 1e-6)),
    )
    if timbre.decay_rate:
        env = env * np.exp(-timbre.decay_rate * t)
    at_release = float(np.interp(held, t, env)) if len(t) else 0.0
    released = at_release * np.exp(-(t - held) * 5.0 / max(timbre.release, 1e-6))
    return np.where(t < held, env, released)


def _drum(note: Note, sample_rate: int) -> np.ndarray:
    n = int(0.15 * sample_rate)
    rng = np.random.default_rng(note.pitch)  # the same drum sounds the same every time
    decay = np.exp(-np.arange(n) / (0.03 * sample_rate))
    return rng.standard_normal(n) * decay * (note.velocity / 127.0) * 0.2
