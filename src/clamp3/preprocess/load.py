"""One entry point from a symbolic music file to the patches the model reads."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from clamp3.inputs import extensions, read_input_text
from clamp3.preprocess.abc import MUSICXML_EXTENSIONS, count_tunes, interleave_abc, musicxml_to_abc
from clamp3.preprocess.mtf import MIDI_EXTENSIONS, midi_to_mtf
from clamp3.preprocess.patches import patchify
from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    import numpy as np

    from clamp3.config import SymbolicTowerConfig

SYMBOLIC_EXTENSIONS = extensions("symbolic")
log = logging.getLogger(__name__)


def load_symbolic(path: str | os.PathLike, config: SymbolicTowerConfig | None = None) -> np.ndarray:
    """A symbolic music file -> int32 patches (n, 64) with BOS/EOS, for the symbolic tower.

    By extension (case-insensitive):

    - ``.xml .musicxml .mxl``: MusicXML -> standard ABC -> interleaved ABC -> patches;
    - ``.abc``: read as text; standard ABC as ``xml2abc`` writes it (a tune body starting with
      a line ``V:1`` and no ``[V:`` lines) is interleaved first, because the model was trained
      on interleaved ABC only; any other ABC (already interleaved, or hand-written) is
      patched as given, which is what the official extractor does with every ``.abc``;
    - ``.mid .midi``: MIDI -> MTF -> patches;
    - ``.mtf``: read as text -> patches.

    ``config`` (default: CLaMP 3's) selects the CLaMP 2 variants through
    ``strip_default_length`` and ``mtf_drop_sysex``. Raises ``InputError`` naming the file and
    the reason (unsupported extension, unreadable or empty file, failed conversion).
    """
    path = Path(path)
    strip = True if config is None else config.strip_default_length
    drop_sysex = False if config is None else config.mtf_drop_sysex
    ext = path.suffix.lower()
    if ext in MUSICXML_EXTENSIONS:
        text = interleave_abc(musicxml_to_abc(path), name=str(path))
    elif ext in MIDI_EXTENSIONS:
        text = midi_to_mtf(path, drop_sysex=drop_sysex)
    elif ext == ".abc":
        text = read_input_text(path)
        tunes = count_tunes(text)
        if tunes > 1:  # the official extractor embeds the file as given: say so, once per file
            log.warning(
                "%s: holds %d tunes (X: fields); they are embedded as one item, as the official "
                "extractor does; split the file (one tune per file) to find each tune", path, tunes
            )
        if is_standard_abc(text):
            text = interleave_abc(text, name=str(path))
    elif ext == ".mtf":
        text = read_input_text(path)
    else:
        raise InputError(
            path, f"unsupported extension {ext!r} (expected one of {', '.join(SYMBOLIC_EXTENSIONS)})"
        )
    try:
        return patchify(text, strip_default_length=strip)
    except ValueError as exc:
        raise InputError(path, str(exc)) from exc


def is_standard_abc(text: str) -> bool:
    """True for non-interleaved ABC as ``xml2abc`` writes it: a body line exactly ``V:1`` and
    no inline ``[V:`` voice lines."""
    lines = [line.strip() for line in text.splitlines()]
    return "V:1" in lines and not any(line.startswith("[V:") for line in lines)
