"""One query (text, a music file or a stored embedding) against an index (``clamp3 search``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.index.embeddings import read_vector
from clamp3.index.filters import Where
from clamp3.index.search_index import SearchIndex
from clamp3.inputs import is_supported, kind_of, modality_of
from clamp3.utils.errors import InputError
from clamp3.utils.vectors import l2_normalize

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.model_identity import ModelIdentity
    from clamp3.pipeline import Clamp3Pipeline

log = logging.getLogger(__name__)


def _stored_embedding(path: Path, dim: int) -> np.ndarray | None:
    """A ``.npy`` holding one (1, D) / (D,) vector of the index's dimension, else ``None``
    (then it is taken as audio feature rows, e.g. the official (1, n_windows, 768) MERT file).
    One vector of another size is an ``InputError``: an embedding of another model, most
    likely, and as features it would be a single window."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"unreadable .npy ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 1 or (array.ndim == 2 and array.shape[0] == 1):
        if array.size != dim:
            raise InputError(
                path, f"holds one {array.size}-d vector; this index holds {dim}-d embeddings"
                " (audio features would be (1, n_windows, F))"
            )  # fmt: skip
        return read_vector(path, dim)
    return None


def needs_model(query: str | os.PathLike, dim: int) -> bool:
    """False only for an existing ``.npy`` holding one ``dim``-d embedding (used as it is)."""
    path = Path(query)
    return not (path.suffix.lower() == ".npy" and path.is_file() and _stored_embedding(path, dim) is not None)


def names_a_file(query: str | os.PathLike) -> bool:
    """How ``clamp3 search QUERY`` reads its one argument (the pipeline itself never guesses):
    a path object, a string naming an existing file with an extension, or a string without
    whitespace ending in a supported extension is a file (a missing ``song.mid`` is reported,
    not searched as words); anything else is text, even when a file of that name exists
    (``waltz`` stays text)."""
    if isinstance(query, os.PathLike):
        return True
    if not Path(query).suffix:
        return False
    return os.path.isfile(query) or (not any(c.isspace() for c in query) and is_supported(query))


def is_image_query(query: str | os.PathLike) -> bool:
    """True when :func:`names_a_file` reads ``query`` as an image (searched by its caption)."""
    return names_a_file(query) and is_supported(query) and kind_of(query).name == "image"


def warn_if_other_model(model: Clamp3Model, index_model: ModelIdentity | None) -> None:
    """Log a warning when ``model`` is not the model that embedded the index (the rule of
    :func:`clamp3.model_identity.same_model`): its query vectors live in another space, so the
    scores would mean nothing. A warning, not an error, as the query is the user's choice."""
    from clamp3.model_identity import identify, same_model

    found = identify(model)
    if index_model is not None and same_model(found, index_model) is False:
        log.warning(
            "the query model %s is not the model that embedded the index (%s); "
            "scores compare vectors of two models",
            found.describe(),
            index_model.describe(),
        )


def query_vector(
    query: str | os.PathLike,
    dim: int,
    model: Clamp3Model | Clamp3Pipeline | str | os.PathLike | None = None,
    device: str | None = None,
    index_model: ModelIdentity | None = None,
) -> tuple[np.ndarray, str]:
    """``query`` -> (unit vector float32 (dim,), what it was: ``"embedding"``, ``"text"``,
    ``"symbolic"`` or ``"audio"``).

    An existing ``.npy`` of one ``dim``-d vector is used as it is (no model needed). Anything
    else goes through the pipeline: files (:func:`names_a_file`) by extension, other strings as
    text in any language. A string that looks like a music file name but does not exist is an
    error, not a text query. ``index_model`` is the model that embedded the index (see
    :func:`warn_if_other_model`).
    """
    path = Path(query)
    if path.suffix.lower() == ".npy" and path.is_file():
        stored = _stored_embedding(path, dim)
        if stored is not None:
            return l2_normalize(stored), "embedding"
    is_file = names_a_file(query)
    modality = modality_of(query) if is_file else "text"
    if model is None:
        raise InputError(str(query), "a model is needed to encode this query (--model)")
    from clamp3.loading import load_pipeline

    pipeline = load_pipeline(model, device=device, one_shot=True)  # loaded for this one query
    warn_if_other_model(pipeline.model, index_model)
    if is_file:
        vector = pipeline.encode_files([query])[0]
    else:
        vector = pipeline.encode_texts([str(query)])[0]
    if vector.shape[0] != dim:
        raise InputError(
            str(query), f"the model gives {vector.shape[0]}-d vectors but the index holds {dim}-d"
        )
    return vector, modality


def search(
    query: str | os.PathLike,
    index: SearchIndex | str | os.PathLike,
    *,
    model: Clamp3Model | Clamp3Pipeline | str | os.PathLike | None = None,
    top_k: int = 10,
    modality: str | None = None,
    device: str | None = None,
    where: str | Where | None = None,
) -> list[dict[str, Any]]:
    """Rank the index for one query; ``model`` defaults to the model stored in the index (an
    absolute path or a tag, so it loads from any working directory).

    Returns ``top_k`` dicts, best first (equal scores by key): ``rank`` (1-based), ``path``,
    ``score`` (cosine), ``modality``, ``key``, ``row`` and, when the index has catalogue columns,
    ``metadata`` (column -> value). ``modality`` keeps only rows of that
    modality, ``where`` only rows passing a filter (:mod:`clamp3.index.filters`).
    """
    if not isinstance(index, SearchIndex):
        index = SearchIndex.load(index)
    source = model if model is not None else index.model
    vector, _ = query_vector(query, index.dim, source, device, index_model=index.identity)
    hits = index.search(vector[None, :], top_k, modality=modality, where=where)[0]
    columns = index.catalogue_columns
    out = []
    for rank, hit in enumerate(hits, start=1):
        result = {"rank": rank, **hit.to_dict()}
        if columns:  # the catalogue's values, so a filtered answer shows what it matched on
            entry = index.entry(hit.row)
            result["metadata"] = {name: entry.get(name) for name in columns}
        out.append(result)
    return out
