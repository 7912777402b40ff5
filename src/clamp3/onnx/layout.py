"""The on-disk form of an exported model, and its checks; imports neither torch nor onnx.

An export directory holds::

    config.json        the model's architecture (as a save_pretrained directory)
    tokenizer.json     the text tokenizer (when the model has a text tower)
    onnx.json          this manifest: format, precision, opset, exporter, the source model's id
                       and fingerprint, and per tower its graph file(s) with sizes and digests
                       and the measured agreement with torch at export time
    text.onnx ...      one graph per exported tower, its weights in ``<graph>.data`` (external
                       data, which ONNX Runtime memory-maps; exports made before that hold
                       them inside the graph, which still loads, with a copy in memory)

Every file is checked when the directory is loaded (size and a sampled digest, ~1 MiB read),
so a truncated, replaced or mismatched file is
refused with its name instead of giving wrong vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp3.utils.errors import CheckpointError

MANIFEST_NAME = "onnx.json"
SAMPLE_BLOCKS = 16  # evenly spaced blocks hashed per file, besides its size
BLOCK_BYTES = 1 << 16
FORMAT = "clamp3-onnx"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8", "fp16")
TOWER_MODALITIES = ("text", "symbolic", "audio")
# Graphs an export may hold: the towers, and MERT-v1-95M, the audio front-end (always fp32).
GRAPHS = (*TOWER_MODALITIES, "mert")
OPSET = 18  # ONNX opset of every graph (LayerNormalization is native from 17; the torch exporter's own)

# Graph inputs per tower: (inputs, attention_mask); outputs are the same for every tower.
INPUT_NAMES = {
    "text": ("input_ids", "attention_mask"),
    "symbolic": ("patch_ids", "attention_mask"),
    "audio": ("feature_rows", "attention_mask"),
    "mert": ("windows",),
}
OUTPUT_NAMES = ("segment_embedding", "last_hidden_state")
MERT_OUTPUT_NAMES = ("layer_means",)  # (13, B, 768): each hidden state's time mean


def is_onnx_directory(path: str | os.PathLike) -> bool:
    """True for a directory written by ``clamp3 export-onnx`` (it holds ``onnx.json``)."""
    return (Path(path) / MANIFEST_NAME).is_file()


def sampled_digest(path: Path) -> str:
    """16 hex digits from a file's size and 16 evenly spaced 64 KiB blocks: ~1 MiB read
    whatever the size (a 1.1 GB graph opens in milliseconds), and different for a truncated,
    re-exported or overwritten file in practice."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for i in range(SAMPLE_BLOCKS):
            handle.seek(max(0, size - BLOCK_BYTES) * i // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()[:16]


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest stores for one file: its size and sampled digest."""
    return {"size": path.stat().st_size, "digest": sampled_digest(path)}


def text_digest(path: Path) -> str:
    """Full sha256 of a small file (config.json), 16 hex digits."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class TowerEntry:
    """One exported tower: ``graph`` (file name), ``files`` (name -> size/digest, the graph and
    its external data), ``check`` (agreement with torch measured at export)."""

    graph: str
    files: dict[str, dict[str, Any]]
    check: dict[str, float] = field(default_factory=dict)


@dataclass
class Manifest:
    precision: str
    opset: int
    exporter: str
    source_id: str
    fingerprint: str
    config_digest: str
    towers: dict[str, TowerEntry]
    tokenizer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "precision": self.precision,
            "opset": self.opset,
            "exporter": self.exporter,
            "source": {"id": self.source_id, "fingerprint": self.fingerprint},
            "config_digest": self.config_digest,
            "tokenizer": self.tokenizer,
            "towers": {m: vars(t) for m, t in self.towers.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: Path) -> Manifest:
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: not a clamp3 ONNX manifest of version {FORMAT_VERSION} "
                f"(format {data.get('format')!r}, version {data.get('version')!r})"
            )
        try:
            towers = {m: TowerEntry(**t) for m, t in data["towers"].items()}
            manifest = cls(
                data["precision"],
                int(data["opset"]),
                data["exporter"],
                data["source"]["id"],
                data["source"]["fingerprint"],
                data["config_digest"],
                towers,
                data.get("tokenizer"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from exc
        if manifest.precision not in PRECISIONS or not set(towers) <= set(GRAPHS):
            raise CheckpointError(f"{where}: unknown precision or tower in the manifest")
        return manifest


def read_manifest(directory: str | os.PathLike) -> Manifest:
    """Read and check ``onnx.json``, ``config.json`` and every graph file it lists.

    Raises ``CheckpointError`` naming the first file that is missing, has another size or
    digest, or (config.json) is not the one the graphs were exported with.
    """
    root = Path(directory)
    where = root / MANIFEST_NAME
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{where}: unreadable manifest ({exc})") from exc
    manifest = Manifest.from_dict(data, where)
    config = root / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{config}: missing (an ONNX export needs the config it was made from)")
    if text_digest(config) != manifest.config_digest:
        raise CheckpointError(f"{config}: not the config these graphs were exported with (digest differs)")
    for entry in manifest.towers.values():
        for name, record in entry.files.items():
            check_file(root / name, record)
    return manifest


def check_file(path: Path, record: dict[str, Any]) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in {MANIFEST_NAME})")
    size = path.stat().st_size
    if size != record.get("size"):
        raise CheckpointError(
            f"{path}: {size} bytes, the export wrote {record.get('size')} (truncated or replaced)"
        )
    if sampled_digest(path) != record.get("digest"):
        raise CheckpointError(f"{path}: content differs from what the export wrote (corrupted or replaced)")


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    from clamp3.utils.io import write_json_atomic

    target = directory / MANIFEST_NAME
    write_json_atomic(target, manifest.to_dict())
    return target
