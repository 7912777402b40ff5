"""MIDI -> a piano-roll SVG: a quick visual preview of a performance file, no notation needed.

Time runs left to right in seconds (tempo changes applied), pitch bottom to top; each note is
a bar coloured by MIDI channel, drums (channel 10) in grey. Octave lines are labelled at every
C. The SVG holds only numbers and fixed labels, never text taken from the file.
"""

from __future__ import annotations

from typing import Any

from clamp3.preprocess.notes import Note, read_midi_notes

MAX_NOTES = 50_000  # a preview, not an archive: beyond this the roll is cut (and says so)
_PALETTE = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
]  # fmt: skip
_BLACK_KEYS = {1, 3, 6, 8, 10}
_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def midi_notes(midi: Any) -> tuple[list[Note], float, bool]:
    """Notes of a ``mido.MidiFile`` -> (notes, duration in seconds, truncated?), read by the
    package's one rule (:mod:`clamp3.preprocess.notes`), cut after :data:`MAX_NOTES`."""
    return read_midi_notes(midi, MAX_NOTES)


def _layout(notes: list[Note], duration: float) -> tuple[int, int, float, float]:
    """(lowest pitch, highest pitch, pixels per second, pixels per semitone)."""
    low = min((n.pitch for n in notes), default=60) - 2
    high = max((n.pitch for n in notes), default=72) + 2
    px_per_second = max(8.0, min(80.0, 1600.0 / max(duration, 1e-3)))
    px_per_pitch = max(3.0, min(12.0, 480.0 / (high - low + 1)))
    return low, high, px_per_second, px_per_pitch


def render_svg(notes: list[Note], duration: float, truncated: bool = False) -> str:
    """The piano roll of ``notes`` as a standalone SVG document (width/height in px)."""
    low, high, pps, ppp = _layout(notes, duration)
    left, top, bottom = 40.0, 10.0, 24.0
    width = left + max(duration, 1.0) * pps + 10
    height = top + (high - low + 1) * ppp + bottom

    def y_of(pitch: int) -> float:
        return top + (high - pitch) * ppp

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.1f} {height:.1f}" font-family="sans-serif" font-size="10">',
        f'<rect width="{width:.1f}" height="{height:.1f}" fill="#ffffff"/>',
    ]
    for pitch in range(low, high + 1):
        if pitch % 12 in _BLACK_KEYS:
            parts.append(
                f'<rect x="{left}" y="{y_of(pitch):.1f}" width="{width - left:.1f}" height="{ppp:.1f}" fill="#f0f0f4"/>'
            )
        if pitch % 12 == 0:
            y = y_of(pitch) + ppp
            parts.append(f'<line x1="{left}" x2="{width:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c8c8d0"/>')
            label = f"{_NAMES[0]}{pitch // 12 - 1}"
            parts.append(f'<text x="4" y="{y:.1f}" fill="#555">{label}</text>')
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1e9) if s * pps >= 60)
    t = 0.0
    while t <= duration + 1e-9 and step < 1e9:
        x = left + t * pps
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom:.1f}" stroke="#e4e4ea"/>'
        )
        parts.append(
            f'<text x="{x + 2:.1f}" y="{height - 8:.1f}" fill="#555">{int(t // 60)}:{int(t % 60):02d}</text>'
        )
        t += step
    for n in notes:
        colour = "#9a9a9a" if n.channel == 9 else _PALETTE[n.channel % len(_PALETTE)]
        w = max((n.end - n.start) * pps, 1.0)
        parts.append(
            f'<rect x="{left + n.start * pps:.1f}" y="{y_of(n.pitch):.1f}" width="{w:.1f}" '
            f'height="{max(ppp - 1, 1):.1f}" rx="1" fill="{colour}"/>'
        )
    if truncated:
        parts.append(
            f'<text x="{left + 4}" y="{top + 12}" fill="#b00">preview cut at {MAX_NOTES} notes</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
