"""Read a folder of embeddings written by ``clamp3 embed`` (or the official extractor).

Layout read (see ``docs/index.md``)::

    EMB_DIR/<relative path without extension>.npy   float32 (1, D) or (D,), one vector per file
    EMB_DIR/manifest.jsonl                          optional; one record per embedded file
    EMB_DIR/manifest.rank-K.jsonl                   the same, from rank K of a distributed run
                                                    (both read by ``clamp3.formats``)

Every ``.npy`` below ``EMB_DIR`` is read (recursively, hidden files and folders skipped). Its
**key** is its path relative to ``EMB_DIR`` without the ``.npy`` suffix, with ``/`` separators.
When a manifest (of any rank) has a record for the file, the original input path and the
modality come from it; otherwise the path is the ``.npy`` path and the modality is unknown
(``None``).

This loader is shared by ``clamp3 index``, ``score`` and ``eval``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clamp3.formats import ManifestRecord, folder_identity, read_manifest
from clamp3.model_identity import ModelIdentity
from clamp3.utils.errors import InputError
from clamp3.utils.walk import Listing, walk_files


@dataclass
class EmbeddingSet:
    """Vectors of one embedding folder, sorted by key.

    ``vectors`` is float32 (N, D), exactly as stored (not normalised); row ``i`` belongs to
    ``keys[i]`` / ``paths[i]`` / ``npys[i]`` / ``modalities[i]``. ``errors`` lists the files that
    were skipped (only when loaded with ``skip_errors=True``). ``identity`` is the one model of
    the loaded files' manifest records and ``input_root`` the latest record's (``None`` without
    a manifest).
    """

    root: Path
    keys: list[str]
    paths: list[str]
    npys: list[str]
    modalities: list[str | None]
    vectors: np.ndarray
    errors: list[InputError] = field(default_factory=list)
    identity: ModelIdentity | None = None
    input_root: str | None = None
    details: list[dict] = field(default_factory=list)  # per row: n_items, sha256, model (manifest)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def records(self) -> list[dict[str, str | None]]:
        """One ``{key, path, modality, npy, n_items, sha256, model}`` dict per row (the index's
        metadata fields; the last three are None without a manifest record)."""
        details = self.details or [{}] * len(self.keys)
        return [
            {"key": k, "path": p, "modality": m, "npy": n, **d}
            for k, p, m, n, d in zip(self.keys, self.paths, self.modalities, self.npys, details)
        ]


def find_npy_files(root: Path) -> Listing:
    """``.npy`` files below ``root`` by the walker's policy (:mod:`clamp3.utils.walk`: sorted,
    hidden files/folders and atomic-write temporaries skipped, unlistable folders reported)."""
    return walk_files(root, (".npy",))


def read_vector(path: Path, dim: int | None = None) -> np.ndarray:
    """One stored embedding -> float32 (D,).

    Accepts (D,) and (1, D). Raises ``InputError`` naming the file for an unreadable file, any
    other shape (e.g. unpooled (1, n, D) features), a dimension other than ``dim``, NaN/inf, or
    an all-zero vector (it has no direction: no index can hold it, no query can use it).
    """
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # np.load raises several types for a damaged or foreign file
        raise InputError(path, f"unreadable .npy ({type(exc).__name__}: {exc})") from exc
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.shape[0] == 0:
        raise InputError(
            path, f"expected one embedding of shape (1, D) or (D,), got {array.shape} (unpooled features?)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(path, f"expected floating-point values, got dtype {array.dtype}")
    if dim is not None and array.shape[0] != dim:
        raise InputError(path, f"dimension {array.shape[0]} differs from the expected {dim}")
    if not np.isfinite(array).all():
        raise InputError(path, "embedding contains NaN or infinity")
    if not array.any():
        raise InputError(path, "embedding is all zeros")
    return array.astype(np.float32, copy=False)


def _manifest_by_npy(root: Path) -> dict[str, ManifestRecord]:
    # Reruns of ``embed`` may append a file twice; the last record describes the file on disk.
    records: dict[str, ManifestRecord] = {}
    for record in read_manifest(root):
        records.pop(record.npy, None)  # re-inserted last: dict order = write order
        records[record.npy] = record
    return records


def load_embeddings(
    directory: str | os.PathLike,
    *,
    dim: int | None = None,
    skip_errors: bool = False,
    progress: bool = False,
) -> EmbeddingSet:
    """Read every embedding below ``directory`` (see the module docstring for the layout).

    ``dim`` fixes the expected dimension (default: the first readable file's). With
    ``skip_errors`` a bad file is recorded in ``EmbeddingSet.errors`` and the rest is read;
    otherwise the first bad file raises ``InputError``. A missing or empty folder, a folder where
    no file could be read, and manifests naming several models always raise ``InputError``.
    """
    from tqdm.auto import tqdm

    root = Path(directory)
    if not root.is_dir():
        raise InputError(root, "embedding folder not found")
    listing = find_npy_files(root)
    files = listing.files
    if listing.errors and not skip_errors:
        raise listing.errors[0]
    if not files:
        raise InputError(root, "no .npy embeddings found in this folder")
    manifest = _manifest_by_npy(root)
    keys, paths, npys, modalities, rows, details = [], [], [], [], [], []
    errors: list[InputError] = list(listing.errors)
    for file in tqdm(files, desc=f"reading {root.name or root}", unit="file", disable=not progress):
        try:
            vector = read_vector(file, dim)
        except InputError as err:
            if not skip_errors:
                raise
            errors.append(err)
            continue
        dim = vector.shape[0]
        npy = file.relative_to(root).as_posix()
        record = manifest.get(npy)
        keys.append(npy[: -len(".npy")])
        npys.append(npy)
        paths.append(record.path if record else npy)
        modalities.append(record.modality if record else None)
        details.append(
            {"n_items": record.n_items, "sha256": record.sha256, "model": record.model}
            if record
            else {"n_items": None, "sha256": None, "model": None}
        )
        rows.append(vector)
    if not rows:
        raise InputError(root, f"no readable embeddings ({len(errors)} bad files, first: {errors[0]})")
    loaded = set(npys)
    records = [r for n, r in manifest.items() if n in loaded]
    identity = folder_identity(records, root)
    input_root = records[-1].input_root if records else None
    return EmbeddingSet(
        root, keys, paths, npys, modalities, np.stack(rows), errors, identity, input_root, details
    )
