"""Cosine search over embedding folders: build, load, extend and query FAISS indexes.

Needs the ``index`` extra (``faiss-cpu``); FAISS is imported only when an index is made or read.

    from clamp3.index import SearchIndex, build_index
    build_index("embeddings/", "my_index/")            # exact; approximate="hnsw" or "ivf"
    index = SearchIndex.load("my_index/")
    hits = index.search(query_vectors, k=10)           # (Q, D) -> Q lists of Hit(path, modality, score, row, key)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamp3.utils.lazy import lazy_exports

# Re-exported lazily (PEP 562): a query (``clamp3 search``) needs search_index and embeddings,
# not the builder and its catalogue reader.
_EXPORTS = {
    "BuildReport": "clamp3.index.build",
    "build_index": "clamp3.index.build",
    "EmbeddingSet": "clamp3.index.embeddings",
    "load_embeddings": "clamp3.index.embeddings",
    "read_vector": "clamp3.index.embeddings",
    "Hit": "clamp3.index.search_index",
    "SearchIndex": "clamp3.index.search_index",
    "normalize": "clamp3.index.search_index",
}

__all__ = [
    "BuildReport",
    "EmbeddingSet",
    "Hit",
    "SearchIndex",
    "build_index",
    "load_embeddings",
    "normalize",
    "read_vector",
]

if TYPE_CHECKING:
    from clamp3.index.build import BuildReport, build_index
    from clamp3.index.embeddings import EmbeddingSet, load_embeddings, read_vector
    from clamp3.index.search_index import Hit, SearchIndex, normalize


__getattr__ = lazy_exports(__name__, _EXPORTS)
