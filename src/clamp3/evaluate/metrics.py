"""Retrieval metrics as pure functions: similarity matrix + correct indices -> ranks -> MRR, Hit@k.

Shared by ``clamp3 eval``, the demo and the probe / zero-shot evaluators. No I/O here.

Ranks and ties
--------------
For a query with similarities ``s`` (one per reference) and correct reference ``c``, let

* ``greater`` = number of references with ``s[j] > s[c]`` (strictly),
* ``tied``    = number of *other* references with ``s[j] == s[c]`` (exact float64 equality).

``ties="expected"`` (default): ties are ordered uniformly at random, so the correct reference
lies at each position ``greater + 1 .. greater + tied + 1`` with probability ``1 / (tied + 1)``.
The metrics are expectations over that order (:func:`metrics_from_counts`):

* ``Hit@k = P(rank <= k) = clip((k - greater) / (tied + 1), 0, 1)``;
* ``MRR = E[1 / rank] = (H(greater + tied + 1) - H(greater)) / (tied + 1)``, ``H`` the harmonic
  numbers.

So a two-way tie at the top gives Hit@1 = 0.5 and a reciprocal rank of 0.75, what random
tie-breaking averages to. The per-query rank reported is the expected rank
``1 + greater + tied / 2`` (fractional, e.g. 1.5); thresholding it (``rank <= k``) would not give
the expected Hit@k, which is why the metrics are computed from the counts.

``ties="optimistic"``: ``rank = 1 + greater``, the official ``clamp3_eval.py`` behaviour (it sorts
by ``(similarity, is_correct)``, so the correct item wins every tie); ``MRR = mean(1 / rank)``,
``Hit@k = mean(rank <= k)``.

All metrics are averaged over queries. Without ties both modes agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clamp3.utils.vectors import l2_normalize

TIE_MODES = ("expected", "optimistic")
DEFAULT_KS = (1, 10, 100)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """(N, D) -> float64 (N, D) with unit L2 rows (:func:`clamp3.utils.vectors.l2_normalize`)."""
    return l2_normalize(np.atleast_2d(vectors), np.float64)


def cosine_similarity(queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Cosine similarity (Q, D) x (R, D) -> float64 (Q, R) in [-1, 1].

    Identical reference rows (after normalisation) get bit-identical columns: a matrix product
    may round equal rows differently depending on where they fall in the blocking, which would
    turn real ties (duplicate files) into arbitrary orders.
    """
    q = unit_rows(queries)
    unique, inverse = np.unique(unit_rows(references), axis=0, return_inverse=True)
    return (q @ unique.T)[:, inverse.reshape(-1)]


def rank_counts(similarity: np.ndarray, correct: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(greater, tied)`` int64 (Q,) for similarity (Q, R) and correct column per query (Q,).

    ``tied`` excludes the correct reference itself (definitions in the module docstring).
    Raises ``ValueError`` for a NaN similarity (a NaN embedding): it compares as neither greater
    nor equal, so it would score its query as a perfect hit.
    """
    sim = np.asarray(similarity)
    idx = np.asarray(correct, dtype=np.int64)
    if sim.ndim != 2 or idx.shape != (sim.shape[0],):
        raise ValueError(f"similarity must be (Q, R) and correct (Q,), got {sim.shape} and {idx.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= sim.shape[1]):
        raise ValueError("correct indices must lie in [0, R)")
    broken = np.flatnonzero(np.isnan(sim).any(axis=1))
    if len(broken):
        rows = ", ".join(map(str, broken[:5])) + (", ..." if len(broken) > 5 else "")
        raise ValueError(f"NaN similarity in {len(broken)} query row(s) ({rows}): a NaN embedding?")
    target = sim[np.arange(len(idx)), idx][:, None]
    greater = (sim > target).sum(axis=1).astype(np.int64)
    tied = (sim == target).sum(axis=1).astype(np.int64) - 1
    return greater, tied


def rank_counts_chunked(
    queries: np.ndarray, references: np.ndarray, correct: Sequence[int] | np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`rank_counts` of query vectors (Q, D) against reference vectors (R, D) by cosine,
    ``chunk`` queries at a time (memory bounded by chunk x R float64).

    Returns ``(greater, tied, score)``: int64 (Q,), int64 (Q,) and the cosine of each query
    with its correct reference, float64 (Q,).
    """
    idx = np.asarray(correct, dtype=np.int64)
    greater, tied, score = [], [], []
    for lo in range(0, len(idx), chunk):
        sim = cosine_similarity(queries[lo : lo + chunk], references)
        target = idx[lo : lo + chunk]
        g, t = rank_counts(sim, target)
        greater.append(g)
        tied.append(t)
        score.append(sim[np.arange(len(target)), target])
    if not greater:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), np.zeros(0)
    return np.concatenate(greater), np.concatenate(tied), np.concatenate(score)


def ranks_from_counts(greater: np.ndarray, tied: np.ndarray, ties: str = "expected") -> np.ndarray:
    """1-based ranks, float64 (Q,), from :func:`rank_counts` under the tie mode ``ties``."""
    if ties == "expected":
        return 1.0 + np.asarray(greater, np.float64) + np.asarray(tied, np.float64) / 2.0
    if ties == "optimistic":
        return 1.0 + np.asarray(greater, np.float64)
    raise ValueError(f"unknown tie mode {ties!r}; choose from {', '.join(TIE_MODES)}")


def ranks(similarity: np.ndarray, correct: Sequence[int] | np.ndarray, ties: str = "expected") -> np.ndarray:
    """1-based rank of each query's correct reference, float64 (Q,) (module docstring)."""
    return ranks_from_counts(*rank_counts(similarity, correct), ties=ties)


def retrieval_metrics(rank_values: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"mrr": ..., "hit@1": ..., "hit@10": ..., ...}`` from whole-number ranks (Q,), each in
    [0, 1]: ranks without ties, or optimistic ones. For the expected metrics under ties use
    :func:`metrics_from_counts` (a fractional expected rank does not determine them)."""
    r = np.asarray(rank_values, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no ranks to summarise")
    out = {"mrr": float(np.mean(1.0 / r))}
    out.update({f"hit@{k}": float(np.mean(r <= k)) for k in ks})
    return out


def expected_reciprocal_ranks(greater: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """E[1 / rank] per query, float64 (Q,), under uniform tie-breaking (module docstring)."""
    g = np.asarray(greater, np.int64)
    t = np.asarray(tied, np.int64)
    if g.size == 0:
        return np.zeros(0)
    top = int((g + t).max()) + 1
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, top + 1))])
    spread = (harmonic[g + t + 1] - harmonic[g]) / (t + 1)
    return np.where(t == 0, 1.0 / (g + 1), spread)  # exact when there is no tie


def expected_hits(greater: np.ndarray, tied: np.ndarray, k: int) -> np.ndarray:
    """P(rank <= k) per query, float64 (Q,), under uniform tie-breaking."""
    g = np.asarray(greater, np.float64)
    return np.clip((k - g) / (np.asarray(tied, np.float64) + 1.0), 0.0, 1.0)


def metrics_from_counts(
    greater: np.ndarray, tied: np.ndarray, ties: str = "expected", ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """``{"mrr", "hit@k" ...}`` in [0, 1] from :func:`rank_counts` under the tie mode ``ties``."""
    g = np.asarray(greater, np.int64)
    if g.size == 0:
        raise ValueError("no ranks to summarise")
    if ties == "optimistic":
        return retrieval_metrics(1.0 + g, ks)
    if ties != "expected":
        raise ValueError(f"unknown tie mode {ties!r}; choose from {', '.join(TIE_MODES)}")
    out = {"mrr": float(np.mean(expected_reciprocal_ranks(g, tied)))}
    out.update({f"hit@{k}": float(np.mean(expected_hits(g, tied, k))) for k in ks})
    return out


def hit_curve(rank_values: np.ndarray, max_k: int) -> np.ndarray:
    """Hit@k for k = 1 .. max_k from whole-number ranks, float64 (max_k,), non-decreasing."""
    r = np.sort(np.asarray(rank_values, dtype=np.float64))
    return np.searchsorted(r, np.arange(1, max_k + 1), side="right") / max(len(r), 1)


def hit_curve_from_counts(
    greater: np.ndarray, tied: np.ndarray, max_k: int, ties: str = "expected"
) -> np.ndarray:
    """Hit@k for k = 1 .. max_k, float64 (max_k,), under the tie mode ``ties``.

    Each query's expected hit rises by ``1 / (tied + 1)`` at every k from ``greater + 1`` to
    ``greater + tied + 1``; those steps are accumulated with a difference array, O(Q + max_k).
    """
    g = np.asarray(greater, np.int64)
    t = np.zeros_like(g) if ties == "optimistic" else np.asarray(tied, np.int64)
    steps = np.zeros(max_k + 2)
    np.add.at(steps, np.minimum(g + 1, max_k + 1), 1.0 / (t + 1))
    np.add.at(steps, np.minimum(g + t + 2, max_k + 1), -1.0 / (t + 1))
    return np.cumsum(np.cumsum(steps))[1 : max_k + 1] / max(len(g), 1)
