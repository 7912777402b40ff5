"""Whole-track normalisation and 5-second windowing, shared by every audio front-end.

Official behaviour (``extract_mert.py`` with its ``Wav2Vec2FeatureExtractor(do_normalize=True)``):
the whole 24 kHz track is normalised as ``(x - mean) / sqrt(var + 1e-7)`` with the population
variance in float32, then cut into consecutive non-overlapping windows of 120,000 samples; the
last window keeps its shorter length when it has at least 24,000 samples (1 s) and is dropped
otherwise. Where the official code silently produces nothing (track under 1 s) or divides by
almost zero (digital silence) this module raises :class:`InputError` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clamp3.audio.io import SAMPLE_RATE
from clamp3.utils.errors import InputError

WINDOW_SAMPLES = 5 * SAMPLE_RATE  # 120,000 samples = 5 s
MIN_WINDOW_SAMPLES = SAMPLE_RATE  # a last window under 1 s is dropped
NORM_EPS = 1e-7
# Below this variance (RMS 1e-5, under one 16-bit step of 3e-5) a track is digital silence (or a
# constant offset): normalising it would blow rounding noise up to unit variance.
SILENCE_VARIANCE = 1e-10


@dataclass(frozen=True)
class Track:
    """A validated 24 kHz waveform with its normalisation constants and window bounds.

    ``mean`` and ``std`` are float32 scalars; ``bounds`` lists ``(start, stop)`` sample indices.
    """

    wave: np.ndarray
    mean: np.float32
    std: np.float32
    bounds: tuple[tuple[int, int], ...]

    def window(self, index: int) -> np.ndarray:
        """Normalised window ``index``: float32 (stop - start,), a new array."""
        start, stop = self.bounds[index]
        return (self.wave[start:stop] - self.mean) / self.std


def window_bounds(n_samples: int) -> list[tuple[int, int]]:
    """Official 5-s windows of an ``n_samples`` track: full windows, then the remainder if >= 1 s."""
    bounds = [(a, min(a + WINDOW_SAMPLES, n_samples)) for a in range(0, n_samples, WINDOW_SAMPLES)]
    if bounds and bounds[-1][1] - bounds[-1][0] < MIN_WINDOW_SAMPLES:
        bounds.pop()
    return bounds


def prepare_track(wave: np.ndarray, name: str = "<waveform>") -> Track:
    """Validate a mono 24 kHz float32 waveform, (n,) or (1, n), and compute its windows.

    Raises :class:`InputError` (naming ``name``) for a wrong shape, non-finite samples, a track
    shorter than one second, or silence.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.ndim != 1:
        raise InputError(name, f"expected a mono waveform (n_samples,), got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise InputError(name, "the audio holds NaN or infinite samples")
    if len(wave) < MIN_WINDOW_SAMPLES:
        seconds = np.floor(len(wave) / SAMPLE_RATE * 100) / 100  # down: 0.999 s must not read "1.00 s"
        # A click of a few milliseconds read "0.00 s".
        length = f"{seconds:.2f} s" if seconds >= 0.1 else f"{len(wave) * 1000 // SAMPLE_RATE} ms"
        raise InputError(
            name,
            f"audio too short: {length} at 24 kHz; at least 1 s is needed "
            "(the official extractor silently drops such files)",
        )
    mean = wave.mean(dtype=np.float32)
    var = wave.var(dtype=np.float32)
    if var < SILENCE_VARIANCE:
        raise InputError(name, f"audio is silent (variance {float(var):.3g}); nothing to normalise")
    # sqrt in float64 then float32: what numpy 1.x (the official environment) does for
    # np.sqrt(float32 scalar + 1e-7).
    std = np.float32(np.sqrt(np.float64(var) + NORM_EPS))
    return Track(wave=wave, mean=mean, std=std, bounds=tuple(window_bounds(len(wave))))
