"""Which model made a set of embeddings: a location that resolves from anywhere, and a fingerprint.

``clamp3 embed`` records both in every manifest line, ``clamp3 index`` copies them into the
index's ``meta.json``, and ``clamp3 search`` loads the recorded model when none is given. The
location alone is not enough: a relative ``tiny`` only resolves from one folder, and a path can
come to hold other weights. The fingerprint tells "same weights" apart from "same name", so a
rerun of ``embed`` can refuse to mix two models in one folder and ``search`` can warn.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model

SAMPLE_BLOCKS = 16  # evenly spaced blocks hashed besides the size and the safetensors header
BLOCK_BYTES = 1 << 16


@dataclass(frozen=True)
class ModelIdentity:
    """``id``: an official tag (``"saas"``) or the absolute path of the model directory or
    checkpoint file (``""`` for a model that was never saved). ``fingerprint``:
    ``"<config name>:<16 hex digits>"``, equal for equal weights wherever they are stored."""

    id: str
    fingerprint: str


def fingerprint_file(path: str | os.PathLike) -> str:
    """16 hex digits from a weights file's size, its safetensors header (tensor names, shapes,
    offsets) and 16 evenly spaced 64 KiB blocks: ~1 MiB read whatever the file's size, and
    different for retrained weights in practice (every block holds parameters)."""
    file = Path(path)
    size = file.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(file, "rb") as handle:
        if file.suffix == ".safetensors" and size >= 8:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            digest.update(handle.read(min(header_len, size - 8)))
        for i in range(SAMPLE_BLOCKS):
            handle.seek(max(0, size - BLOCK_BYTES) * i // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(BLOCK_BYTES))
    return digest.hexdigest()[:16]


def _fingerprint_parameters(model: Clamp3Model) -> str:
    # A model built in memory has no file: hash the start of every tensor instead.
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def locate(source: str | os.PathLike) -> str:
    """What to record for a ``--model`` value: an existing path made absolute, else the value
    itself (a tag such as ``saas``, which resolves from any folder)."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def identify(model: Clamp3Model, source: str | os.PathLike | None = None) -> ModelIdentity:
    """The identity of a loaded model; ``source`` is what it was loaded from (a tag is kept as
    the id), by default the directory or file the model read its weights from."""
    exported = getattr(model, "identity", None)
    if callable(exported):  # an ONNX export: its directory and the fingerprint of its source model
        own = exported()
        return ModelIdentity(locate(source) if source is not None else own.id, own.fingerprint)
    # The weight source is the model's private record of where it was loaded from; it is the
    # only place that knows the checkpoint file behind a tag or an official .pth.
    weights = getattr(model, "_source", None)
    origin = Path(weights.origin) if weights is not None else None
    if source is not None:
        model_id = locate(source)
    elif model.source_directory is not None:
        model_id = str(Path(model.source_directory).resolve())
    else:
        model_id = str(origin.resolve()) if origin is not None and origin.is_file() else ""
    if origin is not None and origin.is_file():
        digest = fingerprint_file(origin)
    else:
        digest = _fingerprint_parameters(model)
    return ModelIdentity(model_id, f"{model.config.name}:{digest}")
