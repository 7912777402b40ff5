"""Read a folder of embeddings written by ``clamp3 embed`` (or the official extractor).

Layout read (see ``docs/index.md``)::

    EMB_DIR/<relative path without extension>.npy   float32 (1, D) or (D,), one vector per file
    EMB_DIR/manifest.jsonl                          optional; one object per embedded file:
                                                    path, npy, modality, n_items, sha256, model,
                                                    model_fingerprint, pooled, input_root
    EMB_DIR/manifest.rank-K.jsonl                   the same, from rank K of a distributed run

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

from clamp3.embed_folder import manifest_files
from clamp3.utils.errors import InputError
from clamp3.utils.io import read_jsonl


@dataclass
class EmbeddingSet:
    """Vectors of one embedding folder, sorted by key.

    ``vectors`` is float32 (N, D), exactly as stored (not normalised); row ``i`` belongs to
    ``keys[i]`` / ``paths[i]`` / ``npys[i]`` / ``modalities[i]``. ``errors`` lists the files that
    were skipped (only when loaded with ``skip_errors=True``). ``models`` are the model ids the
    manifests name (sorted); ``model``, ``fingerprint`` and ``input_root`` come from the most
    recently written record (``None`` without a manifest).
    """

    root: Path
    keys: list[str]
    paths: list[str]
    npys: list[str]
    modalities: list[str | None]
    vectors: np.ndarray
    models: list[str] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    model: str | None = None
    fingerprint: str | None = None
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


def find_npy_files(root: Path) -> list[Path]:
    """``.npy`` files below ``root``, sorted; hidden files/folders (and atomic-write temps) skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".npy") and not f.startswith("."))
    return sorted(found)


def read_vector(path: Path, dim: int | None = None) -> np.ndarray:
    """One stored embedding -> float32 (D,).

    Accepts (D,) and (1, D). Raises ``InputError`` naming the file for an unreadable file, any
    other shape (e.g. unpooled (1, n, D) features), a dimension other than ``dim``, or NaN/inf.
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
    return array.astype(np.float32, copy=False)


def _manifest_by_npy(root: Path) -> dict[str, dict]:
    # Every rank writes its own manifest. Reruns of ``embed`` may append a file twice; the last
    # record describes the file on disk.
    records: dict[str, dict] = {}
    for path in manifest_files(root):
        for record in read_jsonl(path):
            if "npy" in record:
                records.pop(str(record["npy"]), None)  # re-inserted last: dict order = write order
                records[str(record["npy"])] = record
    return records


def _model_of(records: list[dict], root: Path) -> tuple[list[str], str | None, str | None, str | None]:
    """(sorted model ids, latest id, fingerprint, input root) of the records of the loaded files.

    Several fingerprints, or several ids without fingerprints, mean the folder mixes models:
    ``InputError``. One fingerprint under several ids is one model that moved; the latest id
    (the last record of the last manifest) is where it was found most recently.
    """
    ids = sorted({str(r["model"]) for r in records if r.get("model")})
    prints = sorted({str(r["model_fingerprint"]) for r in records if r.get("model_fingerprint")})
    if len(prints) > 1 or (not prints and len(ids) > 1):
        raise InputError(root, f"embeddings from several models in one folder: {', '.join(prints or ids)}")
    latest = next((r for r in reversed(records) if r.get("model")), {})
    return ids, latest.get("model"), (prints or [None])[0], latest.get("input_root")


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
    files = find_npy_files(root)
    if not files:
        raise InputError(root, "no .npy embeddings found in this folder")
    manifest = _manifest_by_npy(root)
    keys, paths, npys, modalities, rows, errors, details = [], [], [], [], [], [], []
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
        record = manifest.get(npy, {})
        keys.append(npy[: -len(".npy")])
        npys.append(npy)
        paths.append(str(record.get("path", npy)))
        modalities.append(record.get("modality"))
        details.append({name: record.get(name) for name in ("n_items", "sha256", "model")})
        rows.append(vector)
    if not rows:
        raise InputError(root, f"no readable embeddings ({len(errors)} bad files, first: {errors[0]})")
    loaded = set(npys)
    records = [r for n, r in manifest.items() if n in loaded]
    models, model, fingerprint, input_root = _model_of(records, root)
    return EmbeddingSet(
        root,
        keys,
        paths,
        npys,
        modalities,
        np.stack(rows),
        models,
        errors,
        model,
        fingerprint,
        input_root,
        details,
    )
