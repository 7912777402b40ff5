"""Cosine search over embedding folders: build, load, extend and query FAISS indexes.

Needs the ``index`` extra (``faiss-cpu``); FAISS is imported only when an index is made or read.

    from clamp3.index import SearchIndex, build_index
    build_index("embeddings/", "my_index/")            # exact; approximate="hnsw" or "ivf"
    index = SearchIndex.load("my_index/")
    hits = index.search(query_vectors, k=10)           # (Q, D) -> Q lists of Hit(path, modality, score, row, key)
"""

from clamp3.index.build import BuildReport, build_index
from clamp3.index.embeddings import EmbeddingSet, load_embeddings, read_vector
from clamp3.index.search_index import Hit, SearchIndex, normalize

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
