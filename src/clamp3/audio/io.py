"""Decode audio files to the mono 24 kHz float32 waveform the official extractor starts from.

Official behaviour matched (``preprocessing/audio/extract_mert.py``): decode to float32 in
[-1, 1] (16-bit PCM becomes ``int16 / 32768``), average the channels, resample to 24 kHz with
torchaudio's default ``Resample`` (:mod:`clamp3.audio.resample`). No peak normalisation.

Decoding uses soundfile (libsndfile >= 1.1 reads WAV, FLAC, Ogg Vorbis/Opus and MP3). The file is
read in blocks that are mixed down and resampled as they arrive, so a one-hour stereo 44.1 kHz
file never exists in memory at its original rate: only the 24 kHz mono result (about 5.8 MB per
minute) is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clamp3.audio.resample import StreamingResampler, output_length
from clamp3.inputs import extensions, not_a_file
from clamp3.utils.errors import InputError
from clamp3.utils.extras import optional_module
from clamp3.utils.reasons import audio_decode_error

SAMPLE_RATE = 24000
AUDIO_EXTENSIONS = extensions(kinds=("recording",))  # the recordings of the input table
_BLOCK_FRAMES = 1 << 18  # ~6 s at 44.1 kHz per decode step


def is_audio_file(path: str | os.PathLike) -> bool:
    """True for the extensions :func:`load_audio` accepts (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _soundfile():
    return optional_module("soundfile", "audio decoding needs soundfile", "audio")


class _Growable:
    """A float32 buffer filled in order; starts at the expected size and grows if it must."""

    def __init__(self, capacity: int):
        self.data = np.empty(max(capacity, 0), dtype=np.float32)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            grown = np.empty(max(end, 2 * len(self.data)), dtype=np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : end] = values
        self.size = end

    def result(self) -> np.ndarray:
        return self.data if self.size == len(self.data) else self.data[: self.size].copy()


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` (wav, flac, ogg, mp3) to a mono float32 waveform at ``sample_rate`` Hz.

    Returns float32 (n_samples,): the channel mean, resampled, not normalised. Raises
    :class:`InputError` naming the file for a missing, unsupported, unreadable or empty file,
    one holding NaN/infinite samples, and a truncated file: a WAV whose sample data ends before
    its header says (:func:`wav_shortfall`), an MP3 or FLAC whose decoder finds fewer frames than
    announced. A truncated OGG decodes to the samples it still holds (its header gives no length).
    """
    path = Path(path)
    if not is_audio_file(path):
        raise InputError(
            path,
            f"unsupported audio format {path.suffix or '(no extension)'!r} "
            f"(supported: {', '.join(AUDIO_EXTENSIONS)})",
        )
    if not path.is_file():
        raise not_a_file(path)
    shortfall = wav_shortfall(path) if path.suffix.lower() == ".wav" else None
    if shortfall is not None:  # libsndfile would read what is left without a word
        declared, present = shortfall
        raise InputError(
            path, f"truncated: the header announces {declared} bytes of samples, the file holds {present}"
        )
    sf = _soundfile()
    try:
        with sf.SoundFile(str(path)) as handle:
            wave, decoded = _decode(handle, sample_rate)
            declared = handle.frames
    except (sf.SoundFileError, RuntimeError, ValueError, EOFError) as exc:
        raise audio_decode_error(path, exc) from exc
    if decoded == 0:
        raise InputError(path, "the file holds no audio samples")
    # Compressed streams that end early decode without an error; the header still says how long
    # the stream should be. A small shortfall is tolerated (MP3 length estimates are inexact).
    if declared > 0 and decoded < 0.99 * declared:
        raise InputError(path, f"truncated or corrupt: {decoded} of {declared} frames could be decoded")
    if not np.isfinite(wave).all():
        raise InputError(path, "the audio holds NaN or infinite samples")
    return wave


def wav_shortfall(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(declared, present)`` bytes of a RIFF WAV's ``data`` chunk when the file ends more than
    1 % short of what its header declares (a copy or download cut off), else ``None``.

    Only the chunk headers are read. ``None`` as well for what is not a plain RIFF WAV (RF64,
    an unreadable header: the decoder judges those) and for the size placeholders that
    streaming writers leave (0 and 0xFFFFFFFF).
    """
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        size = os.fstat(handle.fileno()).st_size
        offset = 12
        while offset + 8 <= size:
            handle.seek(offset)
            chunk = handle.read(8)
            name, length = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                present = size - offset - 8
                if length in (0, 0xFFFFFFFF) or present >= 0.99 * length:
                    return None
                return length, present
            offset += 8 + length + (length & 1)  # chunks are padded to an even length
    return None


def _mix_down(block: np.ndarray) -> np.ndarray:
    """(frames, channels) float32 -> (frames,) channel mean, summed channel by channel (a
    reduction over the short axis with ``mean(axis=1)`` is several times slower)."""
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    if block.shape[1] > 1:
        mono /= np.float32(block.shape[1])
    return mono


def _decode(handle, sample_rate: int) -> tuple[np.ndarray, int]:
    """Stream-decode an open soundfile handle -> (mono resampled float32 wave, frames decoded)."""
    resampler = StreamingResampler(handle.samplerate, sample_rate)
    expected = output_length(max(handle.frames, 0), handle.samplerate, sample_rate)
    out = _Growable(expected)
    decoded = 0
    while True:
        block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
        if len(block) == 0:
            break
        decoded += len(block)
        # Channel mean first, then resampling: the order the official loader uses.
        out.extend(resampler.push(_mix_down(block)))
    out.extend(resampler.finish())
    return out.result(), decoded
