"""The torchaudio-equivalent resampler: against a direct evaluation of the windowed-sinc
formula, streaming == one-shot, output lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from clamp3.audio.resample import StreamingResampler, output_length, resample


def _direct(x: np.ndarray, orig_sr: int, new_sr: int, width: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """Each output sample j as sum_i x[i] * h(i/orig - j/new), in float64, from the definition."""
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    base = min(orig, new) * rolloff
    n_out = math.ceil(new * len(x) / orig)
    i = np.arange(len(x), dtype=np.float64)
    out = np.empty(n_out)
    for j in range(n_out):
        t = np.clip((i / orig - j / new) * base, -width, width)
        h = np.sinc(t) * np.cos(np.pi * t / width / 2) ** 2 * base / orig
        out[j] = np.dot(h, x.astype(np.float64))
    return out


@pytest.mark.parametrize(
    ("orig", "new"), [(44100, 24000), (16000, 24000), (48000, 24000), (22050, 24000), (8000, 24000)]
)
def test_resample_equals_direct_formula(orig, new):
    x = np.random.default_rng(orig).standard_normal(701).astype(np.float32) * 0.3
    y = resample(x, orig, new)
    assert y.dtype == np.float32 and len(y) == output_length(701, orig, new) == math.ceil(701 * new / orig)
    np.testing.assert_allclose(y, _direct(x, orig, new), rtol=0, atol=2e-6)


def test_equal_rates_return_input_unchanged():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(resample(x, 24000, 24000), x)


@pytest.mark.parametrize(
    ("orig", "block"), [(44100, 13), (44100, 997), (16000, 50_000), (96000, 4096), (24000, 333)]
)
def test_streaming_equals_one_shot(orig, block):
    x = np.random.default_rng(1).standard_normal(30_011).astype(np.float32)
    stream = StreamingResampler(orig, 24000)
    parts = [stream.push(x[i : i + block]) for i in range(0, len(x), block)] + [stream.finish()]
    y = np.concatenate(parts)
    one_shot = resample(x, orig, 24000)
    assert y.shape == one_shot.shape
    np.testing.assert_allclose(y, one_shot, rtol=0, atol=1e-6)


def test_streaming_handles_input_shorter_than_the_filter():
    x = np.ones(5, dtype=np.float32)
    stream = StreamingResampler(44100, 24000)
    y = np.concatenate([stream.push(x), stream.finish()])
    np.testing.assert_allclose(y, resample(x, 44100, 24000), atol=1e-7)


def test_resample_rejects_multichannel_and_bad_rates():
    with pytest.raises(ValueError, match="mono"):
        resample(np.zeros((2, 10), np.float32), 44100, 24000)
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10, np.float32), 0, 24000)
