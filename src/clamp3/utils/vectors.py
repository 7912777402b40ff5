"""The one L2 normaliser of the package (embeddings, queries, class prototypes, metrics)."""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

# Norms are floored at 1e-12, the default of ``torch.nn.functional.normalize`` that the training
# loss uses, so numpy and torch normalise identically. Real embeddings have norms many orders
# above it (float32 spacing near 1 is ~1e-7); an all-zero row (a missing item) stays zero and
# scores 0 against everything instead of becoming NaN.
NORM_FLOOR = 1e-12


def l2_normalize(vectors: np.ndarray, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Scale ``vectors`` (..., D) to unit L2 norm along the last axis.

    Returns a C-contiguous array of the same shape in ``dtype`` (float32 by default; metrics
    pass float64), computed in that dtype. All-zero vectors stay zero.
    """
    array = np.asarray(vectors, dtype=dtype)
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, NORM_FLOOR))
