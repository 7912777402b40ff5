"""Build or extend an index folder from an embedding folder (``clamp3 index``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.index.embeddings import EmbeddingSet, load_embeddings
from clamp3.index.search_index import META_FILE, SearchIndex
from clamp3.model_identity import require_same_model
from clamp3.utils.errorlog import ERRORS_NAME, append_error
from clamp3.utils.errors import InputError


@dataclass
class BuildReport:
    """What a build did: rows ``added`` now, rows ``already_indexed`` (skipped), ``total`` rows
    in the saved index, and the embedding files that could not be read (also appended to
    ``INDEX_DIR/errors.jsonl``)."""

    index_dir: Path
    kind: str
    added: int
    already_indexed: int
    total: int
    errors: list[InputError] = field(default_factory=list)


def _check_model(index: SearchIndex, embeddings: EmbeddingSet, emb_dir: Path, index_dir: Path) -> None:
    """Refuse to add another model's vectors (:func:`clamp3.model_identity.require_same_model`)."""
    require_same_model(
        (f"the vectors of the index {index_dir}", index.identity),
        (f"the embeddings of {emb_dir}", embeddings.identity),
        emb_dir,
        way_out="index them into a new folder, or rebuild with --overwrite",
    )


def build_index(
    emb_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    approximate: str | None = None,
    append: bool = False,
    overwrite: bool = False,
    target_recall: float = 0.95,
    progress: bool = True,
) -> BuildReport:
    """Index every embedding of ``emb_dir`` into ``index_dir`` and save it.

    ``approximate`` is ``None`` (exact ``flat`` search), ``"hnsw"`` or ``"ivf"``. With ``append``
    an existing index is extended with the keys it does not hold yet (rerunning is a no-op; an
    interrupted run resumes); a missing one is built. Without ``append``, an existing index is
    an error unless ``overwrite``. Unreadable embeddings are skipped and reported; vectors of a
    dimension other than the index's, or from another model (per the manifest), are refused
    (``ModelMismatch``).
    """
    emb_root, out = Path(emb_dir), Path(index_dir)
    exists = (out / META_FILE).is_file()
    if exists and not (append or overwrite):
        raise InputError(
            out, "already holds an index; pass --append to extend it or --overwrite to rebuild it"
        )
    index = SearchIndex.load(out) if exists and append else None
    if exists and index is None:
        # Overwriting: without meta.json the folder is not an index until the new one is saved
        # (meta.json is written last), so a kill in between cannot pair new ids with old vectors.
        (out / META_FILE).unlink()
    if index is not None and approximate is not None and approximate != index.kind:
        raise InputError(out, f"holds a {index.kind!r} index; cannot append as {approximate!r}")
    embeddings = load_embeddings(
        emb_root, dim=index.dim if index else None, skip_errors=True, progress=progress
    )
    if index is None:
        index = SearchIndex.create(
            embeddings.dim,
            approximate or "flat",
            identity=embeddings.identity,
            input_root=embeddings.input_root,
            train_vectors=embeddings.vectors if approximate == "ivf" else None,
            target_recall=target_recall,
        )
    _check_model(index, embeddings, emb_root, out)
    added = index.add(embeddings.vectors, embeddings.records(), progress=progress)
    index.save(out)
    for err in embeddings.errors:
        append_error(out / ERRORS_NAME, err.path, err.reason)
    return BuildReport(out, index.kind, added, len(embeddings) - added, len(index), embeddings.errors)
