"""MERT-v1-95M, the official audio front-end, exported beside the towers and run by ONNX Runtime.

MERT is a plain feed-forward network over the waveform (no masks: every window of a batch has
the same length), and onnxruntime reproduces it within 2e-6 of torch on the full-size
deterministic weights (measured: docs/onnx.md). Decoding and resampling stay the audio
package's (:mod:`clamp3.audio.io`); only the network runs here. The graph is always float32.
"""

from __future__ import annotations

import numpy as np

from clamp3.audio.base import WindowFrontend
from clamp3.onnx.session import TowerSession


class OnnxMertFrontend(WindowFrontend):
    """:class:`clamp3.audio.WindowFrontend` over an exported ``mert.onnx``."""

    num_layers = 13

    def __init__(self, session: TowerSession, feature_dim: int, batch_size: int = 1):
        self.session = session
        self.feature_dim = feature_dim
        self.batch_size = batch_size

    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) float32 normalised windows -> (13, B, 768) float32 rows."""
        return self.session.run_mert(np.ascontiguousarray(windows, dtype=np.float32))
