"""The index back-ends behind :class:`clamp3.index.SearchIndex`: ``faiss`` (embedded, default)
and ``milvus`` (a Milvus Lite file or a Milvus server). One class per file."""
