"""M4-RAG-style curation: retrieval-augmented annotation and translation of music metadata by an LLM.

Stages (one module each): ``catalogue`` (items) and ``documents`` (passages) -> ``retrieve``
(BM25) -> ``annotator`` (prompts from ``templates``, answers checked by ``schema`` and
``quality``, requests by ``llm``) -> ``pipeline`` (concurrency, resume ``state``, final files).
Needs the ``curate`` extra: ``pip install clamp3[curate]``.
"""

from clamp3.curate.annotator import CurateSettings
from clamp3.curate.llm import ChatClient, RequestBudget, RetryPolicy
from clamp3.curate.pipeline import curate, output_paths

__all__ = ["ChatClient", "CurateSettings", "RequestBudget", "RetryPolicy", "curate", "output_paths"]
