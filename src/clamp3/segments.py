"""The official segmentation and length-weighted pooling, as pure functions.

An item of ``n`` elements (text tokens, patches or audio rows, special ones included) is cut
into segments of length ``L``: ``[0, L), [L, 2L), ...``; the last segment is then replaced by
the last ``L`` elements, ``[max(n - L, 0), n)``, so it overlaps the previous one when ``n`` is
not a multiple of ``L``. The global vector is the mean of the per-segment vectors weighted by
``L`` for each full segment and by ``n % L`` for the last (every weight is ``L`` when
``n % L == 0``). The unpooled output keeps every row of the full segments and only the last
``n % L`` rows of the last one, so it has exactly ``n`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One window of an item: elements ``[start, end)``, its pooling weight, and ``keep``, the
    number of trailing rows it contributes to the unpooled output."""

    start: int
    end: int
    weight: int
    keep: int

    @property
    def length(self) -> int:
        return self.end - self.start


def segment_item(n: int, length: int) -> list[Segment]:
    """Segments of an item with ``n >= 1`` elements for segment length ``length``."""
    if n < 1:
        raise ValueError("an item needs at least one element")
    if length < 1:
        raise ValueError("segment length must be positive")
    starts = list(range(0, n, length))
    remainder = n % length
    segments = []
    for i, start in enumerate(starts):
        if i < len(starts) - 1:
            segments.append(Segment(start, start + length, length, length))
        else:
            last = remainder if remainder else length
            segments.append(Segment(max(n - length, 0), n, last, min(last, n)))
    return segments


def pool_segments(vectors: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """Weighted mean of per-segment vectors (S, D) -> (D,), weights from ``segment_item``."""
    weights = np.asarray([s.weight for s in segments], dtype=np.float64)
    pooled = (vectors.astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
    return pooled.astype(np.float32)


def join_unpooled(hidden: list[np.ndarray], segments: list[Segment]) -> np.ndarray:
    """Concatenate per-segment hidden states (each (segment length, H)) into (n, H)."""
    return np.concatenate([h[len(h) - s.keep :] for h, s in zip(hidden, segments)], axis=0)
