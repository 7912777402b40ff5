"""Which model made a set of embeddings, and refusing to compare embeddings of different models.

Vectors of two CLaMP 3 checkpoints live in different spaces: a probe trained on one model's
embeddings, or a cosine between a prompt encoded by one model and a piece embedded by another,
gives numbers that look valid and mean nothing. The classify and gen-score pipelines therefore
compare the model identity of every embedding set they combine and refuse a mismatch unless
the user passes ``--allow-model-mismatch``.

An identity is read from what ``clamp3 embed`` writes in ``manifest*.jsonl`` and from
``probe.json``'s ``data`` block. Manifests have changed over time, so every form is accepted:

* old records: ``"model": "<the --model argument as typed>"`` (a tag such as ``saas`` or a path);
* newer records: ``"model"`` holding an absolute path or tag, with a weight fingerprint either in
  a ``model_fingerprint``-style field beside it or inside ``"model": {"name"|"path"|"tag"|"id": ...,
  "fingerprint"|"sha1"|"sha256"|"hash": ...}``.

Two identities are the same model when both carry a fingerprint and the fingerprints are equal
(a copy of a checkpoint at another path is the same model), otherwise when their names are equal
after normalisation (paths resolved to absolute real paths, tags kept as written). A set with no
identity at all (no manifest, e.g. the official extractor's output) cannot be checked: that is
logged, never refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from clamp3.utils.errors import InputError
from clamp3.utils.io import read_jsonl

log = logging.getLogger(__name__)

OVERRIDE_FLAG = "--allow-model-mismatch"
_NAME_KEYS = ("name", "path", "tag", "id", "source")
_FINGERPRINT_KEYS = ("fingerprint", "sha1", "sha256", "hash", "digest")
# Top-level record fields that may hold the weight fingerprint. A bare "sha256" is the input
# file's hash in embed manifests, so it is never read as a model fingerprint.
_TOP_FINGERPRINT_KEYS = (
    "model_fingerprint",
    "model_sha1",
    "model_sha256",
    "model_hash",
    "weights_fingerprint",
    "fingerprint",
)


@dataclass(frozen=True)
class ModelIdentity:
    """A model's name (tag or path, as recorded) and, when known, a fingerprint of its weights."""

    name: str | None = None
    fingerprint: str | None = None

    def describe(self) -> str:
        name = self.name or "(unnamed)"
        return f"{name} [fingerprint {self.fingerprint[:12]}]" if self.fingerprint else name

    def to_json(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class ModelCheck:
    """What a pipeline knows of the model it encodes text with, and the user's override.

    ``model`` is the identity of the loaded model (``None``: unknown, checks against it are
    skipped); ``allow_mismatch`` turns refusals into warnings (``--allow-model-mismatch``).
    """

    model: ModelIdentity | None = None
    allow_mismatch: bool = False


def _text(value: object) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    return str(value).strip() or None


def identity_from_fields(model: object, extra: Mapping | None = None) -> ModelIdentity | None:
    """Identity from a ``model`` field (string, mapping or ``None``) and the record around it."""
    name = fingerprint = None
    if isinstance(model, Mapping):
        name = next((_text(model[k]) for k in _NAME_KEYS if _text(model.get(k))), None)
        fingerprint = next((_text(model[k]) for k in _FINGERPRINT_KEYS if _text(model.get(k))), None)
    elif model is not None:
        name = _text(model)
    if fingerprint is None and extra:
        fingerprint = next((_text(extra[k]) for k in _TOP_FINGERPRINT_KEYS if _text(extra.get(k))), None)
    if name is None and fingerprint is None:
        return None
    return ModelIdentity(name, fingerprint)


def folder_identity(emb_dir: str | os.PathLike) -> ModelIdentity | None:
    """The one model identity of an embedding folder's manifests (every rank's), or ``None``.

    Raises ``InputError`` when the records name several different models.
    """
    root = Path(emb_dir)
    found: list[ModelIdentity] = []
    for manifest in sorted(root.glob("manifest*.jsonl")):
        for record in read_jsonl(manifest):
            ident = identity_from_fields(record.get("model"), record)
            if ident is None:
                continue
            match = next((k for k, seen in enumerate(found) if same_model(ident, seen) is not False), None)
            if match is None:
                found.append(ident)
            elif ident.fingerprint and not found[match].fingerprint:
                found[match] = ident  # a rerun after the manifest format gained fingerprints
    if len(found) > 1:
        names = ", ".join(i.describe() for i in found)
        raise InputError(root, f"embeddings from several models in one folder: {names}")
    return found[0] if found else None


def probe_identity(info: Mapping) -> ModelIdentity | None:
    """The identity recorded in ``probe.json`` (``data.model_identity``, else ``data.model``)."""
    data = info.get("data") or {}
    if isinstance(data.get("model_identity"), Mapping):
        return identity_from_fields(data["model_identity"])
    return identity_from_fields(data.get("model"), data)


def argument_identity(model_argument: str | os.PathLike | None) -> ModelIdentity | None:
    """Identity of a ``--model`` argument: an existing path made absolute, a tag as written."""
    if model_argument is None:
        return None
    text = str(model_argument)
    path = Path(text).expanduser()
    return ModelIdentity(str(path.resolve()) if path.exists() else text)


def _normal_name(name: str) -> str:
    # Old manifests store a path as typed (maybe relative); resolve it the same way as a
    # --model argument so "ckpt/" and "/abs/ckpt" compare equal when run from the same folder.
    path = Path(name).expanduser()
    looks_like_path = os.sep in name or "/" in name or path.exists()
    return os.path.realpath(path) if looks_like_path else name


def same_model(a: ModelIdentity, b: ModelIdentity) -> bool | None:
    """Whether ``a`` and ``b`` name the same weights (module docstring); ``None`` when they
    share no comparable field (one has only a fingerprint, the other only a name)."""
    if a.fingerprint and b.fingerprint:
        return a.fingerprint == b.fingerprint
    if a.name and b.name:
        return _normal_name(a.name) == _normal_name(b.name)
    return None


def require_same_model(
    first: tuple[str, ModelIdentity | None],
    second: tuple[str, ModelIdentity | None],
    allow_mismatch: bool,
    where: str | os.PathLike,
) -> str:
    """Check two ``(description, identity)`` pairs; return ``"same"``, ``"unchecked"`` or ``"mismatch"``.

    A mismatch raises ``InputError`` (naming ``where``, both models and the override flag)
    unless ``allow_mismatch``, in which case it is logged and ``"mismatch"`` is returned.
    A missing identity on either side, or identities without a comparable field, give
    ``"unchecked"`` (logged at INFO).
    """
    (what_a, a), (what_b, b) = first, second
    if a is None or b is None:
        missing = what_a if a is None else what_b
        log.info("model consistency not checked: no model id recorded for %s", missing)
        return "unchecked"
    verdict = same_model(a, b)
    if verdict is None:
        log.info("model consistency not checked: %s and %s share no comparable field", a, b)
        return "unchecked"
    if verdict:
        return "same"
    message = (
        f"{what_a} come from model {a.describe()} but {what_b} from model {b.describe()}; "
        f"embeddings of different models are not comparable"
    )
    if not allow_mismatch:
        raise InputError(where, f"{message} (pass {OVERRIDE_FLAG} to proceed anyway)")
    log.warning("%s: %s (%s given)", where, message, OVERRIDE_FLAG)
    return "mismatch"
