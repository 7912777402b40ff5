"""The input table: which files clamp3 reads, as which modality, and the readers they share.

=============================================  ==========  ===========================================
extensions                                     modality    prepared as
=============================================  ==========  ===========================================
``.txt``                                       text        lines, deduplicated in order, joined by ``</s>``
``.xml .musicxml .mxl`` / ``.abc``             symbolic    patches (``clamp3.preprocess.load_symbolic``)
``.mid .midi`` / ``.mtf``                      symbolic    patches (MIDI through MTF)
``.wav .flac .ogg .mp3``                       audio       feature rows (the model's audio front-end)
``.npy``                                       audio       precomputed feature rows (official MERT .npy)
``.png .jpg .jpeg .webp``                      text        a caption (``clamp3.captioning``), as text
=============================================  ==========  ===========================================

Every caller (the pipeline, ``clamp3 embed``, the service's uploads, evaluation, the converters,
the audio reader, training and curation) takes its extensions from ``KINDS`` and classifies files
through :func:`kind_of` / :func:`modality_of`, so a file is the same kind everywhere. Adding a
kind is one line in ``KINDS``. The official zero BOS/EOS rows of audio features are added in exactly one
place, :func:`add_boundary_rows`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clamp3.utils.errors import InputError
from clamp3.utils.io import read_text

MODALITIES = ("text", "symbolic", "audio")


@dataclass(frozen=True)
class InputKind:
    """One row of the table: ``name`` (what the file holds), the tower ``modality`` that reads
    it, and its lower-case ``extensions``."""

    name: str
    modality: str
    extensions: tuple[str, ...]


KINDS: tuple[InputKind, ...] = (
    InputKind("text", "text", (".txt",)),
    InputKind("musicxml", "symbolic", (".xml", ".musicxml", ".mxl")),
    InputKind("abc", "symbolic", (".abc",)),
    InputKind("midi", "symbolic", (".mid", ".midi")),
    InputKind("mtf", "symbolic", (".mtf",)),
    InputKind("recording", "audio", (".wav", ".flac", ".ogg", ".mp3")),
    InputKind("features", "audio", (".npy",)),
    # A photo or scan is searched by its caption, as the official clamp3_search.py does.
    InputKind("image", "text", (".png", ".jpg", ".jpeg", ".webp")),
)

# What the trainer and curation read (official implementation §4.1): music already prepared
# as ABC / MTF text or MERT feature arrays; conversion is a stage before them.
PREPARED_KINDS = ("abc", "mtf", "features")

_BY_EXTENSION = {ext: kind for kind in KINDS for ext in kind.extensions}
_PREPARED_BY = {"musicxml": "clamp3 convert", "midi": "clamp3 convert", "recording": "clamp3 extract-audio"}


def unprepared_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no file the trainer and curation read (:data:`PREPARED_KINDS`), naming
    the command that prepares it; None when it is one."""
    kind = _BY_EXTENSION.get(Path(path).suffix.lower())
    if kind is not None and kind.name in PREPARED_KINDS:
        return None
    prepared = "/".join(extensions(kinds=PREPARED_KINDS))
    command = _PREPARED_BY.get(kind.name) if kind is not None else None
    advice = f"; prepare it first with `{command}`" if command else ""
    return f"{str(path)!r} is not a prepared music file ({prepared}){advice}"


def check_modality(modality: str | None) -> None:
    """Refuse a modality argument that is none of :data:`MODALITIES` (``None`` means any):
    ``ValueError``, the caller's mistake, not a bad input."""
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose {', '.join(MODALITIES)}")


def extensions(modality: str | None = None, kinds: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Supported extensions (with the dot), in table order: all, those of one ``modality``,
    and/or those of the named ``kinds``."""
    unknown = set(kinds or ()) - {kind.name for kind in KINDS}
    if unknown:
        raise ValueError(f"unknown input kinds {sorted(unknown)}")
    return tuple(
        ext
        for kind in KINDS
        if (modality is None or kind.modality == modality) and (kinds is None or kind.name in kinds)
        for ext in kind.extensions
    )


def kind_of(path: str | os.PathLike) -> InputKind:
    """The table row of ``path``'s extension; ``InputError(path, ...)`` when it has none."""
    suffix = Path(path).suffix.lower()
    kind = _BY_EXTENSION.get(suffix)
    if kind is None:
        supported = ", ".join(sorted(_BY_EXTENSION))
        raise InputError(path, f"unsupported file type {suffix or '(none)'}; supported: {supported}")
    return kind


def modality_of(path: str | os.PathLike) -> str:
    """``"text"``, ``"symbolic"`` or ``"audio"`` by extension; ``InputError`` if unsupported."""
    return kind_of(path).modality


def is_supported(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in _BY_EXTENSION


# ----------------------------------------------------------------------------- readers
SEPARATOR = "</s>"  # XLM-R's separator token: joins the lines of a multi-line text input


def join_text_lines(lines: Iterable[str]) -> str:
    """The official multi-line text input, made deterministic: non-empty lines, duplicates
    removed keeping the first occurrence (the official uses a ``set``, whose order changes
    from run to run), joined with ``</s>``."""
    seen: dict[str, None] = {}
    for line in lines:
        line = line.rstrip("\r\n")
        if line and line not in seen:
            seen[line] = None
    return SEPARATOR.join(seen)


def not_a_file(path: str | os.PathLike) -> InputError:
    """The error for an input path that is no readable file: a broken link names its target
    (``ls`` lists it, so 'no such file' alone would puzzle), a folder says so."""
    where = Path(path)
    if where.is_symlink() and not where.exists():
        return InputError(path, f"broken symbolic link (to {os.readlink(where)})")
    if where.is_dir():
        return InputError(path, "is a folder, not a file")
    return InputError(path, "no such file")


def read_input_text(path: str | os.PathLike) -> str:
    """The text of a ``.txt``, ``.abc`` or ``.mtf`` input, as every reader of them takes it:
    :func:`clamp3.utils.io.read_text` (UTF-8 with its byte-order mark dropped, which kept would
    open the text, or UTF-16 with a mark; LF line ends), refusing an empty or only-whitespace
    file too, as a typed query of blanks is refused (blank lines among words are kept).
    ``InputError(path, reason)``."""
    text = read_text(path)
    if not text.strip():
        raise InputError(path, "empty file" + (" (only whitespace)" if text else ""))
    return text


def read_text_file(path: str | os.PathLike) -> str:
    """A ``.txt`` input -> one text: non-empty lines, deduplicated in order, joined by ``</s>``
    (the official multi-line text input; a line of blanks among others is kept, as there).
    ``InputError`` as :func:`read_input_text`."""
    return join_text_lines(read_input_text(path).split("\n"))


def check_feature_rows(array: np.ndarray, feature_dim: int, name: str | os.PathLike) -> np.ndarray:
    """Audio feature rows as the official extractor writes them, (1, n, F), or (n, F) -> (n, F)
    float32. Any other shape is refused rather than reshaped: a per-layer (13, n, F) array
    flattened into 13n windows would embed silently and wrongly. ``InputError(name, ...)``."""
    array = np.asarray(array)
    shape = array.shape
    if array.ndim == 3 and shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or shape[-1] != feature_dim or array.size == 0:
        hint = ""
        if len(shape) == 3 and shape[-1] == feature_dim:
            hint = " (one array per layer? the official extractor writes the layer average)"
        raise InputError(
            name,
            f"expected audio features of shape (1, n, {feature_dim}) or (n, {feature_dim}), got {shape}{hint}",
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(name, "audio features contain NaN or infinity")
    return array


def read_feature_file(path: str | os.PathLike, feature_dim: int) -> np.ndarray:
    """An official MERT ``.npy`` ((1, n, F) or (n, F)) -> (n, F) float32 (:func:`check_feature_rows`)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
        raise InputError(path, f"not a readable .npy array ({exc})") from exc
    return check_feature_rows(array, feature_dim, path)


def _integer_ids(values, what: str) -> np.ndarray:
    """``values`` as int64, refusing fractions (a cast would truncate ``5.5`` to ``5``)."""
    array = np.asarray(values)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.array_equal(array, np.floor(array)):
            raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def check_token_ids(ids, vocab_size: int | None = None) -> np.ndarray:
    """A token-id list (with ``<s>`` ... ``</s>``) -> (n,) int64; ``ValueError`` when empty, not
    flat, not integers, or (given ``vocab_size``) outside the text tower's vocabulary."""
    array = _integer_ids(ids, "text ids")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"text ids must be a non-empty flat list, got shape {array.shape}")
    if vocab_size is not None and (array.min() < 0 or array.max() >= vocab_size):
        bad = int(array.min()) if array.min() < 0 else int(array.max())
        raise ValueError(
            f"text ids must lie in [0, {vocab_size - 1}] (the text tower's vocabulary), got {bad}"
        )
    return array


def check_patch_ids(patches: np.ndarray, patch_size: int = 64) -> np.ndarray:
    """(n, patch_size) patch ids -> int64; ``ValueError`` for another shape, values that are
    not integers or an id outside [0, 128)."""
    array = _integer_ids(patches, "patch ids")
    if array.ndim != 2 or array.shape[1] != patch_size or array.shape[0] == 0:
        raise ValueError(f"patches must have shape (n >= 1, {patch_size}), got {array.shape}")
    if array.min() < 0 or array.max() > 127:
        raise ValueError("patch ids must lie in [0, 127]")
    return array


def add_boundary_rows(rows: np.ndarray) -> np.ndarray:
    """(n, F) feature rows -> (n + 2, F) float32 with a zero row before and after: the official
    BOS/EOS of the audio tower (CLaMP 3 §2.3; the official extractor adds them the same way)."""
    rows = np.asarray(rows, dtype=np.float32)
    zero = np.zeros((1, rows.shape[1]), dtype=np.float32)
    return np.concatenate([zero, rows, zero], axis=0)


BOUNDARY_ROWS = 2  # rows add_boundary_rows adds


@dataclass
class Prepared:
    """One input ready for a tower: token ids (n,), patches (n, 64) or feature rows (n, F)
    (without the boundary rows). ``caption``: for an image, the text its ids encode."""

    modality: str
    data: np.ndarray
    caption: str | None = None

    @property
    def n_items(self) -> int:
        """Elements the tower sees, special ones included (audio: rows + the two zero rows)."""
        return len(self.data) + (BOUNDARY_ROWS if self.modality == "audio" else 0)
