"""The metadata side of an index: the fields every row carries and the ``meta.json`` record.

Shared by both back-ends (:mod:`clamp3.index.backends`) and the catalogue reader.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clamp3.utils.errors import InputError

META_FILE = "meta.json"
FORMAT_VERSION = 2  # 2: backend, columns and per-item metadata; version 1 folders still load
BACKENDS = ("faiss", "milvus")
# The metadata every row carries (besides catalogue columns), with its filter type.
BASE_COLUMNS = {
    "key": "str",
    "path": "str",
    "modality": "str",
    "npy": "str",
    "n_items": "int",
    "sha256": "str",
    "model": "str",
}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_meta(dim: int, kind: str, backend: str, columns: Mapping[str, str], **fields: Any) -> dict[str, Any]:
    """The ``meta.json`` content of a new, empty index."""
    identity = fields.pop("identity", None)  # a ModelIdentity, or model / model_fingerprint
    model, fingerprint = fields.pop("model", None), fields.pop("model_fingerprint", None)
    return {
        "format": FORMAT_VERSION,
        "backend": backend,
        "model": identity.id if identity is not None else model,
        "model_fingerprint": identity.fingerprint if identity is not None else fingerprint,
        "input_root": fields.pop("input_root", None),
        "dimension": int(dim),
        "metric": "cosine",
        "kind": kind,
        "params": {},
        "calibration": {"target_recall@10": fields.pop("target_recall", 0.95), "recall@10": 1.0, "count": 0},
        "columns": dict(columns),
        "count": 0,
        "created": now(),
        "updated": now(),
        **fields,
    }


def entry_of(record: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """A metadata record -> the stored row: base fields (path defaults to the key) + catalogue."""
    key = str(record["key"])
    out: dict[str, Any] = {name: record.get(name) for name in BASE_COLUMNS}
    out["key"], out["path"] = key, str(record.get("path") or key)
    for name in columns:
        out[name] = record.get(name)
    return out


def read_meta(root: Path) -> dict[str, Any]:
    if not (root / META_FILE).is_file():
        raise InputError(root / META_FILE, "missing: not an index folder (build it with `clamp3 index`)")
    try:
        return json.loads((root / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(root / META_FILE, f"unreadable ({exc})") from exc
