"""An offline audio front-end: log-mel statistics per 5-s window.

MERT-v1-95M weights cannot be fetched offline, so the mini model (and the tests) use this
front-end instead. It follows every official rule that is not MERT itself: 24 kHz mono, the
whole-track normalisation, the same windows (5 s, last one kept if >= 1 s), one row per window.
A row is the time mean and time standard deviation of ``feature_dim / 2`` log-mel bands,
``[means..., stds...]``. It has no weights; its rows are deterministic.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from clamp3.audio.base import WindowFrontend
from clamp3.audio.io import SAMPLE_RATE

N_FFT = 1024  # 42.7 ms at 24 kHz: bins 23.4 Hz apart
HOP = 240  # 10 ms
F_MIN = 30.0
LOG_FLOOR = 1e-6  # windows are unit-variance, so this is ~-60 dB below a full-scale band


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)  # HTK mel scale


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> torch.Tensor:
    """Triangular mel filters, float32 (n_fft // 2 + 1, n_mels), peaks of height 1.

    Edges are spaced evenly on the HTK mel scale from ``F_MIN`` to the Nyquist frequency.
    """
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(
        np.linspace(_hz_to_mel(np.float64(F_MIN)), _hz_to_mel(np.float64(sample_rate / 2)), n_mels + 2)
    )
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - lower) / (centre - lower)
    falling = (upper - freqs[:, None]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32))


class LogMelFrontend(WindowFrontend):
    """Log-mel statistics per window: float32 rows of ``feature_dim`` (even, >= 2) values."""

    num_layers = 1

    def __init__(self, feature_dim: int = 32, batch_size: int = 16):
        if feature_dim < 2 or feature_dim % 2:
            raise ValueError(f"LogMelFrontend needs an even feature_dim >= 2, got {feature_dim}")
        if feature_dim // 2 > 128:
            raise ValueError(f"at most 256 features (128 mel bands) with a {N_FFT}-point FFT")
        self.feature_dim = feature_dim
        self.batch_size = batch_size
        self.n_mels = feature_dim // 2

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) float32 normalised windows (L >= 1 s) -> (1, B, feature_dim) float32."""
        x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        with torch.inference_mode():
            spec = torch.stft(
                x, N_FFT, hop_length=HOP, window=torch.hann_window(N_FFT), center=False, return_complex=True
            )  # (B, n_fft // 2 + 1, frames)
            mel = torch.einsum("bft,fm->btm", spec.abs().square(), mel_filterbank(self.n_mels))
            logmel = torch.log(mel + LOG_FLOOR)
            rows = torch.cat([logmel.mean(dim=1), logmel.std(dim=1, correction=0)], dim=1)
        return rows[None].numpy()

    def __repr__(self) -> str:
        return f"LogMelFrontend(feature_dim={self.feature_dim}, frames every {HOP / SAMPLE_RATE * 1e3:g} ms)"
