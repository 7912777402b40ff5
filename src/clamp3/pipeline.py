"""Clamp3Pipeline: raw inputs (text strings, files, recordings) -> embeddings.

The ``nn.Module`` (:class:`clamp3.model.Clamp3Model`) knows tensors; the pipeline owns what
turns raw inputs into them: the text tokenizer and the audio front-end (MERT-v1-95M, or the
log-mel front-end of the offline presets), both loaded on first use and moved by :meth:`to`
together with the model.

Texts and files come in through different calls, so a string is never guessed to be a path:
``encode_texts(["song.mid"])`` embeds the words "song.mid", ``encode_files(["song.mid"])`` reads
the file. Files are read by extension through the input table (:mod:`clamp3.inputs`); an image
(``.png .jpg .jpeg .webp``) is captioned (:class:`clamp3.captioning.Captioner`, BLIP by default,
loaded when the first image comes) and its caption embedded as text.

Lower-level entry points, for callers that batch, cache or isolate failures themselves (the
``embed`` job, the service, evaluation): :meth:`~Clamp3Pipeline.prepare_text`,
:meth:`~Clamp3Pipeline.prepare_file` (one input -> :class:`~clamp3.inputs.Prepared`) and
:meth:`~Clamp3Pipeline.embed_prepared` (prepared items -> vectors).

Loading: :func:`clamp3.loading.load_pipeline` is the one entry point that turns a model argument (a directory,
an official ``.pth``, a tag, an ONNX export, a loaded model, or nothing: the model an index
records) into a pipeline on a chosen device; every command, the service and the demo call it.
:meth:`Clamp3Pipeline.from_pretrained` is the plain constructor below it (what you pass is what
you get: no device choice, no index default).

Extending it: another runtime for the towers plugs in as ``model`` (anything with the tensor
surface of :class:`clamp3.embedding.FeatureModel`, plus ``asset_directory`` and ``to``); another
input kind is a row of :data:`clamp3.inputs.KINDS` and a branch of :meth:`prepare_file`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from clamp3.config import AudioTowerConfig, Clamp3Config, SymbolicTowerConfig, TextTowerConfig
from clamp3.inputs import Prepared, check_modality, kind_of, not_a_file, read_feature_file, read_text_file
from clamp3.utils.errors import InputError
from clamp3.utils.vectors import l2_normalize

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from clamp3.audio.base import WindowFrontend
    from clamp3.captioning import Captioner
    from clamp3.model import Clamp3Model
    from clamp3.tokenizer import TextTokenizer

# torch, transformers and the torch model are imported on first use, not here: a pipeline over
# an ONNX export (clamp3.onnx) embeds texts without them.

T = TypeVar("T")
ENCODE_CHUNK = 256  # inputs prepared and embedded per round: memory stays bounded for long lists


def _text_label(text: str) -> str:
    """How a text input is named in errors: quoted, shortened to 40 characters."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def read_symbolic_file(
    path: str | os.PathLike, config: SymbolicTowerConfig, timeout: float | None = None
) -> np.ndarray:
    """A score / MIDI file -> (n, 64) patches. A conversion running longer than ``timeout``
    seconds (a converter stuck on a pathological file) is an ``InputError``; the limit needs the
    process's main thread (a worker, or the CLI), elsewhere it is not applied."""
    from clamp3.preprocess import load_symbolic
    from clamp3.utils.workers import WorkTimeout, time_limit

    try:  # WorkTimeout is a BaseException: converters' ``except Exception`` let it pass
        with time_limit(timeout):
            return load_symbolic(path, config)
    except WorkTimeout as exc:
        raise InputError(str(path), f"conversion {exc}") from None


class Clamp3Pipeline:
    """Texts and files in, float32 embeddings out, for one :class:`Clamp3Model`.

    ``tokenizer`` / ``audio_frontend`` default to the model's own (``tokenizer.json`` beside the
    weights, else the config's hub tokenizer; MERT from ``<model dir>/mert`` or the hub),
    loaded on first use. A tokenizer or front-end that cannot be loaded (offline, not cached)
    raises its error on first use and the same error again on every later use, without
    another download attempt. ``captioner`` (a :class:`~clamp3.captioning.Captioner`, or a hub
    id / directory of an image-to-text model; default the official BLIP) captions image files,
    on the model's device; it loads when the first image is seen, and fails the same way.
    """

    def __init__(
        self,
        model: Clamp3Model,
        *,
        tokenizer: TextTokenizer | None = None,
        audio_frontend: WindowFrontend | None = None,
        captioner: Captioner | str | os.PathLike | None = None,
    ):
        from clamp3.captioning import DEFAULT_CAPTIONER, Captioner

        self.model = model
        self._tokenizer = tokenizer
        self._frontend = audio_frontend
        self._failed: dict[str, Exception] = {}
        if not isinstance(captioner, Captioner):  # nothing is loaded here, only named
            captioner = Captioner(captioner or DEFAULT_CAPTIONER, device=str(model.device))
        self.captioner = captioner

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        captioner: Captioner | str | os.PathLike | None = None,
    ) -> Clamp3Pipeline:
        """The pipeline of :meth:`Clamp3Model.from_pretrained` (a converted directory, an
        official ``.pth`` or a tag), on ``device`` with the towers in ``dtype``; of an
        ``export-onnx`` directory, run by ONNX Runtime (:class:`clamp3.onnx.OnnxModel`, its
        precision fixed at export: ``dtype`` must be ``None``); ``captioner`` as in the
        constructor."""
        from clamp3.backends import load

        return cls(load(source, device=device, dtype=dtype), captioner=captioner)

    @property
    def config(self) -> Clamp3Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dim(self) -> int:
        """D, the length of every embedding."""
        return int(self.model.config.projection_dim)

    def to(self, device: str | torch.device) -> Clamp3Pipeline:
        """Move the model, the captioner and (once loaded) the audio front-end to ``device``;
        returns ``self``."""
        self.model.to(device)
        if self._frontend is not None:
            self._frontend.to(device)
        self.captioner.to(str(device))
        return self

    # ----------------------------------------------------------------------------- components
    def _load_once(self, what: str, load: Callable[[], T]) -> T:
        if what in self._failed:  # e.g. offline: fail again at once instead of retrying the hub
            raise self._failed[what]
        try:
            return load()
        except Exception as exc:
            self._failed[what] = exc
            raise

    @property
    def tokenizer(self) -> TextTokenizer:
        """The text tokenizer (:class:`clamp3.tokenizer.TextTokenizer`)."""
        if self._tokenizer is None:
            from clamp3.tokenizer import load_tokenizer

            text = self.model.config.tower("text")
            self._tokenizer = self._load_once(
                "tokenizer", lambda: load_tokenizer(text, self.model.asset_directory)
            )
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: TextTokenizer) -> None:
        self._tokenizer = value
        self._failed.pop("tokenizer", None)

    @property
    def audio_frontend(self) -> WindowFrontend:
        """Waveform -> feature rows for the audio tower, on the model's device."""
        if self._frontend is None:
            from clamp3.audio import load_frontend

            audio = self.model.config.tower("audio")

            def load() -> WindowFrontend:
                own = getattr(self.model, "load_audio_frontend", None)  # an ONNX export's mert.onnx
                frontend = own() if own is not None else None
                return frontend or load_frontend(audio, self.model.asset_directory, device=self.device)

            self._frontend = self._load_once("audio_frontend", load)
        return self._frontend

    @audio_frontend.setter
    def audio_frontend(self, value: WindowFrontend) -> None:
        self._frontend = value
        self._failed.pop("audio_frontend", None)

    # ----------------------------------------------------------------------------- prepared items
    def tower_config(
        self, modality: str, name: str
    ) -> TextTowerConfig | SymbolicTowerConfig | AudioTowerConfig:
        """The config of the tower for ``modality``; ``InputError(name, ...)`` when the model
        has none (e.g. CLaMP 2 and audio)."""
        cfg = self.model.config
        if modality not in cfg.modalities:
            raise InputError(
                name,
                f"model {cfg.name!r} has no {modality} tower (it has: {', '.join(cfg.modalities)}), "
                f"so it cannot embed {modality} inputs",
            )
        return cfg.tower(modality)

    def prepare_text(self, text: str) -> Prepared:
        """A text (any language; ``</s>`` separates lines) -> token ids. ``InputError`` when
        empty or the model has no text tower; the string is never read as a path."""
        if not isinstance(text, str):
            raise TypeError(f"texts must be str, got {type(text).__name__} (files go to prepare_file)")
        self.tower_config("text", _text_label(text))
        if not text.strip():
            raise InputError(_text_label(text), "empty text")
        return Prepared("text", np.asarray(self.tokenizer.encode(text), dtype=np.int64))

    def prepare_image(self, source: str | os.PathLike | bytes | Image, name: str | None = None) -> Prepared:
        """An image (a path, its bytes or a decoded ``PIL.Image``; ``name`` names it in errors)
        -> the token ids of its caption, with the caption kept in ``Prepared.caption``: its
        vector is the caption's text vector (:meth:`Captioner.caption <clamp3.captioning.Captioner.caption>`).
        ``InputError`` for a bad image, ``CheckpointError`` when the captioner cannot load."""
        caption = self.captioner.caption(source, name)
        return replace(self.prepare_text(caption), caption=caption)

    def prepare_file(
        self, path: str | os.PathLike, modality: str | None = None, timeout: float | None = None
    ) -> Prepared:
        """One file, read by extension (:mod:`clamp3.inputs`) -> :class:`Prepared`.

        ``modality`` (optional) is what the caller expects: a file of another modality is an
        ``InputError``. ``timeout`` bounds a MusicXML/MIDI conversion (seconds). Raises
        ``InputError`` naming the file for an unsupported type, a missing or unreadable file,
        or a model without the tower; ``ValueError`` for an unknown ``modality``.
        """
        check_modality(modality)
        if os.path.isdir(path):  # before its "extension" is judged: a folder is no input type
            raise not_a_file(path)
        kind = kind_of(path)
        if modality is not None and kind.modality != modality:
            raise InputError(path, f"is a {kind.modality} file ({kind.name}), not {modality}")
        config = self.tower_config(kind.modality, str(path))
        if not os.path.isfile(path):
            raise not_a_file(path)
        if kind.name == "image":
            return self.prepare_image(path)
        if kind.modality == "text":
            return self.prepare_text(read_text_file(path))
        if kind.modality == "symbolic":
            return Prepared("symbolic", read_symbolic_file(path, config, timeout))
        if kind.name == "features":
            return Prepared("audio", read_feature_file(path, config.feature_dim))
        return Prepared("audio", np.asarray(self.audio_frontend.features_from_file(path), np.float32))

    def embed_prepared(
        self, items: Sequence[Prepared], batch_size: int = 32, pooled: bool = True
    ) -> list[np.ndarray]:
        """Global vectors (D,) float32, not normalised (or last hidden states (n, H) when not
        ``pooled``) for prepared items of any mix of modalities, in input order."""
        out: list[np.ndarray | None] = [None] * len(items)
        own = getattr(self.model, "embed_prepared_items", None)  # the ONNX backend: numpy in, no torch
        for modality in ("text", "symbolic", "audio"):
            idx = [i for i, item in enumerate(items) if item.modality == modality]
            if not idx:
                continue
            if own is not None:
                for i, vector in zip(
                    idx, own(modality, [items[i].data for i in idx], pooled, batch_size), strict=True
                ):
                    out[i] = vector
                continue
            from clamp3.embedding import embed_items, prepare_audio, prepare_patches, prepare_text

            if modality == "audio":
                dim = self.model.config.tower("audio").feature_dim
                tensors = [prepare_audio(items[i].data, dim) for i in idx]
            elif modality == "symbolic":
                tensors = [prepare_patches(items[i].data) for i in idx]
            else:
                tensors = [prepare_text(items[i].data) for i in idx]
            vectors = embed_items(self.model, modality, tensors, pooled, batch_size)
            for i, vector in zip(idx, vectors, strict=True):
                out[i] = vector
        return out  # type: ignore[return-value]

    # ----------------------------------------------------------------------------- encode
    def encode_texts(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Texts in any language -> float32 (N, D), L2-normalised unless ``normalize=False``.

        Every string is text, whatever it looks like. The first bad one (empty) raises
        :class:`InputError`.
        """
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings; wrap a single text in a list")
        return self._encode(list(texts), self.prepare_text, batch_size, normalize, show_progress)

    def encode_files(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        modality: str | None = None,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Files (scores, MIDI, recordings, MERT ``.npy``, ``.txt``) -> float32 (N, D),
        L2-normalised unless ``normalize=False``, in input order.

        The modality comes from the extension (:mod:`clamp3.inputs`); ``modality`` makes any
        other an error. The first bad file raises :class:`InputError` naming it.
        """
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("encode_files takes a list of paths; wrap a single path in a list")
        return self._encode(
            list(paths), lambda p: self.prepare_file(p, modality), batch_size, normalize, show_progress
        )

    def _encode(
        self,
        inputs: list,
        prepare: Callable[..., Prepared],
        batch_size: int,
        normalize: bool,
        show_progress: bool,
    ) -> np.ndarray:
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        with _progress(len(inputs), show_progress) as bar:
            # Within a chunk, segments are sorted by length and batched with dynamic padding.
            for lo in range(0, len(inputs), ENCODE_CHUNK):
                chunk = [prepare(x) for x in inputs[lo : lo + ENCODE_CHUNK]]
                out[lo : lo + len(chunk)] = np.stack(self.embed_prepared(chunk, batch_size))
                bar.update(len(chunk))
        return l2_normalize(out) if normalize else out


def _progress(total: int, show: bool):
    """A tqdm bar over ``total`` items, or a silent stand-in: tqdm.auto (and asyncio with it)
    is not imported for a one-text query."""
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode", unit="item")


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def as_pipeline(model: Clamp3Model | Clamp3Pipeline) -> Clamp3Pipeline:
    """A new pipeline around a model (a :class:`Clamp3Model`, or an ONNX export's
    :class:`clamp3.onnx.OnnxModel`); anything else (a pipeline, or an object with the
    pipeline's methods) is returned as it is. For application functions that accept either; a
    caller that runs several of them should pass one pipeline, so that the tokenizer and the
    audio front-end load once."""
    return model if hasattr(model, "encode_texts") else Clamp3Pipeline(model)  # type: ignore[return-value]
