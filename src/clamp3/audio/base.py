"""The interface every audio front-end shares: waveform or file in, one row per 5-s window out.

A front-end implements one method, :meth:`WindowFrontend.encode_windows` (a batch of normalised
windows of equal length -> per-layer rows). Everything else is shared: validation, whole-track
normalisation and windowing (:mod:`clamp3.audio.windows`), batching of equal-length windows,
bulk extraction over many files with bounded memory.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from clamp3.audio.batching import WindowBatcher
from clamp3.audio.io import SAMPLE_RATE, load_audio
from clamp3.audio.windows import prepare_track
from clamp3.utils.errors import InputError


@dataclass
class FileFeatures:
    """Result for one file of a bulk run: ``features`` float32 (n_windows, D), or ``error``."""

    path: str
    features: np.ndarray | None
    error: InputError | None = None


class WindowFrontend(ABC):
    """Audio front-end producing ``feature_dim`` values per official 5-s window at 24 kHz.

    Subclasses set ``feature_dim`` (D), ``num_layers`` (K, the per-layer rows averaged into one
    row) and ``batch_size`` (windows per forward pass), and implement :meth:`encode_windows`.
    """

    sample_rate: int = SAMPLE_RATE
    feature_dim: int
    num_layers: int
    batch_size: int

    @abstractmethod
    def encode_windows(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) float32 normalised windows, all of length L -> (K, B, D) float32 rows."""

    def to(self, device: str | torch.device) -> WindowFrontend:
        """Run on ``device`` from now on; returns ``self``. Front-ends without weights (log-mel)
        compute on the CPU and ignore it."""
        return self

    # ----------------------------------------------------------------------------- one track
    def layer_features_from_waveform(self, wave_24k: np.ndarray, name: str = "<waveform>") -> np.ndarray:
        """Per-layer rows of a mono 24 kHz waveform (not normalised): float32 (K, n_windows, D).

        For MERT, K = 13: the time mean of each hidden state, before the layer mean.
        """
        track = prepare_track(wave_24k, name)
        batcher = WindowBatcher(self.encode_windows, self.batch_size)
        batcher.add(0, track)
        batcher.flush()
        return batcher.pop(0)

    def features_from_waveform(self, wave_24k: np.ndarray, name: str = "<waveform>") -> np.ndarray:
        """One row per window of a mono 24 kHz waveform (not normalised): float32 (n_windows, D).

        Raises :class:`InputError` for audio under 1 s, silence or non-finite samples.
        """
        return self.layer_features_from_waveform(wave_24k, name).mean(axis=0)

    def features_from_file(self, path: str | os.PathLike) -> np.ndarray:
        """Decode, resample and encode one file: float32 (n_windows, D)."""
        return self.features_from_waveform(load_audio(path, self.sample_rate), name=str(path))

    # ----------------------------------------------------------------------------- many files
    def features_from_files(
        self, paths: Iterable[str | os.PathLike], show_progress: bool = False
    ) -> Iterator[FileFeatures]:
        """Encode many files with windows of different files batched together.

        Yields one :class:`FileFeatures` per path, in input order; a bad file yields its
        :class:`InputError` and the run goes on. Memory holds one decoded file, at most
        ``2 * batch_size`` waiting windows and the (small) rows of files not yet yielded.
        """
        from tqdm.auto import tqdm

        paths = [str(p) for p in paths]
        batcher = WindowBatcher(self.encode_windows, self.batch_size)
        errors: dict[int, InputError] = {}
        bar = tqdm(total=len(paths), unit="file", desc="audio features", disable=not show_progress)
        ready = 0

        def finished(upto: int) -> Iterator[FileFeatures]:
            nonlocal ready
            while ready < upto and (ready in errors or batcher.done(ready)):
                if ready in errors:
                    yield FileFeatures(paths[ready], None, errors.pop(ready))
                else:
                    yield FileFeatures(paths[ready], batcher.pop(ready).mean(axis=0))
                ready += 1
                bar.update()

        try:
            for key, path in enumerate(paths):
                try:
                    batcher.add(key, prepare_track(load_audio(path, self.sample_rate), path))
                except InputError as exc:
                    errors[key] = exc
                yield from finished(key + 1)
            batcher.flush()
            yield from finished(len(paths))
        finally:
            bar.close()
