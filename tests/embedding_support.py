"""Embedding folders written by the tests through the package's one manifest writer."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from clamp3.formats import ManifestRecord, append_record, log_names


def manifest_record(
    path: str, npy: str, modality: str = "symbolic", model: str = "m", fingerprint: str = "m:0", **fields
) -> ManifestRecord:
    """A record as ``clamp3 embed`` writes it; bookkeeping fields get placeholder values."""
    defaults = dict(
        n_items=1, shape=(1, 4), sha256="0" * 64, size=0, mtime_ns=0, pooled=True, input_root="/in"
    )
    return ManifestRecord(
        path, npy, modality, model=model, model_fingerprint=fingerprint, **{**defaults, **fields}
    )


def write_manifest(root: Path, records: Iterable[ManifestRecord], rank: int = 0) -> Path:
    """Append ``records`` to ``root``'s manifest of ``rank``; returns its path."""
    manifest = root / log_names(rank)[0]
    for record in records:
        append_record(manifest, record)
    return manifest


def write_embedding_folder(
    root: Path, rows: Iterable[tuple[str, str | None, np.ndarray]], model: str = "m", fingerprint: str = "m:0"
) -> Path:
    """``rows`` = (input relpath, modality or None for no manifest record, vector (D,)): one
    (1, D) float32 ``.npy`` each, as ``clamp3 embed`` writes them, and their manifest."""
    records = []
    for rel, modality, vector in rows:
        npy = rel.rsplit(".", 1)[0] + ".npy"
        (root / npy).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / npy, np.asarray(vector, np.float32)[None])
        if modality is not None:
            records.append(manifest_record(rel, npy, modality, model, fingerprint))
    write_manifest(root, records)
    return root


class InMemoryModel:
    """Base of the tests' stand-ins for ``Clamp3Model``: what :mod:`clamp3.model_identity`
    reads of a model built in memory (no weight source, no tensors)."""

    weight_source = None
    config = SimpleNamespace(name="fake")

    def state_dict(self) -> dict:
        return {}

    # What the evaluation item loader calls (through ``clamp3.encode.Preparer``): a file is
    # "prepared" as its path and embedded by the stand-in's own ``encode_files``.
    def prepare_file(self, path, modality=None, timeout=None):
        from clamp3.inputs import Prepared, modality_of

        return Prepared(modality_of(path), path)

    def embed_prepared(self, items, batch_size=32, pooled=True):
        return list(self.encode_files([item.data for item in items], normalize=False))
