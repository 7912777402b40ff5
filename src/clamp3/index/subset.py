"""The filtered-search plan: a filter that keeps few rows is answered by scoring exactly those rows.

An engine's filtered search walks its structure and skips what fails the filter; when the filter
keeps few rows it walks far for little (Milvus IVF widens ``nprobe`` to every list, a graph
visits mostly rows it must skip), and a 1 %-selective query came out slower than an unfiltered
one. But the metadata table, held in memory, already says *which* rows pass, so when they are
few (``EXACT_SUBSET_ROWS``) their stored vectors are fetched once and every query against that
filter is a (Q, D) x (D, m) product over them: exact, and cheaper than the unfiltered search
because m is small. Larger subsets go to the engine's filtered search.

The fetched vectors are cached per filter text in a byte-bounded cache (oldest dropped first),
cleared whenever the index changes, so they never answer for stale rows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from clamp3.index.kinds import exact_top_k_scored

EXACT_SUBSET_ROWS = 20_000  # filters keeping at most this many rows are scored exactly (~60 MB at 768-d)
SUBSET_CACHE_BYTES = 256 << 20  # vectors of the subsets kept per index, all filters together


class SubsetVectors:
    """Filter text -> the unit vectors float32 (m, D) of its matching rows, at most
    ``budget`` bytes in all. Safe for concurrent readers: two threads missing the same filter
    both fetch it (equal values), and the last one stored wins."""

    def __init__(self, budget: int = SUBSET_CACHE_BYTES):
        self.budget = budget
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, text: str, fetch: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached vectors of filter ``text``, else ``fetch()`` (kept if they fit)."""
        with self._guard:
            found = self._cache.get(text)
            if found is not None:
                self._cache.move_to_end(text)
                return found
        vectors = np.ascontiguousarray(fetch(), dtype=np.float32)
        if vectors.nbytes <= self.budget:
            with self._guard:
                self._cache[text] = vectors
                while sum(v.nbytes for v in self._cache.values()) > self.budget:
                    self._cache.popitem(last=False)
        return vectors

    def clear(self) -> None:
        with self._guard:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)


def exact_subset_nearest(
    queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, fetch: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``fetch`` best of the subset for each query: (scores float32 (Q, fetch), index rows
    int64 (Q, fetch)), best first, equal scores by lower row; -inf / -1 past the subset's end.

    ``queries`` (Q, D) and ``vectors`` (m, D) are unit rows; ``rows`` (m,) ascending are the
    index rows of ``vectors``.
    """
    scores = np.full((len(queries), fetch), -np.inf, np.float32)
    found = np.full((len(queries), fetch), -1, np.int64)
    if not len(rows):
        return scores, found
    best, positions = exact_top_k_scored(queries, vectors, fetch)  # (Q, min(fetch, m))
    scores[:, : best.shape[1]] = best
    found[:, : best.shape[1]] = rows[positions]  # rows ascending: ties stay in row order
    return scores, found
