"""A client for OpenAI-compatible embedding endpoints (vLLM, llama.cpp server, Ollama, hosted APIs).

``POST {base_url}/embeddings`` with ``{"model": name, "input": [text, ...]}``; the answer's
``data`` holds one ``{"index": i, "embedding": [float, ...]}`` per input. Rows are put in input
order by ``index`` (the API does not promise answer order) and L2-normalised here, so cosine
similarity is a dot product whatever the server's pooling returns. Retries, the request budget
and the concurrency limit are the shared transport's (:mod:`clamp3.curate.transport`).

``encoding_format`` is not sent: ``float`` is the API's default and some servers reject the field.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from clamp3.curate.transport import ApiClient
from clamp3.utils.vectors import l2_normalize


class EmbeddingClient(ApiClient):
    """Embeds texts in batches of ``batch_size`` inputs per request. Thread-safe."""

    route = "/embeddings"

    def __init__(self, base_url: str, model: str, *, batch_size: int = 64, **transport: Any) -> None:
        """``transport``: the keyword options of :class:`~clamp3.curate.transport.ApiClient`."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        super().__init__(base_url, model, **transport)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), D)`` float32 unit rows, one request per ``batch_size`` texts, sent in turn."""
        parts = [
            self.embed_batch(texts[start : start + self.batch_size])
            for start in range(0, len(texts), self.batch_size)
        ]
        if not parts:
            return np.zeros((0, 0), dtype=np.float32)
        if len({part.shape[1] for part in parts}) > 1:
            raise ValueError(f"{self.url}: the server returned vectors of different sizes")
        return np.concatenate(parts)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), D)`` float32 unit rows from ONE request (plus its retries).

        A zero vector stays zero (it then matches nothing). An answer with the wrong number of
        rows, ragged or non-finite rows counts as an unparseable body, i.e. is retried.
        """
        if not texts:
            raise ValueError("embed_batch needs at least one text")
        body = {"model": self.model, "input": list(texts)}
        return self._request(body, functools.partial(_vectors, count=len(texts)))


def _vectors(body: Any, count: int) -> np.ndarray:
    rows = sorted(body["data"], key=lambda row: row["index"])
    if [row["index"] for row in rows] != list(range(count)):
        raise ValueError(f"expected {count} embeddings indexed 0..{count - 1}")
    matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise ValueError("embeddings must be equal-length lists of finite numbers")
    return unit_float32(matrix)


def unit_float32(matrix: np.ndarray) -> np.ndarray:
    """``(N, D)`` -> float32 rows of unit L2 norm, computed in float64 (the service's numbers
    arrive as float64 JSON) with the package's one normaliser."""
    return l2_normalize(matrix, np.float64).astype(np.float32)
