"""Raw inputs -> embeddings: modality detection, preparation, length-sorted batching.

``encode(model, inputs)`` takes file paths and strings and returns one float32 row per input,
in input order. Preparation per modality:

=============================================  ===========================================
input                                          prepared as
=============================================  ===========================================
plain string (not a path, see below)           text query -> token ids
``.txt``                                       lines, deduplicated in order, joined by ``</s>``
``.xml .musicxml .mxl .abc .mid .midi .mtf``   patches (``clamp3.preprocess.load_symbolic``)
``.wav .flac .mp3 .ogg``                       audio feature rows (the model's audio front-end)
``.npy``                                       precomputed audio feature rows (official MERT .npy)
=============================================  ===========================================

A string counts as a path when it names an existing file with an extension, or has no whitespace
and ends in a supported extension (a missing ``song.mid`` is reported, not embedded as text).
Anything else is a text query, even when a file of that name exists (``waltz`` stays text).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.config import AudioTowerConfig, SymbolicTowerConfig, TextTowerConfig
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
    """True for ``os.PathLike`` objects and for strings that name a file (module docstring)."""
    if isinstance(x, os.PathLike):
        return True
    suffix = Path(x).suffix.lower()
    if not suffix:  # an extension-less file must not shadow a one-word text query
        return False
    if os.path.isfile(x):
        return True
    return not any(c.isspace() for c in x) and suffix in FILE_EXTENSIONS


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
    """An official MERT ``.npy`` ((1, n, F) or (n, F)) -> (n, F) float32.

    Any other shape is refused rather than reshaped: a per-layer (13, n, F) array flattened
    into 13n windows would embed silently and wrongly.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable .npy array ({exc})") from exc
    shape = array.shape
    if array.ndim == 3 and shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or shape[-1] != feature_dim or array.size == 0:
        hint = ""
        if len(shape) == 3 and shape[-1] == feature_dim:
            hint = " (one array per layer? the official extractor writes the layer average)"
        raise InputError(
            path,
            f"expected audio features of shape (1, n, {feature_dim}) or (n, {feature_dim}), got {shape}{hint}",
        )
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(path, "audio features contain NaN or infinity")
    return array


def prepare_symbolic_file(path: Input, config: SymbolicTowerConfig, timeout: float | None = None) -> Prepared:
    """Top-level (picklable) so worker processes can run it. A conversion running longer than
    ``timeout`` seconds (a converter stuck on a pathological file) is an ``InputError``; the
    limit needs the process's main thread (a worker, or the CLI), elsewhere it is not applied."""
    from clamp3.preprocess import load_symbolic
    from clamp3.preprocess.bulk import ConversionTimeout
    from clamp3.utils.workers import time_limit

    try:  # ConversionTimeout is a BaseException: converters' ``except Exception`` let it pass
        with time_limit(timeout, ConversionTimeout):
            return Prepared("symbolic", load_symbolic(path, config))
    except ConversionTimeout:
        raise InputError(str(path), f"conversion took longer than {timeout:g} s (timeout)") from None


def _label(x: Input) -> str:
    """How an input is named in errors: a path as given, a text query quoted and shortened."""
    if is_path_like(x):
        return str(x)
    text = str(x)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _failed(x: Input, exc: BaseException) -> InputError:
    """An unexpected exception while preparing ``x``, as a per-input error (cause kept for -v)."""
    error = InputError(_label(x), f"preparation failed ({type(exc).__name__}: {exc})")
    error.__cause__ = exc
    return error


class Preparer:
    """Turns inputs into :class:`Prepared` items for one model; loads the tokenizer and the
    audio front-end on first need. With ``workers`` > 0, MusicXML/MIDI/ABC files are converted
    in that many forked processes (started on first need; :meth:`close` stops them).

    A worker that dies (a converter crash, the OOM killer) breaks the whole pool: the pool is
    restarted and each file that was in it is retried alone, so only the file that kills its
    worker fails and the run goes on.
    """

    def __init__(self, model: Clamp3Model, workers: int = 0, timeout: float | None = None):
        self.model = model
        self.workers = workers
        self.timeout = timeout or None  # seconds per symbolic conversion; 0/None: no limit
        self._pool: Executor | None = None
        self._generation = 0  # bumped on each restart: tells a broken old future from a new one

    def close(self, now: bool = False) -> None:
        """Stop the workers: after their current files, or ``now`` (their work is lost)."""
        if self._pool is not None:
            if now:
                from clamp3.utils.workers import stop_workers

                stop_workers(self._pool)
            else:
                self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Interrupted (Ctrl-C, SystemExit): do not wait minutes for the files in the workers.
        self.close(now=exc_type is not None and not issubclass(exc_type, Exception))

    def _tower(self, x: Input, modality: str) -> TextTowerConfig | SymbolicTowerConfig | AudioTowerConfig:
        if modality not in self.model.config.modalities:
            cfg = self.model.config
            raise InputError(
                _label(x),
                f"model {cfg.name!r} has no {modality} tower (it has: {', '.join(cfg.modalities)}), "
                f"so it cannot embed {modality} inputs",
            )
        return self.model.config.tower(modality)

    def _text(self, x: Input, forced: bool) -> str:
        # A forced "text" modality means "this string is the text", unless the caller passed a
        # path object or an existing .txt file; detected text is a file only if it looks like one.
        if isinstance(x, os.PathLike):
            return read_text_file(x)
        is_txt = Path(x).suffix.lower() in TEXT_EXTENSIONS
        if (forced and is_txt and os.path.isfile(x)) or (not forced and is_path_like(x)):
            return read_text_file(x)
        return str(x)

    def prepare(self, x: Input, modality: str | None = None) -> Prepared:
        """One input -> :class:`Prepared`; ``modality`` forces one. Raises ``InputError``."""
        forced = modality is not None
        modality = modality or detect_modality(x)
        if modality not in ("text", "symbolic", "audio"):
            raise ValueError(f"unknown modality {modality!r}; choose text, symbolic or audio")
        config = self._tower(x, modality)
        if modality == "text":
            text = self._text(x, forced)
            if not text.strip():
                raise InputError("<query>", "empty text")
            return Prepared("text", np.asarray(self.model.tokenizer.encode(text), dtype=np.int64))
        if not os.path.isfile(x):
            raise InputError(x, "no such file")
        if modality == "symbolic":
            return prepare_symbolic_file(x, config, self.timeout)
        if Path(x).suffix.lower() == ".npy":
            return Prepared("audio", read_feature_file(x, config.feature_dim))
        return Prepared("audio", np.asarray(self.model.audio_frontend.features_from_file(x), np.float32))

    def _prepare_here(self, x: Input, modality: str | None) -> Prepared | InputError:
        try:
            return self.prepare(x, modality)
        except InputError as exc:
            return exc
        except Exception as exc:  # a parser's own error type: this input fails, not the batch
            return _failed(x, exc)

    def _submit(self, inputs: Sequence[Input], modality: str | None) -> dict[int, tuple[int, Future]]:
        """Start the conversion of every existing symbolic file on the workers."""
        config = self.model.config.symbolic
        if self.workers <= 0 or config is None:
            return {}
        futures = {}
        for i, x in enumerate(inputs):
            try:
                wanted = (modality or detect_modality(x)) == "symbolic" and os.path.isfile(x)
            except InputError:
                continue  # reported when the input is prepared in order
            if wanted:
                if self._pool is None:
                    from clamp3.utils.workers import fork_pool

                    self._pool = fork_pool(self.workers)
                job = self._pool.submit(prepare_symbolic_file, x, config, self.timeout)
                futures[i] = (self._generation, job)
        return futures

    def _restart(self) -> None:
        from clamp3.utils.workers import fork_pool

        self.close()
        self._pool = fork_pool(self.workers)
        self._generation += 1

    def _collect(self, x: Input, generation: int, future: Future) -> Prepared | InputError:
        try:
            return future.result()
        except InputError as exc:
            return exc
        except BrokenProcessPool:
            pass
        except Exception as exc:
            return _failed(x, exc)
        if generation == self._generation:  # the current pool broke: start a fresh one
            self._restart()
        # Retry alone: the file that killed the pool is then named, the ones queued beside it pass.
        alone = self._pool.submit(prepare_symbolic_file, x, self.model.config.symbolic, self.timeout)
        try:
            return alone.result()
        except InputError as exc:
            return exc
        except BrokenProcessPool:
            self._restart()
            return InputError(x, "the worker process converting it died (a converter crash or out of memory)")
        except Exception as exc:
            return _failed(x, exc)

    def prepare_many(
        self, inputs: Sequence[Input], modality: str | None = None
    ) -> Iterator[Prepared | InputError]:
        """Prepared items (or the ``InputError`` of a bad input) in input order; never raises
        for a bad input, whatever the parser or the worker did with it (an unknown ``modality``
        is the caller's mistake: ``ValueError``)."""
        if modality not in (None, "text", "symbolic", "audio"):
            raise ValueError(f"unknown modality {modality!r}; choose text, symbolic or audio")
        futures = self._submit(inputs, modality)
        for i, x in enumerate(inputs):
            yield self._collect(x, *futures[i]) if i in futures else self._prepare_here(x, modality)


def embed_prepared(
    model: Clamp3Model, items: Sequence[Prepared], batch_size: int = 32, pooled: bool = True
) -> list[np.ndarray]:
    """Global vectors (D,) (or last hidden states (n, H) when not pooled) for prepared items of
    any mix of modalities, in input order."""
    out: list[np.ndarray | None] = [None] * len(items)
    if hasattr(model, "embed_prepared_items"):  # the ONNX Runtime backend (clamp3.onnx), torch-free
        for modality in ("text", "symbolic", "audio"):
            idx = [i for i, item in enumerate(items) if item.modality == modality]
            vectors = model.embed_prepared_items(modality, [items[i].data for i in idx], pooled, batch_size)
            for i, vector in zip(idx, vectors, strict=True):
                out[i] = vector
        return out  # type: ignore[return-value]
    from clamp3.embedding import embed_items, prepare_audio, prepare_patches, prepare_text

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
    inputs: Iterable[Input] | Input,
    modality: str | None = None,
    batch_size: int = 32,
    normalize: bool = True,
    show_progress: bool = False,
    chunk_size: int = 256,
) -> np.ndarray:
    """Embed paths and strings (any iterable, or one) -> float32 (N, D), L2-normalised unless
    ``normalize=False``.

    ``modality`` forces one modality for every input. Forced ``"text"`` embeds each string as
    it is (``"ballade.mid"`` is then a query, not a file), except ``os.PathLike`` objects and
    existing ``.txt`` files, which are read. Inputs are prepared and embedded ``chunk_size`` at
    a time, so memory stays bounded for long lists; within a chunk segments are sorted by
    length and batched with dynamic padding. The first bad input raises :class:`InputError`
    naming it.
    """
    from tqdm.auto import tqdm

    items_in = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    preparer = Preparer(model)
    out = np.zeros((len(items_in), model.config.projection_dim), dtype=np.float32)
    bar = tqdm(total=len(items_in), desc="encode", unit="item", disable=not show_progress)
    for lo in range(0, len(items_in), chunk_size):
        chunk = items_in[lo : lo + chunk_size]
        items = []
        for item in preparer.prepare_many(chunk, modality):
            if isinstance(item, InputError):
                raise item
            items.append(item)
        out[lo : lo + len(chunk)] = np.stack(embed_prepared(model, items, batch_size))
        bar.update(len(chunk))
    bar.close()
    return normalize_rows(out) if normalize else out
