"""BM25 retrieval of the passages relevant to a catalogue item (``bm25s``).

``bm25s`` is used rather than a hand-written BM25 because it scores with sparse matrices (fast
enough for a Wikipedia-size dump on a laptop), needs only numpy, and is maintained. Each passage
is indexed together with its document title, since the title (an article or song name) is often
the strongest match for an item. The query is the item's title, artists and metadata values.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from clamp3.curate.catalogue import CatalogueItem
from clamp3.curate.documents import Passage


class Bm25Retriever:
    """Top-k BM25 search over a fixed list of passages (English stop words removed, lower-cased)."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        import bm25s
        from bm25s.tokenization import Tokenizer

        self.passages = list(passages)
        self._tokenizer = Tokenizer(stopwords="en")
        self._index = bm25s.BM25()
        # bm25s does not promise thread safety; a search takes milliseconds against seconds per
        # LLM request, so serialising searches from the worker threads costs nothing measurable.
        self._lock = threading.Lock()
        if self.passages:
            corpus = [f"{p.title}\n{p.text}" for p in self.passages]
            ids = self._tokenizer.tokenize(corpus, show_progress=False, return_as="ids")
            self._index.index(ids, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Up to ``k`` ``(passage, score)`` pairs, best first; passages sharing no term are dropped.

        Ties keep index order, so the result is a pure function of the passages and the query.
        """
        if not self.passages or k < 1:
            return []
        k = min(k, len(self.passages))
        with self._lock:
            ids = self._tokenizer.tokenize([query], update_vocab=False, show_progress=False, return_as="ids")
            rows, scores = self._index.retrieve(ids, k=k, show_progress=False, n_threads=1)
        hits = [(int(i), float(s)) for i, s in zip(rows[0], scores[0]) if s > 0]
        hits.sort(key=lambda hit: (-hit[1], hit[0]))
        return [(self.passages[i], round(s, 6)) for i, s in hits]


def item_query(item: CatalogueItem) -> str:
    """The retrieval query of an item: title, artists, then the other metadata values."""
    parts = [item.title, *item.artists]
    for value in item.metadata.values():
        parts.extend(value if isinstance(value, list) else [value])
    return " ".join(parts)
