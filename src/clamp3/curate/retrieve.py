"""Retrieval of the passages relevant to a catalogue item: BM25, dense, or both fused.

* ``bm25``: ``bm25s`` rather than a hand-written BM25, because it scores with sparse matrices
  (fast enough for a Wikipedia-size dump on a laptop), needs only numpy, and is maintained.
* ``dense``: cosine similarity between the query's and the passages' embeddings from an
  OpenAI-compatible ``/embeddings`` endpoint (passage vectors from :mod:`embedding_cache`).
  It finds passages that share meaning but not exact tokens with the query — other word forms,
  scripts written without spaces (Chinese, Japanese), which BM25's tokenizer cannot split.
* ``hybrid``: reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009) of the two
  rankings, ``score(p) = sum over rankings of 1 / (60 + rank of p)`` with ranks from 1. RRF
  needs no score calibration, which BM25 scores and cosines do not share.

Every passage is indexed as :attr:`Passage.search_text` (its document title, often the strongest
match, then its text). The query is the item's title, artists and metadata values. Results are
``(passage, score)`` pairs, best first, ties in passage order, so retrieval is a pure function
of the passages, the vectors and the query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from clamp3.curate.catalogue import CatalogueItem
from clamp3.curate.documents import Passage
from clamp3.curate.embeddings import EmbeddingClient
from clamp3.curate.transport import LLMConfigError

RETRIEVAL_MODES = ("bm25", "dense", "hybrid")
RRF_K = 60  # the constant of Cormack et al. (2009), used unchanged by most hybrid search engines


class Retriever(Protocol):
    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to ``k`` ``(passage, score)`` pairs, best first."""
        ...


class Bm25Retriever:
    """Top-k BM25 search over a fixed list of passages (English stop words removed, lower-cased)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s
        from bm25s.tokenization import Tokenizer

        # bm25s sets its own logger to DEBUG on import, so "Building index from token IDs"
        # reached every terminal past the WARNING level the commands keep for other packages.
        bm25s_log = logging.getLogger("bm25s")
        if bm25s_log.level == logging.DEBUG and not bm25s_log.handlers:
            bm25s_log.setLevel(logging.NOTSET)  # follow the application's configuration
        self.passages = list(passages)
        self._tokenizer = Tokenizer(stopwords="en")
        self._index = bm25s.BM25()
        # bm25s does not promise thread safety; a search takes milliseconds against seconds per
        # LLM request, so serialising searches from the worker threads costs nothing measurable.
        self._lock = threading.Lock()
        if self.passages:
            corpus = [p.search_text for p in self.passages]
            ids = self._tokenizer.tokenize(corpus, show_progress=False, return_as="ids")
            self._index.index(ids, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to ``k`` ``(passage, score)`` pairs, best first; passages sharing no term are dropped."""
        if not self.passages or k < 1:
            return []
        k = min(k, len(self.passages))
        with self._lock:
            ids = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False, return_as="ids")
            rows, scores = self._index.retrieve(ids, k=k, show_progress=False, n_threads=1)
        hits = [(int(i), float(s)) for i, s in zip(rows[0], scores[0]) if s > 0]
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return [(self.passages[i], round(s, 6)) for i, s in hits]


class DenseRetriever:
    """Exact cosine top-k over passage vectors; each search embeds the query (one request).

    ``vectors``: float32 ``(len(passages), D)`` unit rows (zero rows never match). Scores are
    cosines in ``[-1, 1]``; passages with a cosine <= 0 share nothing with the query and are
    dropped, as BM25 drops passages sharing no term. Thread-safe (numpy only reads).
    """

    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray, client: EmbeddingClient) -> None:
        if len(vectors) != len(passages):
            raise ValueError(f"{len(passages)} passages but {len(vectors)} vectors")
        self.passages = list(passages)
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.client = client

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to ``k`` ``(passage, cosine)`` pairs, best first; raises the transport's errors."""
        if not self.passages or k < 1 or self.vectors.shape[1] == 0:
            return []
        q = self.client.embed_batch([query])[0]
        if q.shape[0] != self.vectors.shape[1]:
            raise LLMConfigError(
                f"{self.client.url}: query vectors have {q.shape[0]} dimensions, the cached passage "
                f"vectors {self.vectors.shape[1]}: is the same model served under {self.client.model!r}?"
            )
        scores = self.vectors @ q
        k = min(k, len(scores))
        # Every passage scoring at least the k-th best, so that ties at the cut go by index
        # (argpartition alone would pick among equal scores arbitrarily).
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero((scores >= kth) & (scores > 0))
        order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
        return [(self.passages[i], round(float(scores[i]), 6)) for i in order]


class HybridRetriever:
    """Reciprocal rank fusion of a BM25 and a dense ranking, each cut at ``depth`` passages.

    Scores are RRF scores in ``(0, 2 / (RRF_K + 1)]``. A deeper cut than ``k`` lets a passage
    ranked fair by both retrievers beat one ranked first by one of them, as RRF intends.
    """

    def __init__(self, bm25: Bm25Retriever, dense: DenseRetriever, depth: int = 100) -> None:
        self.bm25, self.dense, self.depth = bm25, dense, depth
        self._position = {p.key: i for i, p in enumerate(bm25.passages)}

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to ``k`` ``(passage, RRF score)`` pairs, best first, ties in passage order."""
        if k < 1:
            return []
        depth = max(k, self.depth)
        rankings = [
            [p for p, _ in self.bm25.search(query, depth)],
            [p for p, _ in self.dense.search(query, depth)],
        ]
        fused = reciprocal_rank_fusion(rankings, order=self._position)
        return [(p, round(s, 6)) for p, s in fused[:k]]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Passage]], order: dict[str, int] | None = None, k: int = RRF_K
) -> list[tuple[Passage, float]]:
    """``(passage, sum of 1 / (k + rank))`` over ``rankings`` (each best first, ranks from 1),
    best first; ties go by ``order[passage.key]`` (default: first appearance)."""
    scores: dict[str, float] = {}
    passages: dict[str, Passage] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            scores[passage.key] = scores.get(passage.key, 0.0) + 1.0 / (k + rank)
            passages.setdefault(passage.key, passage)
    position = order if order is not None else {key: i for i, key in enumerate(passages)}
    keys = sorted(scores, key=lambda key: (-scores[key], position[key]))
    return [(passages[key], scores[key]) for key in keys]


def item_query(item: CatalogueItem) -> str:
    """The retrieval query of an item: title, artists, then the other metadata values."""
    parts = [item.title, *item.artists]
    for value in item.metadata.values():
        parts.extend(value if isinstance(value, list) else [value])
    return " ".join(parts)
