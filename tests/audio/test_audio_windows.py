"""Official windowing rules and the input checks that replace the official silent failures."""

from __future__ import annotations

import numpy as np
import pytest

from clamp3.audio.windows import MIN_WINDOW_SAMPLES, WINDOW_SAMPLES, prepare_track, window_bounds
from clamp3.utils.errors import InputError


@pytest.mark.parametrize(
    ("n", "lengths"),
    [
        (24000, [24000]),  # exactly 1 s: kept
        (120000, [120000]),
        (143999, [120000]),  # remainder of 23,999 samples: dropped
        (144000, [120000, 24000]),  # remainder of exactly 1 s: kept
        (295200, [120000, 120000, 55200]),
        (360000, [120000, 120000, 120000]),
    ],
)
def test_window_bounds(n, lengths):
    bounds = window_bounds(n)
    assert [b - a for a, b in bounds] == lengths
    assert all(a == i * WINDOW_SAMPLES for i, (a, _) in enumerate(bounds))


def test_normalisation_is_whole_track_population_variance():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(250_000) * 0.2 + 0.05).astype(np.float32)
    track = prepare_track(wave[None])  # (1, n) is accepted like (n,)
    whole = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    joined = np.concatenate([track.window(i) for i in range(len(track.bounds))])
    np.testing.assert_allclose(joined, whole[: len(joined)], rtol=1e-6, atol=1e-6)
    assert len(joined) == 240_000  # 10,000-sample remainder dropped


@pytest.mark.parametrize(
    ("wave", "reason"),
    [
        (np.ones(MIN_WINDOW_SAMPLES - 1, np.float32), "too short: 0.99 s"),
        (np.linspace(0, 1, 150, dtype=np.float32), "too short: 6 ms at 24 kHz"),  # it read "0.00 s"
        (np.zeros(48000, np.float32), "silent"),
        (np.full(48000, 0.3, np.float32), "silent"),  # a constant offset has no variance either
        (np.array([0.1, np.inf] * 24000, np.float32), "NaN or infinite"),
        (np.zeros((2, 48000), np.float32), "mono waveform"),
    ],
)
def test_bad_waveforms_raise_input_error(wave, reason):
    with pytest.raises(InputError, match=reason) as err:
        prepare_track(wave, name="clip.wav")
    assert str(err.value).startswith("clip.wav: ")


def test_quiet_but_real_audio_is_accepted():
    wave = (np.random.default_rng(1).standard_normal(30000) * 1e-4).astype(np.float32)  # -80 dBFS
    track = prepare_track(wave)
    # The official 1e-7 in the denominator dominates at this level: std = sqrt(var / (var + 1e-7)).
    expected = np.sqrt(wave.var(dtype=np.float64) / (wave.var(dtype=np.float64) + 1e-7))
    assert abs(float(np.std(track.window(0))) - expected) < 1e-3
