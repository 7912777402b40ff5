"""The embedding folder's manifest: one versioned record, one writer, one reader.

``clamp3 embed`` writes, per embedded file, one JSON line to ``OUT/manifest.jsonl`` (rank K > 0
of a distributed run: ``OUT/manifest.rank-K.jsonl``); ``index``, ``eval``/``probe``/``zero-shot``/
``gen-score`` and ``serve`` (through the index) read it here. Fields (:class:`ManifestRecord`):

    version            MANIFEST_VERSION (records without one were written before versions, same fields)
    path               the input file, relative to ``input_root``, ``/``-separated
    npy                its ``.npy``, relative to the embedding folder
    modality           "text", "symbolic" or "audio"
    n_items            segments (symbolic patches / audio windows / text chunks) encoded
    shape              the stored array's shape: [1, D] pooled, [1, n, H] unpooled
    sha256, size, mtime_ns   the input file when it was embedded (a rerun skips unchanged files)
    model, model_fingerprint the model (see :mod:`clamp3.model_identity`)
    pooled             whether the vector is the pooled, projected embedding
    input_root         absolute path of the embedded folder
    caption, captioner only for an image: the caption its vector encodes and the image-to-text
                       model that wrote it (docs/images.md); absent from other records

A rerun appends a new record for a re-embedded file; the last record of a file wins. Only
``embed --prune`` rewrites a manifest (:func:`write_manifest_file`), dropping files gone from
the input. The errors of every stage (``errors.jsonl``) have their own one format:
:mod:`clamp3.utils.errorlog`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from clamp3.model_identity import ModelIdentity, require_same_model
from clamp3.utils.errors import InputError
from clamp3.utils.io import append_jsonl, json_text, read_jsonl, write_text_atomic

MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class ManifestRecord:
    """One embedded file (fields in the module docstring)."""

    path: str
    npy: str
    modality: str
    n_items: int
    shape: tuple[int, ...]
    sha256: str
    size: int
    mtime_ns: int
    model: str
    model_fingerprint: str
    pooled: bool
    input_root: str
    caption: str | None = None
    captioner: str | None = None
    version: int = MANIFEST_VERSION

    OPTIONAL: ClassVar[tuple[str, ...]] = ("caption", "captioner")  # written only when set

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.model, self.model_fingerprint)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["shape"] = list(self.shape)
        for name in self.OPTIONAL:
            if data[name] is None:
                del data[name]
        return {"version": data.pop("version"), **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str | os.PathLike) -> ManifestRecord:
        """Parse one line's object; ``InputError`` naming ``where`` for a missing field or a
        version newer than this package reads."""
        version = data.get("version", 0)
        if not isinstance(version, int) or version > MANIFEST_VERSION:
            raise InputError(where, f"manifest version {version!r}: written by a newer clamp3; upgrade it")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "version"]
        missing = [name for name in names if name not in data and name not in cls.OPTIONAL]
        if missing:
            label = data.get("npy", data.get("path", "?"))
            raise InputError(
                where,
                f"record {label!r} lacks {', '.join(missing)}: written by another tool or an older "
                "clamp3 (embed again with --overwrite)",
            )
        fields = {name: data.get(name) for name in names}
        fields["shape"] = tuple(fields["shape"])
        return cls(**fields, version=version)


def log_names(rank: int) -> tuple[str, str]:
    """(manifest, errors log) file names of rank ``rank`` of a distributed ``embed``."""
    suffix = "" if rank == 0 else f".rank-{rank}"
    return f"manifest{suffix}.jsonl", f"errors{suffix}.jsonl"


def manifest_rank(manifest: Path) -> int | None:
    """0 for ``manifest.jsonl``, K for ``manifest.rank-K.jsonl``, None for other names."""
    if manifest.name == MANIFEST_NAME:
        return 0
    middle = manifest.name.removeprefix("manifest.rank-").removesuffix(".jsonl")
    return int(middle) if middle.isdigit() else None


def manifest_files(folder: str | os.PathLike) -> list[Path]:
    """``manifest.jsonl`` and every ``manifest.rank-K.jsonl`` of ``folder``, in rank order."""
    found = [(manifest_rank(p), p) for p in Path(folder).glob("manifest*.jsonl")]
    return [p for rank, p in sorted((r, p) for r, p in found if r is not None)]


def append_record(manifest: str | os.PathLike, record: ManifestRecord) -> None:
    """The one writer: one flushed line (see :func:`clamp3.utils.io.append_jsonl`)."""
    append_jsonl(manifest, record.to_json())


def write_manifest_file(manifest: str | os.PathLike, records: list[ManifestRecord]) -> None:
    """Replace ``manifest`` with ``records`` in one atomic write (``embed --prune``)."""
    write_text_atomic(manifest, "".join(json_text(record.to_json()) + "\n" for record in records))


def read_manifest_file(manifest: str | os.PathLike) -> list[ManifestRecord]:
    return [ManifestRecord.from_json(data, manifest) for data in read_jsonl(manifest)]


def read_manifest(folder: str | os.PathLike) -> list[ManifestRecord]:
    """The one reader: every rank's records of ``folder``, rank by rank in write order
    (``[]`` without a manifest, e.g. the official extractor's output)."""
    return [record for path in manifest_files(folder) for record in read_manifest_file(path)]


def is_embedding_folder(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a clamp3 manifest (its first line has ``path`` and ``npy``)."""
    for manifest in manifest_files(folder):
        with open(manifest, encoding="utf-8", errors="replace") as handle:
            try:
                first = json.loads(handle.readline())
            except ValueError:
                continue
        if isinstance(first, dict) and "npy" in first and "path" in first:
            return True
    return False


def folder_identity(
    records: list[ManifestRecord], where: str | os.PathLike, way_out: str = "embed into separate folders"
) -> ModelIdentity | None:
    """The one model of an embedding folder's ``records`` (``None`` when there are none).

    A model that moved between runs keeps its fingerprint: the latest record's id is where it
    was found last. Records of several models raise :class:`~clamp3.model_identity.ModelMismatch`.
    """
    if not records:
        return None
    latest = records[-1].identity
    for identity in dict.fromkeys(record.identity for record in records):
        require_same_model(
            (f"the embeddings of {where}", identity),
            ("others in the same folder", latest),
            where,
            way_out=way_out,
        )
    return latest


def load_folder_identity(folder: str | os.PathLike) -> ModelIdentity | None:
    """:func:`folder_identity` of every record of ``folder``'s manifests."""
    return folder_identity(read_manifest(folder), folder)
