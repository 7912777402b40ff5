"""Which model made a set of vectors, and the one rule that says whether two sets are comparable.

Vectors of two CLaMP 3 checkpoints live in different spaces: an index, an embedding folder, a
probe or a score that mixes them gives numbers that look valid and mean nothing. Every stage
therefore records a :class:`ModelIdentity` beside its vectors (``manifest.jsonl`` of
``clamp3 embed``, ``meta.json`` of an index, ``probe.json``) and every stage that combines two
sets calls :func:`require_same_model`: ``embed`` into an existing folder, ``index --append``,
``serve`` (its model against its index), ``search`` (a warning), ``eval`` and ``score`` (two
embedding folders), ``probe predict``,
``zero-shot`` and ``gen-score`` with embedding folders.

**The fingerprint** (``"<config name>:s1-<16 hex digits>"``) is a SHA-256 over every tensor of the
model, in name order: its name, its shape, and up to 9 windows of up to 64 values spread along
it (the start of 8 evenly spaced rows and of the last along the first dimension; runs for a 1-d
tensor), as float32. It hashes *values*, not file bytes, so the same weights give the same
fingerprint however they were loaded (an official ``.pth``, its converted directory, a copy
elsewhere, a model built in memory), and it reads a few MB whatever the checkpoint's size (a
1.8 GB model: 599 tensors, 0.4 s; towers not loaded yet are read from the weight
source, never built). Retrained or fine-tuned weights change the sampled values of every
trained tensor. A loaded model is fingerprinted from its weight source (the stored values), so
the load's device and dtype change nothing, and weights changed in memory after loading are
not seen: save them and load the saved copy. A model built in memory hashes its own tensors.

**The rule** (:func:`same_model`): two identities are the same model when their fingerprints
are equal; without a fingerprint of one scheme on both sides, when their ids (a tag or an
absolute path, as :func:`locate` records them) are equal; with neither, it cannot be told
(``None``). ``s1`` is the scheme above; records written before it carry ``"<config name>:<16 hex>"``
(bytes sampled from the weights file), which is not comparable with ``s1``, so for them the ids
decide.

**The refusal** (:func:`require_same_model`): a mismatch raises :class:`ModelMismatch` (an
``InputError`` naming the place, both models and the way out). Stages that compare two sets
accept ``--allow-model-mismatch`` (the mismatch is then logged and reported as ``"mismatch"``);
stages that store vectors (an embedding folder, an index) never mix two models, and name
``--overwrite`` or a new folder instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)

OVERRIDE_FLAG = "--allow-model-mismatch"
WINDOWS = 8  # sampled windows per tensor
WINDOW_VALUES = 64  # values per window
SCHEME = "s1"  # the fingerprint's recipe (module docstring); another recipe gets another name


@dataclass(frozen=True)
class ModelIdentity:
    """``id``: an official tag (``"saas"``) or the absolute path of the model directory or
    checkpoint file (``""`` for a model that was never saved). ``fingerprint``: see the module
    docstring (``None`` only where a record predates fingerprints or names no model)."""

    id: str = ""
    fingerprint: str | None = None

    def describe(self) -> str:
        name = self.id or "(unsaved)"
        return f"{name} [fingerprint {self.fingerprint}]" if self.fingerprint else name

    def to_json(self) -> dict[str, str | None]:
        return {"id": self.id, "fingerprint": self.fingerprint}

    @classmethod
    def from_fields(cls, model_id: object, fingerprint: object) -> ModelIdentity | None:
        """From the two recorded fields (manifest ``model`` / ``model_fingerprint``, index
        ``meta.json`` the same, ``probe.json`` ``id`` / ``fingerprint``); ``None`` when both are empty."""
        ident, print_ = str(model_id or ""), (str(fingerprint) if fingerprint else None)
        return cls(ident, print_) if ident or print_ else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ModelIdentity | None:
        return cls.from_fields(data.get("id"), data.get("fingerprint")) if data else None


class ModelMismatch(InputError):
    """Two sets of vectors come from different models (``path``: where; ``reason``: both models)."""


def _head(part: Any) -> np.ndarray:
    return part.detach().reshape(-1)[:WINDOW_VALUES].to("cpu").float().numpy()


def _windows(tensor: Any, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of the sampled windows of a torch tensor or a safetensors slice (both
    slice along the first dimension without reading the rest)."""
    if not shape:
        return _head(tensor[:] if hasattr(tensor, "get_shape") else tensor)
    n = shape[0]
    parts = []
    for start in sorted({n * i // WINDOWS for i in range(WINDOWS)} | {max(n - 1, 0)}):
        stop = start + (WINDOW_VALUES if len(shape) == 1 else 1)
        parts.append(_head(tensor[start:stop]) if n else np.zeros(0, np.float32))
    return np.concatenate(parts)


def _tensors(model: Clamp3Model) -> list[tuple[str, tuple[int, ...], Any]]:
    """(name, shape, tensor or safetensors slice) of every weight. The stored values when the
    model has a weight source (so the load's device, dtype and lazily built towers change
    nothing; a safetensors file is opened for slicing, as its source's ``get`` reads whole
    tensors), the module's own tensors for a model built in memory."""
    source = model.weight_source
    if source is None:
        return [(name, tuple(t.shape), t) for name, t in model.state_dict().items()]
    if source.directory is not None:
        from safetensors import safe_open

        handle = safe_open(source.origin, framework="pt")
        slices = {n: handle.get_slice(n) for n in source.names}
        return [(n, tuple(s.get_shape()), s) for n, s in slices.items()]
    return [(n, tuple(source.get(n).shape), source.get(n)) for n in source.names]


def fingerprint(model: Clamp3Model) -> str:
    """``"<config name>:s1-<16 hex digits>"`` of the model's weights (see the module docstring)."""
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, shape, tensor in sorted(_tensors(model), key=lambda item: item[0]):
            digest.update(f"{name}{list(shape)}".encode())
            digest.update(_windows(tensor, shape).astype("<f4").tobytes())
    return f"{model.config.name}:{SCHEME}-{digest.hexdigest()[:16]}"


def locate(source: str | os.PathLike) -> str:
    """What to record for a ``--model`` value: an existing path made absolute, else the value
    itself (a tag such as ``saas``, which resolves from any folder)."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else str(source)


def identify(model: Clamp3Model, source: str | os.PathLike | None = None) -> ModelIdentity:
    """The identity of a model; ``source`` is what it was loaded from (kept as the id: a tag
    stays a tag), by default the directory or file it read its weights from. An ONNX export
    (:class:`clamp3.onnx.OnnxModel`) carries the fingerprint of the model it was exported from:
    its vectors are that model's. A :class:`clamp3.pipeline.Clamp3Pipeline` is identified by its model."""
    model = getattr(model, "model", model)  # a pipeline's vectors are its model's
    exported = getattr(model, "identity", None)
    if callable(exported):
        own = exported()
        return ModelIdentity(locate(source) if source is not None else own.id, own.fingerprint)
    weights = model.weight_source
    if source is not None:
        model_id = locate(source)
    elif weights is not None:
        model_id = locate(weights.directory or weights.origin)
    else:
        model_id = ""
    return ModelIdentity(model_id, fingerprint(model))


def _scheme(fingerprint: str) -> str:
    digest = fingerprint.rsplit(":", 1)[-1]
    return digest.split("-", 1)[0] if "-" in digest else ""


def same_model(a: ModelIdentity, b: ModelIdentity) -> bool | None:
    """The one rule (module docstring): fingerprints of one scheme decide, else ids, else ``None``."""
    if a.fingerprint and b.fingerprint and _scheme(a.fingerprint) == _scheme(b.fingerprint):
        return a.fingerprint == b.fingerprint
    if a.id and b.id:
        return a.id == b.id
    return None


def require_same_model(
    first: tuple[str, ModelIdentity | None],
    second: tuple[str, ModelIdentity | None],
    where: str | os.PathLike,
    *,
    allow_mismatch: bool = False,
    way_out: str = f"pass {OVERRIDE_FLAG} to proceed anyway",
) -> str:
    """Check two ``(description, identity)`` pairs: ``"same"``, ``"unchecked"`` or ``"mismatch"``.

    A mismatch raises :class:`ModelMismatch` (naming ``where``, both models and ``way_out``)
    unless ``allow_mismatch``, when it is logged and ``"mismatch"`` returned. A missing
    identity, or two without a comparable field, give ``"unchecked"`` (logged at INFO).
    """
    (what_a, a), (what_b, b) = first, second
    verdict = None if a is None or b is None else same_model(a, b)
    if verdict is None:
        missing = [what for what, identity in (first, second) if identity is None]
        why = f"{' and '.join(missing)}: no model recorded" if missing else "no comparable model fields"
        log.info("model consistency not checked for %s (%s)", where, why)
        return "unchecked"
    if verdict:
        return "same"
    assert a is not None and b is not None
    message = (
        f"{what_a} come from model {a.describe()} but {what_b} from model {b.describe()}; "
        "vectors of different models are not comparable"
    )
    if not allow_mismatch:
        raise ModelMismatch(where, f"{message} ({way_out})")
    log.warning("%s: %s (%s given)", where, message, OVERRIDE_FLAG)
    return "mismatch"
