"""The FAISS back-ends behind :class:`~clamp3.index.SearchIndex`, and their tuning.

All kinds store L2-normalised vectors and score by inner product, so every score is a cosine
similarity in [-1, 1].

============  ===========================  =============================================
kind          FAISS index                  search-time knob (stored in ``meta.json``)
============  ===========================  =============================================
``flat``      ``IndexFlatIP``              none: exact
``hnsw``      ``IndexHNSWFlat`` (M=32)     ``efSearch``
``ivf``       ``IndexIVFFlat`` (inner      ``nprobe``
              product k-means quantiser)
============  ===========================  =============================================

The approximate knobs are not fixed constants: :func:`calibrate` measures recall@k against
exact search on probe queries drawn from the collection's own distribution and picks the
smallest setting that reaches the target. Recall depends strongly on
the data (uniform random vectors in 768 dimensions are a worst case, real embeddings cluster),
so a fixed default would be either slow on clustered data or inaccurate on spread-out data.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from clamp3.utils.extras import optional_module
from clamp3.utils.vectors import l2_normalize

log = logging.getLogger(__name__)

KINDS = ("flat", "hnsw", "ivf")
HNSW_M = 32  # links per node: the usual choice for 768-d vectors (memory ~ 2*M*4 bytes per row)
HNSW_EF_CONSTRUCTION = 80  # build-time beam; above ~80 the build slows more than recall grows
IVF_MIN_POINTS_PER_LIST = 39  # FAISS's k-means warns below 39 training points per centroid
IVF_KMEANS_ITERATIONS = 15
# Probes predicted fresh-query recall ~0.01 too high in tests (24-d, 600 rows): aim above target.
CALIBRATION_MARGIN = 0.02
SCAN_CHUNK = 16384  # rows per block in the exact scans (bounded memory at millions of rows)
# Settings tried by calibrate(), in increasing cost; geometric so a few trials cover the range.
GRID = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def import_faiss():
    return optional_module("faiss", "clamp3 indexes need FAISS (faiss-cpu)", "index")


def ivf_lists(n: int) -> int:
    """Number of IVF lists for ``n`` vectors: ~sqrt(n), with >= 39 training points per list."""
    return max(1, min(int(round(math.sqrt(n))), n // IVF_MIN_POINTS_PER_LIST))


def new_index(kind: str, dim: int, train_vectors: np.ndarray | None = None) -> Any:
    """An empty FAISS index of ``kind`` for ``dim``-d unit vectors (inner product).

    ``ivf`` needs ``train_vectors`` (float32 (N, dim), normalised) to learn its lists; its list
    count is fixed here, so vectors appended later share the centroids learnt now.
    """
    faiss = import_faiss()
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        return index
    if kind == "ivf":
        if train_vectors is None or len(train_vectors) == 0:
            raise ValueError("an ivf index needs training vectors")
        # The factory string gives an index that owns its quantiser (safe to write and read).
        index = faiss.index_factory(
            dim, f"IVF{ivf_lists(len(train_vectors))},Flat", faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = IVF_KMEANS_ITERATIONS
        # ivf_lists keeps 39 points per list whenever it can; below 39 vectors FAISS would print
        # its own C++ warning about it to the terminal (one list is exact anyway).
        index.cp.min_points_per_centroid = min(IVF_MIN_POINTS_PER_LIST, len(train_vectors))
        index.train(np.ascontiguousarray(train_vectors, dtype=np.float32))
        # Keeps row -> list position so stored vectors can be read back (recalibration on append).
        index.make_direct_map()
        return index
    raise ValueError(f"unknown index kind {kind!r}; choose from {', '.join(KINDS)}")


def search_parameters(
    kind: str, knob: int | None, selector: Any = None, fraction: float = 1.0, k: int = 10
) -> Any:
    """Per-call FAISS search parameters (no shared state is changed, so searches may overlap).

    ``selector`` restricts results to some rows (a modality filter); ``fraction`` is the share of
    rows it keeps. The approximate knob is widened by 1/fraction so a rare modality still gets
    about as many candidates as an unfiltered search would. HNSW's beam is at least ``k`` wide.
    """
    faiss = import_faiss()
    widen = 1.0 / max(fraction, 1e-6)
    if kind == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = int(min(max(knob or 64, k) * widen, 1 << 20))
    elif kind == "ivf":
        params = faiss.SearchParametersIVF()
        params.nprobe = int(min(max(knob or 1, 1) * widen, 1 << 20))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def knob_limit(kind: str, index: Any) -> int:
    """The setting beyond which a kind cannot get more accurate (IVF: all lists probed)."""
    return int(index.nlist) if kind == "ivf" else GRID[-1]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true top-k rows (Q, k) present in the found rows (Q, k')."""
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth)]
    return float(np.sum(hits) / truth.size)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Rows (Q, k) int64 of the ``k`` largest inner products of each query with ``vectors``
    (N, D) (a memory map is fine: read in chunks), best first, equal scores by lower row."""
    return exact_top_k_scored(queries, vectors, k)[1]


def exact_top_k_scored(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`exact_top_k` with its scores: (float32 (Q, k'), int64 rows (Q, k')), k' = min(k, N)."""
    k = min(k, len(vectors))
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(vectors), SCAN_CHUNK):
        sims = queries @ np.asarray(vectors[start : start + SCAN_CHUNK], dtype=np.float32).T
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        best_scores = np.hstack([best_scores, np.take_along_axis(sims, part, axis=1)])
        best_rows = np.hstack([best_rows, part + start])
        order = np.lexsort((best_rows, -best_scores), axis=1)[:, :k]
        best_scores = np.take_along_axis(best_scores, order, axis=1)
        best_rows = np.take_along_axis(best_rows, order, axis=1)
    return best_scores, best_rows


def probe_queries(vectors: np.ndarray, n_queries: int, seed: int = 0) -> np.ndarray:
    """Fresh-looking queries from the collection's own distribution, float32 (Q, D) unit rows.

    A stored row used as its own query is too easy for a graph index (the search lands on the
    row's node, whose links are its neighbours). Each probe is instead a sampled row turned by a
    random orthogonal direction until its cosine to the row equals the row's cosine to its
    nearest neighbour: the row is then an ordinary neighbour of the probe, not a twin of it.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(vectors), size=min(n_queries, len(vectors)), replace=False)
    base = vectors[rows].astype(np.float64)
    best = np.full(len(rows), -np.inf)
    for start in range(0, len(vectors), SCAN_CHUNK):  # chunks: never an (N, D) float64 copy
        sims = base @ np.asarray(vectors[start : start + SCAN_CHUNK], dtype=np.float64).T
        mine = (rows >= start) & (rows < start + len(sims.T))
        sims[np.flatnonzero(mine), rows[mine] - start] = -np.inf
        best = np.maximum(best, sims.max(axis=1))
    nearest = np.clip(best[:, None], -1.0, 1.0)
    noise = rng.standard_normal(base.shape)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise = l2_normalize(noise, np.float64)
    probes = nearest * base + np.sqrt(1.0 - nearest**2) * noise
    return np.ascontiguousarray(probes, dtype=np.float32)


def calibrate(
    kind: str,
    index: Any,
    vectors: np.ndarray,
    *,
    target: float = 0.95,
    k: int = 10,
    n_queries: int = 256,
    seed: int = 0,
) -> tuple[int | None, float]:
    """Smallest knob (efSearch / nprobe) whose recall@k on :func:`probe_queries` reaches ``target``.

    ``vectors`` (N, D) float32 normalised are the rows of ``index`` in order; the true top-k
    comes from numpy. The calibration aims ``CALIBRATION_MARGIN`` above ``target`` so that real queries, which
    the probes only estimate, still reach it. Returns ``(knob, measured recall)``; ``flat`` and
    collections of at most k rows return ``(None, 1.0)``.
    """
    if kind == "flat" or len(vectors) <= k:
        return None, 1.0
    queries = probe_queries(vectors, n_queries, seed)
    truth = exact_top_k(queries, vectors, k)
    limit = knob_limit(kind, index)
    recall = 0.0
    for knob in [g for g in GRID if g < limit] + [limit]:
        _, found = index.search(queries, k, params=search_parameters(kind, knob, k=k))
        recall = recall_at_k(found, truth)
        if recall >= min(1.0, target + CALIBRATION_MARGIN):
            return knob, recall
    return limit, recall


def report_calibration(
    kind: str, count: int, name: str, knob: int | None, recall: float, calibration: dict, index: Any
) -> None:
    """Log the outcome of :func:`calibrate` (a warning when it misses its target)."""
    if knob is None:  # at most k rows: every search returns them all
        log.info("%s index of %d rows: exact at any %s (recall@10 %.3f)", kind, count, name, recall)
    else:
        log.info("calibrated %s index of %d rows: %s=%s (recall@10 %.3f)", kind, count, name, knob, recall)
    if recall < calibration["target_recall@10"]:
        log.warning("%s index: recall@10 %.3f stays below the target at %s=%s", kind, recall, name, knob)
    if knob is not None and index is not None and knob >= knob_limit(kind, index):
        # Typical of spread-out data (e.g. uniform random vectors): no cluster structure to exploit.
        log.warning(
            "%s index needs %s=%s for its recall target: no faster than exact search here", kind, name, knob
        )
