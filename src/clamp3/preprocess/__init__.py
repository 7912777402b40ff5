"""Symbolic preprocessing identical to the official CLaMP 3 pipeline.

MusicXML -> standard ABC (:func:`musicxml_to_abc`) -> interleaved ABC (:func:`interleave_abc`),
MIDI -> MTF (:func:`midi_to_mtf`), either text -> patches (:func:`patchify`), or all at once from
a file (:func:`load_symbolic`). Reverse conversions: :func:`mtf_to_midi`, :func:`abc_to_musicxml`.
Whole trees: :func:`convert_tree`. The converters (abctoolkit, mido) are imported on first use.
"""

from clamp3.preprocess.abc import abc_to_musicxml, interleave_abc, musicxml_to_abc
from clamp3.preprocess.bulk import ConvertSummary, convert_tree
from clamp3.preprocess.load import SYMBOLIC_EXTENSIONS, is_standard_abc, load_symbolic
from clamp3.preprocess.mtf import midi_to_mtf, mtf_to_midi
from clamp3.preprocess.patches import patchify, unpatchify

__all__ = [
    "SYMBOLIC_EXTENSIONS",
    "ConvertSummary",
    "abc_to_musicxml",
    "convert_tree",
    "interleave_abc",
    "is_standard_abc",
    "load_symbolic",
    "midi_to_mtf",
    "mtf_to_midi",
    "musicxml_to_abc",
    "patchify",
    "unpatchify",
]
