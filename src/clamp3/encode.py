"""Raw inputs -> embeddings: modality detection, preparation, length-sorted batching.

``encode(model, inputs)`` takes file paths and strings and returns one float32 row per input,
in input order. Preparation per modality:

=============================================  ===========================================
input                                          prepared as
=============================================  ===========================================
plain string (not a path)                      text query -> token ids
``.txt``                                       lines, deduplicated in order, joined by ``</s>``
``.xml .musicxml .mxl .abc .mid .midi .mtf``   patches (``clamp3.preprocess.load_symbolic``)
``.wav .flac .mp3 .ogg``                       audio feature rows (the model's audio front-end)
``.npy``                                       precomputed audio feature rows (official MERT .npy)
=============================================  ===========================================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.config import SymbolicTowerConfig
from clamp3.utils.errors import InputError

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model

TEXT_EXTENSIONS = frozenset({".txt"})
SYMBOLIC_EXTENSIONS = frozenset({".xml", ".musicxml", ".mxl", ".abc", ".mid", ".midi", ".mtf"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg"})
FEATURE_EXTENSIONS = frozenset({".npy"})
FILE_EXTENSIONS = TEXT_EXTENSIONS | SYMBOLIC_EXTENSIONS | AUDIO_EXTENSIONS | FEATURE_EXTENSIONS

Input = str | os.PathLike


@dataclass
class Prepared:
    """One input ready for a tower: token ids (n,), patches (n, 64) or feature rows (n, F)."""

    modality: str
    data: np.ndarray

    @property
    def n_items(self) -> int:
        """Elements the tower sees, special ones included (audio: rows + the two zero rows)."""
        return len(self.data) + (2 if self.modality == "audio" else 0)


def is_path_like(x: Input) -> bool:
    """Paths are ``os.PathLike`` objects, existing files, or whitespace-free strings ending in a
    supported extension (so a missing file is reported instead of embedded as text)."""
    if isinstance(x, os.PathLike):
        return True
    if os.path.isfile(x):
        return True
    return not any(c.isspace() for c in x) and Path(x).suffix.lower() in FILE_EXTENSIONS


def modality_of_path(path: Input) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in TEXT_EXTENSIONS:
        return "text"
    if suffix in SYMBOLIC_EXTENSIONS:
        return "symbolic"
    if suffix in AUDIO_EXTENSIONS | FEATURE_EXTENSIONS:
        return "audio"
    raise InputError(
        path, f"unsupported file type {suffix or '(none)'}; supported: {', '.join(sorted(FILE_EXTENSIONS))}"
    )


def detect_modality(x: Input) -> str:
    """``"text"``, ``"symbolic"`` or ``"audio"`` for a path (by extension) or a text string."""
    return modality_of_path(x) if is_path_like(x) else "text"


def read_text_file(path: Input) -> str:
    from clamp3.tokenizer import join_text_lines

    try:
        raw = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from exc
    text = join_text_lines(raw.split("\n"))
    if not text:
        raise InputError(path, "the text file is empty")
    return text


def read_feature_file(path: Input, feature_dim: int) -> np.ndarray:
    """An official MERT ``.npy`` ((1, n, F) or (n, F)) -> (n, F) float32."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy array ({exc})") from exc
    if array.ndim not in (2, 3) or array.shape[-1] != feature_dim or array.size == 0:
        raise InputError(path, f"expected audio features of shape (1, n, {feature_dim}), got {array.shape}")
    array = array.reshape(-1, feature_dim).astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(path, "audio features contain NaN or infinity")
    return array


def prepare_symbolic_file(path: Input, config: SymbolicTowerConfig) -> Prepared:
    """Top-level (picklable) so worker processes can run it."""
    from clamp3.preprocess import load_symbolic

    return Prepared("symbolic", load_symbolic(path, config))


class Preparer:
    """Turns inputs into :class:`Prepared` items for one model; loads the tokenizer and the
    audio front-end on first need. ``executor`` (optional) converts symbolic files in parallel."""

    def __init__(self, model: Clamp3Model, executor: Executor | None = None):
        self.model = model
        self.executor = executor

    def prepare(self, x: Input, modality: str | None = None) -> Prepared:
        modality = modality or detect_modality(x)
        if modality == "text":
            text = read_text_file(x) if is_path_like(x) else str(x)
            if not text.strip():
                raise InputError("<query>", "empty text")
            return Prepared("text", np.asarray(self.model.tokenizer.encode(text), dtype=np.int64))
        if not os.path.isfile(x):
            raise InputError(x, "no such file")
        if modality == "symbolic":
            return prepare_symbolic_file(x, self.model.config.tower("symbolic"))
        if modality == "audio":
            dim = self.model.config.tower("audio").feature_dim
            if Path(x).suffix.lower() == ".npy":
                return Prepared("audio", read_feature_file(x, dim))
            return Prepared("audio", np.asarray(self.model.audio_frontend.features_from_file(x), np.float32))
        raise ValueError(f"unknown modality {modality!r}")

    def prepare_many(
        self, inputs: Sequence[Input], modality: str | None = None
    ) -> Iterable[Prepared | InputError]:
        """Prepared items (or the ``InputError`` of a bad input) in input order."""
        futures = {}
        if self.executor is not None:
            cfg = self.model.config.symbolic
            for i, x in enumerate(inputs):
                if cfg is not None and (modality or detect_modality(x)) == "symbolic" and os.path.isfile(x):
                    futures[i] = self.executor.submit(prepare_symbolic_file, x, cfg)
        for i, x in enumerate(inputs):
            try:
                yield futures[i].result() if i in futures else self.prepare(x, modality)
            except InputError as exc:
                yield exc


def embed_prepared(
    model: Clamp3Model, items: Sequence[Prepared], batch_size: int = 32, pooled: bool = True
) -> list[np.ndarray]:
    """Global vectors (D,) (or last hidden states (n, H) when not pooled) for prepared items of
    any mix of modalities, in input order."""
    from clamp3.embedding import embed_items, prepare_audio, prepare_patches, prepare_text

    out: list[np.ndarray | None] = [None] * len(items)
    for modality in ("text", "symbolic", "audio"):
        idx = [i for i, item in enumerate(items) if item.modality == modality]
        if not idx:
            continue
        if modality == "audio":
            dim = model.config.tower("audio").feature_dim
            tensors = [prepare_audio(items[i].data, dim) for i in idx]
        elif modality == "symbolic":
            tensors = [prepare_patches(items[i].data) for i in idx]
        else:
            tensors = [prepare_text(items[i].data) for i in idx]
        for i, vector in zip(idx, embed_items(model, modality, tensors, pooled, batch_size), strict=True):
            out[i] = vector
    return out  # type: ignore[return-value]


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def encode(
    model: Clamp3Model,
    inputs: Sequence[Input] | Input,
    modality: str | None = None,
    batch_size: int = 32,
    normalize: bool = True,
    show_progress: bool = False,
    chunk_size: int = 256,
) -> np.ndarray:
    """Embed paths and strings -> float32 (N, D), L2-normalised unless ``normalize=False``.

    ``modality`` forces one modality for every input (e.g. ``"text"`` for a string that looks
    like a file name). Inputs are prepared and embedded ``chunk_size`` at a time, so memory
    stays bounded for long lists; within a chunk segments are sorted by length and batched
    with dynamic padding. The first bad input raises :class:`InputError` naming it.
    """
    from tqdm.auto import tqdm

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    preparer = Preparer(model)
    out = np.zeros((len(inputs), model.config.projection_dim), dtype=np.float32)
    bar = tqdm(total=len(inputs), desc="encode", unit="item", disable=not show_progress)
    for lo in range(0, len(inputs), chunk_size):
        chunk = inputs[lo : lo + chunk_size]
        items = []
        for item in preparer.prepare_many(chunk, modality):
            if isinstance(item, InputError):
                raise item
            items.append(item)
        out[lo : lo + len(chunk)] = np.stack(embed_prepared(model, items, batch_size))
        bar.update(len(chunk))
    bar.close()
    return normalize_rows(out) if normalize else out
