"""What an uploaded query holds: how long a recording is (before decoding it) and whether a
converted score or MIDI file has any notes.

Both checks exist because the model answers anything with a vector: an hour of audio would be
decoded and run through the audio front-end before any cap applied, and a file holding only a
header (an ABC ``X:1``, an MTF with one garbage line) would come back with confident-looking
results. Neither should reach the model.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from clamp3.serve.errors import TooLarge
from clamp3.utils.errors import InputError
from clamp3.utils.reasons import audio_decode_error

# One segment of the audio tower: 128 positions minus the two special rows, each row one 5-s
# window of the front-end. Longer recordings are embedded segment by segment, at a cost that
# grows with their length; a search query rarely needs more than ten minutes.
MAX_AUDIO_SECONDS = 126 * 5.0
_COUNT_BLOCK = 1 << 18  # frames per read while counting (~6 s at 44.1 kHz)

_ABC_FIELD = re.compile(r"^(?:[A-Za-z]:|%)")
# Inline fields ``[K:G]``, chord symbols and annotations ``"..."``, decorations ``!...!``/``+...+``:
# letters inside them are not notes.
_ABC_NOT_NOTES = re.compile(r'\[[A-Za-z]:[^\]]*\]|"[^"]*"|![^!]*!|\+[^+]*\+')
_ABC_NOTE = re.compile(r"[A-Ga-g]")


def check_audio_length(path: Path, max_seconds: float) -> float:
    """The duration of the recording at ``path`` in seconds, checked against ``max_seconds``.

    The header is read first (soundfile; for MP3 its frame count estimate over the sample
    rate), so an overlong file is refused without decoding it. A header can understate the
    length, so the frames are then counted by decoding, stopping as soon as the cap is passed
    (blocks are discarded: memory stays at one block). Raises ``TooLarge`` past the cap and
    ``InputError`` when the file cannot be read (libsndfile's reason quotes ``path``: callers
    showing it to a client replace the path, see ``encoder.py``).
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise audio_decode_error(path, exc) from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(path, "the file holds no audio samples")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise TooLarge(_too_long(f"{seconds:.0f} s long", max_seconds))
    limit, counted = int(max_seconds * info.samplerate), 0
    try:
        with sf.SoundFile(str(path)) as handle:
            while block := len(handle.read(_COUNT_BLOCK, dtype="float32", always_2d=True)):
                counted += block
                if counted > limit:
                    raise TooLarge(_too_long("longer than its header says", max_seconds))
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as exc:
        raise audio_decode_error(path, exc) from exc
    return counted / info.samplerate


def _too_long(what: str, max_seconds: float) -> str:
    return f"this recording is {what}; at most {max_seconds:.0f} s can be searched; upload an excerpt"


def has_notes(patches: np.ndarray) -> bool:
    """True when symbolic patches (n, 64) from ``load_symbolic`` hold at least one note.

    MTF (converted MIDI): a ``note_on`` message with a non-zero velocity. ABC: a note letter in
    a body line, outside inline fields, quoted text and decorations. Header patches alone
    (``X:1``, ``ticks_per_beat 480``, tempo or program changes) are not music.
    """
    from clamp3.preprocess import unpatchify

    text = unpatchify(patches)
    if text.startswith("ticks_per_beat"):
        messages = (m.split() for line in text.splitlines() for m in line.split("\t"))
        return any(len(m) >= 2 and m[0] == "note_on" and m[-1] != "0" for m in messages)
    for line in text.splitlines():
        if _ABC_FIELD.match(line):
            continue
        if _ABC_NOTE.search(_ABC_NOT_NOTES.sub("", line)):
            return True
    return False
