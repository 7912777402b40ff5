"""One query (text, a music file or a stored embedding) against an index (``clamp3 search``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.index.embeddings import read_vector
from clamp3.index.search_index import SearchIndex
from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)


def _stored_embedding(path: Path, dim: int) -> np.ndarray | None:
    """A ``.npy`` holding one (1, D) / (D,) vector of the index's dimension, else ``None``
    (then it is taken as audio feature rows, e.g. the official (1, n_windows, 768) MERT file)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"unreadable .npy ({type(exc).__name__}: {exc})") from exc
    if array.ndim <= 2 and array.size == dim and (array.ndim == 1 or array.shape[0] == 1):
        return read_vector(path, dim)
    return None


def needs_model(query: str | os.PathLike, dim: int) -> bool:
    """False only for an existing ``.npy`` holding one ``dim``-d embedding (used as it is)."""
    path = Path(query)
    return not (path.suffix.lower() == ".npy" and path.is_file() and _stored_embedding(path, dim) is not None)


def load_model(model: Clamp3Model | str | os.PathLike, device: str | None = None) -> Clamp3Model:
    """A model object, or one loaded from a directory / tag (towers are loaded on first use;
    an ``export-onnx`` directory runs on ONNX Runtime)."""
    from clamp3 import backends

    return backends.load(model, device=device)


def warn_if_other_model(model: Clamp3Model, fingerprint: str | None) -> None:
    """Log a warning when ``model``'s fingerprint is not ``fingerprint`` (the index's): its
    query vectors live in another space, so the scores would mean nothing. A warning, not an
    error: a converted copy of the same weights (``.pth`` -> directory) has another fingerprint."""
    from clamp3.model_identity import identify

    if fingerprint is None:
        return
    found = identify(model)
    if found.fingerprint != fingerprint:
        log.warning(
            "the query model %s (fingerprint %s) is not the model that embedded the index (%s); "
            "scores compare vectors of two models",
            found.id or "(unsaved)",
            found.fingerprint,
            fingerprint,
        )


def query_vector(
    query: str | os.PathLike,
    dim: int,
    model: Clamp3Model | str | os.PathLike | None = None,
    device: str | None = None,
    fingerprint: str | None = None,
) -> tuple[np.ndarray, str]:
    """``query`` -> (unit vector float32 (dim,), what it was: ``"embedding"``, ``"text"``,
    ``"symbolic"`` or ``"audio"``).

    An existing ``.npy`` of one ``dim``-d vector is used as it is (no model needed). Anything
    else goes through the model's ``encode``: files by extension, other strings as text in any
    language. A string that looks like a music file name but does not exist is an error
    (``encode`` refuses it), not a text query. ``fingerprint`` is the index's model
    fingerprint (see :func:`warn_if_other_model`).
    """
    from clamp3.encode import detect_modality

    path = Path(query)
    if path.suffix.lower() == ".npy" and path.is_file():
        stored = _stored_embedding(path, dim)
        if stored is not None:
            return stored / max(float(np.linalg.norm(stored)), 1e-12), "embedding"
    modality = detect_modality(query)
    if model is None:
        raise InputError(str(query), "a model is needed to encode this query (--model)")
    loaded = load_model(model, device)
    warn_if_other_model(loaded, fingerprint)
    vector = loaded.encode([query], normalize=True)[0]
    if vector.shape[0] != dim:
        raise InputError(
            str(query), f"the model gives {vector.shape[0]}-d vectors but the index holds {dim}-d"
        )
    return vector, modality


def search(
    query: str | os.PathLike,
    index: SearchIndex | str | os.PathLike,
    *,
    model: Clamp3Model | str | os.PathLike | None = None,
    top_k: int = 10,
    modality: str | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Rank the index for one query; ``model`` defaults to the model stored in the index (an
    absolute path or a tag, so it loads from any working directory).

    Returns ``top_k`` dicts, best first (equal scores by key): ``rank`` (1-based), ``path``,
    ``score`` (cosine), ``modality``, ``key``, ``row``. ``modality`` keeps only rows of that
    modality.
    """
    if not isinstance(index, SearchIndex):
        index = SearchIndex.load(index)
    source = model if model is not None else index.model
    vector, _ = query_vector(query, index.dim, source, device, fingerprint=index.model_fingerprint)
    hits = index.search(vector[None, :], top_k, modality=modality)[0]
    return [{"rank": rank, **hit.to_dict()} for rank, hit in enumerate(hits, start=1)]
