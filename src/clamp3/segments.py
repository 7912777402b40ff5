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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


def embed_segmented(
    items: Sequence[Any],
    length: int,
    pooled: bool,
    run: Callable[[list[Any]], list[np.ndarray]],
) -> list[np.ndarray]:
    """The one segmentation / pooling loop of every backend (torch, ONNX).

    ``items`` are sliceable along their first axis (tensors or arrays of ``n_i >= 1`` rows);
    each is cut by :func:`segment_item` into pieces of at most ``length`` rows, and ``run`` is
    called once with all pieces of all items (item order, segment order) and must return one
    output per piece: its (D,) vector when ``pooled``, else its (piece length, H) rows. Returns
    per item the (D,) float32 length-weighted mean (:func:`pool_segments`) or the (n_i, H)
    rows (:func:`join_unpooled`). ``run`` is not called when ``items`` is empty.
    """
    plans = [segment_item(len(item), length) for item in items]
    pieces = [item[s.start : s.end] for item, plan in zip(items, plans) for s in plan]
    outputs = run(pieces) if pieces else []
    results, cursor = [], 0
    for plan in plans:
        chunk = outputs[cursor : cursor + len(plan)]
        cursor += len(plan)
        results.append(pool_segments(np.stack(chunk), plan) if pooled else join_unpooled(chunk, plan))
    return results
