"""Score and evaluate one embedding folder against another (``clamp3 score`` / ``clamp3 eval``).

Files are matched as the official ``clamp3_score.py`` / ``clamp3_eval.py`` do: the **match key**
of an embedding is its relative folder plus its file name up to the first dot, so
``q/pop/song.en.npy`` and ``q/pop/song.fr.npy`` both match ``r/pop/song.npy`` (several queries
may share one reference), while ``r/jazz/song.npy`` is a different key. Two references with
one match key are ambiguous and refused. Similarities are cosines of the stored vectors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clamp3.evaluate import metrics
from clamp3.index.embeddings import EmbeddingSet, load_embeddings
from clamp3.model_identity import require_same_model
from clamp3.utils.errors import InputError

QUERY_CHUNK = 1024  # queries per similarity block: bounds memory at QUERY_CHUNK x R float64


def match_key(key: str) -> str:
    """``"pop/song.en"`` -> ``"pop/song"``: folder kept, file name cut at its first dot."""
    folder, _, name = key.rpartition("/")
    stem = name.split(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


def _list(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" ... and {len(items) - limit} more" if len(items) > limit else "")


def reference_rows(references: EmbeddingSet) -> dict[str, int]:
    """Match key -> row of ``references``; raises ``InputError`` if two files share a key."""
    rows: dict[str, int] = {}
    clashes = []
    for row, key in enumerate(references.keys):
        mk = match_key(key)
        if mk in rows:
            clashes.append(f"{references.npys[rows[mk]]} / {references.npys[row]}")
        rows[mk] = row
    if clashes:
        raise InputError(references.root, f"several reference files share a match key: {_list(clashes)}")
    return rows


@dataclass
class Matching:
    """Query row -> reference row for every matched query, and the files left unmatched."""

    query_rows: np.ndarray
    reference_rows: np.ndarray
    unmatched_queries: list[str] = field(default_factory=list)
    unmatched_references: list[str] = field(default_factory=list)


def match(queries: EmbeddingSet, references: EmbeddingSet) -> Matching:
    """Pair every query with the reference of the same match key (module docstring)."""
    if queries.dim != references.dim:
        raise InputError(
            queries.root,
            f"query vectors are {queries.dim}-d but references ({references.root}) are {references.dim}-d",
        )
    table = reference_rows(references)
    q_rows, r_rows, lonely = [], [], []
    for row, key in enumerate(queries.keys):
        ref = table.get(match_key(key))
        if ref is None:
            lonely.append(queries.npys[row])
        else:
            q_rows.append(row)
            r_rows.append(ref)
    used = set(r_rows)
    orphans = [references.npys[r] for r in range(len(references)) if r not in used]
    return Matching(np.array(q_rows, np.int64), np.array(r_rows, np.int64), lonely, orphans)


@dataclass
class PairScores:
    """Pairwise mode: one record per matched query (``query``, ``reference``, ``key``, ``score``)."""

    records: list[dict[str, Any]]
    unmatched_queries: list[str]
    unmatched_references: list[str]


def load_pair(
    query_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    allow_model_mismatch: bool = False,
    progress: bool = False,
) -> tuple[EmbeddingSet, EmbeddingSet]:
    """Both folders, refused (``ModelMismatch``) when different models embedded them, unless
    ``allow_model_mismatch`` (:func:`clamp3.model_identity.require_same_model`)."""
    queries = load_embeddings(query_dir, progress=progress)
    references = load_embeddings(reference_dir, progress=progress)
    require_same_model(
        (f"the queries of {query_dir}", queries.identity),
        (f"the references of {reference_dir}", references.identity),
        reference_dir,
        allow_mismatch=allow_model_mismatch,
    )
    return queries, references


def score_pairs(
    query_dir: str | os.PathLike, reference_dir: str | os.PathLike, allow_model_mismatch: bool = False
) -> PairScores:
    """Cosine of each query file with its matched reference file; unmatched files are listed,
    not fatal (no prompt), but a run with no pair at all raises ``InputError``."""
    queries, references = load_pair(query_dir, reference_dir, allow_model_mismatch)
    m = match(queries, references)
    if not len(m.query_rows):
        raise InputError(query_dir, f"no query file matches a file of {reference_dir}")
    q = metrics.unit_rows(queries.vectors[m.query_rows])
    r = metrics.unit_rows(references.vectors[m.reference_rows])
    scores = np.einsum("ij,ij->i", q, r)
    records = [
        {
            "query": queries.paths[qi],
            "reference": references.paths[ri],
            "key": match_key(queries.keys[qi]),
            "score": float(s),
        }
        for qi, ri, s in zip(m.query_rows, m.reference_rows, scores)
    ]
    return PairScores(records, m.unmatched_queries, m.unmatched_references)


def score_groups(
    query_dir: str | os.PathLike, reference_dir: str | os.PathLike, allow_model_mismatch: bool = False
) -> dict[str, Any]:
    """Group mode (official): cosine between the mean of all query vectors and the mean of all
    reference vectors, means taken over the stored (not normalised) vectors."""
    queries, references = load_pair(query_dir, reference_dir, allow_model_mismatch)
    if queries.dim != references.dim:
        raise InputError(query_dir, f"{queries.dim}-d query vectors vs {references.dim}-d references")
    means = [s.vectors.mean(axis=0, dtype=np.float64) for s in (queries, references)]
    score = metrics.cosine_similarity(means[0], means[1])[0, 0]
    return {"score": float(score), "n_queries": len(queries), "n_references": len(references)}


@dataclass
class RetrievalEvaluation:
    """``metrics`` (mrr, hit@k), per-query ``records`` and the settings that produced them.

    ``ranks`` (Q,) are the reported ranks (expected or optimistic); ``greater`` / ``tied`` (Q,)
    the counts they and the metrics come from (:mod:`clamp3.evaluate.metrics`).
    """

    metrics: dict[str, float]
    records: list[dict[str, Any]]
    ranks: np.ndarray
    ties: str
    n_queries: int
    n_references: int
    greater: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    tied: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def hit_curve(self, max_k: int) -> np.ndarray:
        """Hit@k for k = 1 .. max_k (float64, non-decreasing) under this evaluation's tie mode."""
        return metrics.hit_curve_from_counts(self.greater, self.tied, max_k, self.ties)

    def summary(self) -> dict[str, Any]:
        return {
            **self.metrics,
            "n_queries": self.n_queries,
            "n_references": self.n_references,
            "ties": self.ties,
        }


def evaluate_retrieval(
    query_dir: str | os.PathLike,
    reference_dir: str | os.PathLike,
    *,
    ties: str = "expected",
    ks: tuple[int, ...] = metrics.DEFAULT_KS,
    progress: bool = False,
    allow_model_mismatch: bool = False,
) -> RetrievalEvaluation:
    """Rank all references for every query; MRR and Hit@k of the matched reference.

    As the official evaluation: one reference per match key, and every query key must have a
    reference and every reference a query, otherwise ``InputError`` lists the unmatched files.
    Ranks and metrics follow :mod:`clamp3.evaluate.metrics` (``ties``: ``expected``, the
    expectation under random tie-breaking, or ``optimistic``).
    Each record: ``query``, ``reference``, ``key``, ``rank``, ``score`` (cosine with the correct
    reference), ``n_greater``, ``n_tied`` (other references with exactly that score).
    Folders embedded by different models raise ``ModelMismatch`` unless ``allow_model_mismatch``.
    """
    if ties not in metrics.TIE_MODES:
        raise ValueError(f"unknown tie mode {ties!r}; choose from {', '.join(metrics.TIE_MODES)}")
    queries, references = load_pair(query_dir, reference_dir, allow_model_mismatch, progress)
    m = match(queries, references)
    if m.unmatched_queries or m.unmatched_references:
        parts = []
        if m.unmatched_queries:
            parts.append(f"queries without a reference: {_list(m.unmatched_queries)}")
        if m.unmatched_references:
            parts.append(f"references without a query: {_list(m.unmatched_references)}")
        raise InputError(query_dir, "unmatched files; " + "; ".join(parts))
    n_greater, n_tied, scores = metrics.rank_counts_chunked(
        queries.vectors[m.query_rows], references.vectors, m.reference_rows, QUERY_CHUNK
    )
    rank_values = metrics.ranks_from_counts(n_greater, n_tied, ties)
    records = [
        {
            "query": queries.paths[qi],
            "reference": references.paths[ri],
            "key": match_key(queries.keys[qi]),
            "rank": float(rank_values[i]),
            "score": float(scores[i]),
            "n_greater": int(n_greater[i]),
            "n_tied": int(n_tied[i]),
        }
        for i, (qi, ri) in enumerate(zip(m.query_rows, m.reference_rows))
    ]
    summary = metrics.metrics_from_counts(n_greater, n_tied, ties, ks)
    return RetrievalEvaluation(
        summary, records, rank_values, ties, len(queries), len(references), n_greater, n_tied
    )
