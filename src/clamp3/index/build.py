"""Build, extend or sync an index folder from an embedding folder (``clamp3 index``)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.index.catalogue import Catalogue, read_catalogue
from clamp3.index.embeddings import EmbeddingSet, load_embeddings
from clamp3.index.records import META_FILE, read_meta
from clamp3.index.search_index import SearchIndex
from clamp3.index.sync import apply_sync, changed_sources, plan_sync
from clamp3.model_identity import require_same_model
from clamp3.utils.errorlog import ERRORS_NAME, append_error
from clamp3.utils.errors import InputError


@dataclass
class BuildReport:
    """What a build did: rows ``added`` now, rows ``already_indexed`` (skipped or unchanged),
    ``total`` rows in the saved index, and the embedding files that could not be read (also
    appended to ``INDEX_DIR/errors.jsonl``). A sync also counts rows ``replaced`` and
    ``removed``; ``catalogue_unmatched`` lists the join values (``catalogue_join``: key or path)
    of the catalogue rows that matched no item, ``withheld``
    the folder's items left out because ``index-remove`` withdrew them; ``stale`` (append) names
    the indexed keys whose files changed since (sha256): kept as they were, ``--sync`` replaces them."""

    index_dir: Path
    kind: str
    added: int
    already_indexed: int
    total: int
    errors: list[InputError] = field(default_factory=list)
    replaced: int = 0
    removed: int = 0
    backend: str = "faiss"
    catalogue_unmatched: list[str] = field(default_factory=list)
    withheld: int = 0
    stale: list[str] = field(default_factory=list)
    catalogue_join: str | None = None


def _check_model(index: SearchIndex, embeddings: EmbeddingSet, emb_dir: Path, index_dir: Path) -> None:
    """Refuse to add another model's vectors (:func:`clamp3.model_identity.require_same_model`)."""
    require_same_model(
        (f"the vectors of the index {index_dir}", index.identity),
        (f"the embeddings of {emb_dir}", embeddings.identity),
        emb_dir,
        way_out="index them into a new folder, or rebuild with --overwrite",
    )


def default_collection(index_dir: Path) -> str:
    """A Milvus collection name from the index folder's name (letters, digits and _)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", index_dir.resolve().name) or "clamp3"
    return name if not name[0].isdigit() else f"c_{name}"


def _catalogue(catalogue: str | os.PathLike | None, index: SearchIndex | None, out: Path) -> Catalogue | None:
    """The catalogue given, else the one an existing index was built with (its columns must
    match the index's: changing columns needs --overwrite)."""
    source = catalogue or (index.meta.get("catalogue") if index is not None else None)
    if source is None:
        return None
    found = read_catalogue(source)
    if index is not None and found.columns != index.catalogue_columns:
        raise InputError(
            out,
            f"holds catalogue columns {index.catalogue_columns}, {found.source} has {found.columns}: use --overwrite",
        )
    return found


def _previous_place(out: Path, milvus: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """An overwrite rebuilds where the index was: its backend, and for Milvus its uri and collection."""
    old = read_meta(out)
    keep = ("uri", "collection", "token_env", "index_type")
    return old.get("backend", "faiss"), {**{k: old.get(k) for k in keep if old.get(k)}, **(milvus or {})}


def _open_existing(out: Path, mode: str, backend: str | None, approximate: str | None) -> SearchIndex | None:
    exists = (out / META_FILE).is_file()
    if exists and mode == "build":
        raise InputError(
            out, "already holds an index; pass --append or --sync to update it or --overwrite to rebuild it"
        )
    if not exists or mode == "overwrite":
        if exists and read_meta(out).get("backend", "faiss") == "faiss":
            # Without meta.json the folder is not an index until the new one is saved (meta.json
            # is written last), so a kill in between cannot pair new ids with old vectors.
            (out / META_FILE).unlink()
        return None
    index = SearchIndex.load(out)
    if backend is not None and backend != index.backend:
        raise InputError(out, f"holds a {index.backend} index; cannot update it as {backend}")
    if approximate is not None and approximate != index.kind:
        raise InputError(out, f"holds a {index.kind!r} index; cannot {mode} as {approximate!r}")
    return index


def build_index(
    emb_dir: str | os.PathLike,
    index_dir: str | os.PathLike,
    *,
    approximate: str | None = None,
    append: bool = False,
    overwrite: bool = False,
    sync: bool = False,
    backend: str | None = None,
    milvus: dict[str, Any] | None = None,
    catalogue: str | os.PathLike | None = None,
    target_recall: float = 0.95,
    progress: bool = True,
) -> BuildReport:
    """Index every embedding of ``emb_dir`` into ``index_dir`` and save it.

    ``approximate`` is ``None`` (exact ``flat`` search), ``"hnsw"`` or ``"ivf"``. ``backend`` is
    ``"faiss"`` (default for a new index) or ``"milvus"`` with ``milvus`` = ``{"uri": ...,
    "collection": ..., "token_env": ..., "index_type": ...}``. ``catalogue`` (CSV / JSONL, see
    :mod:`clamp3.index.catalogue`) adds columns to every item. Modes (at most one):

    * ``append``: add the keys the index does not hold yet (rerun = no-op; a missing index is built);
      in this mode and ``sync``, items ``index-remove`` withdrew stay out (``BuildReport.withheld``);
    * ``sync``: make the index hold exactly this folder (:mod:`clamp3.index.sync`: new keys added,
      changed ones replaced, vanished ones deleted; a killed sync is finished by a rerun);
    * ``overwrite``: rebuild from scratch;
    * none: build; an existing index is an error.

    Unreadable embeddings are skipped and reported; vectors of a dimension other than the
    index's, or from another model (per the manifest), are refused (``ModelMismatch``).
    """
    if sum((append, overwrite, sync)) > 1:
        raise ValueError("append, overwrite and sync exclude each other")
    emb_root, out = Path(emb_dir), Path(index_dir)
    mode = "append" if append else "sync" if sync else "overwrite" if overwrite else "build"
    if overwrite and backend is None and (out / META_FILE).is_file():
        backend, milvus = _previous_place(out, milvus)
    index = _open_existing(out, mode, backend, approximate)
    found_catalogue = _catalogue(catalogue, index, out)
    embeddings = load_embeddings(
        emb_root, dim=index.dim if index else None, skip_errors=True, progress=progress
    )
    if index is None:
        kind = backend or "faiss"
        index = _create(out, embeddings, approximate, kind, milvus, found_catalogue, target_recall, overwrite)
    _check_model(index, embeddings, emb_root, out)
    records = embeddings.records()
    if found_catalogue is not None:
        records = found_catalogue.join(records)
        index.record_catalogue(found_catalogue.source.resolve())
    vectors, records, withheld = _without_withdrawn(index, embeddings.vectors, records, prune=sync)
    stale = changed_sources(index, records) if mode == "append" else []
    added, replaced, removed = _fill(index, vectors, records, sync, progress)
    index.save(out)
    for err in embeddings.errors:
        append_error(out / ERRORS_NAME, err.path, err.reason)
    unmatched = found_catalogue.unmatched_values if found_catalogue else []
    join = found_catalogue.by if found_catalogue else None
    return BuildReport(
        out, index.kind, added, len(records) - added - replaced, len(index), embeddings.errors,
        replaced, removed, index.backend, unmatched, withheld, stale, join,
    )  # fmt: skip


def _without_withdrawn(
    index: SearchIndex, vectors: np.ndarray, records: list[dict], prune: bool
) -> tuple[np.ndarray, list[dict], int]:
    """The rows of the folder minus the items ``index-remove`` withdrew (their embeddings stay
    in the folder; an append or sync must not bring them back); also how many were left out.
    ``prune`` (a sync) forgets withdrawn items the folder no longer holds."""
    withdrawn = index.withdrawn
    if prune:
        present = {record["key"] for record in records}
        index.withdrawn = {k: v for k, v in withdrawn.items() if k in present}
    keep = [i for i, record in enumerate(records) if record["key"] not in withdrawn]
    if len(keep) == len(records):
        return vectors, records, 0
    return vectors[keep], [records[i] for i in keep], len(records) - len(keep)


def _fill(
    index: SearchIndex, vectors: np.ndarray, records: list[dict], sync: bool, progress: bool
) -> tuple[int, int, int]:
    """Add the new rows of ``vectors`` to ``index`` or (``sync``) make it hold exactly them;
    returns how many were (added, replaced, removed)."""
    if not sync:
        return index.add(vectors, records, progress=progress), 0, 0
    plan = plan_sync(index, vectors, records)
    apply_sync(index, vectors, records, plan, progress=progress)
    return len(plan.new), len(plan.changed), len(plan.vanished)


def _create(
    out: Path,
    embeddings: EmbeddingSet,
    approximate: str | None,
    backend: str,
    milvus: dict[str, Any] | None,
    catalogue: Catalogue | None,
    target_recall: float,
    overwrite: bool,
) -> SearchIndex:
    options: dict[str, Any] = {}
    if backend == "milvus":
        settings = dict(milvus or {})
        if not settings.get("uri"):
            raise InputError(
                out, "a Milvus index needs --uri (a Lite file such as ./library.db, or http://host:19530)"
            )
        settings["collection"] = settings.get("collection") or default_collection(out)
        options = {**settings, "overwrite": overwrite}
    index = SearchIndex.create(
        embeddings.dim,
        approximate or "flat",
        backend=backend,
        identity=embeddings.identity,
        input_root=embeddings.input_root,
        columns=catalogue.columns if catalogue is not None else {},
        train_vectors=embeddings.vectors if (approximate == "ivf") else None,
        target_recall=target_recall,
        **options,
    )
    if backend == "milvus":
        index.save(out)  # records the collection at once: a killed first build resumes with --sync
    return index
