"""M4-RAG-style curation: retrieval-augmented annotation and translation of music metadata by an LLM.

Stages (one module each): ``catalogue`` (items) and ``documents`` (passages) -> ``retrieve``
(BM25, dense over ``embedding_cache`` vectors from ``embeddings``, or both fused) -> ``annotator``
(prompts from ``templates``, answers checked by ``schema`` and ``quality``, requests by ``llm``)
-> ``pipeline`` (concurrency, resume ``state``, final files). ``llm`` and ``embeddings`` share
the HTTP retry, budget and concurrency policy of ``transport``.
Needs the ``curate`` extra: ``pip install clamp3[curate]``.
"""

from clamp3.curate.annotator import CurateSettings
from clamp3.curate.embeddings import EmbeddingClient
from clamp3.curate.llm import ChatClient
from clamp3.curate.pipeline import curate, output_paths
from clamp3.curate.transport import RequestBudget, RetryPolicy

__all__ = [
    "ChatClient",
    "CurateSettings",
    "EmbeddingClient",
    "RequestBudget",
    "RetryPolicy",
    "curate",
    "output_paths",
]
