"""Query vectors for the service: text in any language, uploaded music files and images.

Text queries are batched: one worker thread owns the text tower and takes every query waiting
when it becomes free (up to ``max_batch``), so under load one forward pass serves many
requests and nobody waits for a timer. Batching does not change the numbers: segments are
padded with masks that pooling ignores (``clamp3.embedding``). Recent text vectors are kept in
a small cache, so turning pages of results does not re-run the model.

An uploaded score or MIDI file is converted in a forked process of its own
(:func:`clamp3.utils.workers.run_isolated`) under ``conversion_timeout`` seconds, the limit
``clamp3 embed --timeout`` applies: a request thread cannot hold a ``SIGALRM`` limit, and a
converter stuck in C code is only stopped by ending its process. A converter that crashes
fails that upload (422), not the service.

Text and uploads take the pipeline's separate entry points (``Clamp3Pipeline``): a text query
is always text, so a query such as ``/etc/passwd`` is words, never a file that is read.

Uploaded files are bounded before the expensive steps (``content.py``): a recording's length is
checked before decoding, a compressed score's unpacked size while unpacking, and a converted
file without notes never reaches the model, and an image's pixel count is checked from its
header before it is decoded. An image is searched by its caption (the official image search),
which the response reports. One rule for every format: a file that cannot be read or embedded
is refused with ``cannot read NAME: reason`` or ``cannot embed NAME (reason)``, NAME being the
client's file name, and the server-side path of the upload never appears (a parser that quotes
the path it opened has it replaced by NAME).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np

from clamp3.captioning import read_image
from clamp3.inputs import kind_of
from clamp3.pipeline import Clamp3Pipeline, as_pipeline
from clamp3.preprocess.abc import MAX_UNPACKED_BYTES, unpacked_size_limit
from clamp3.serve.content import MAX_AUDIO_SECONDS, check_audio_length, has_notes
from clamp3.serve.errors import ServeError, Unavailable, Unprocessable
from clamp3.serve.settings import MAX_IMAGE_PIXELS
from clamp3.utils.errors import CheckpointError, InputError
from clamp3.utils.vectors import l2_normalize

if TYPE_CHECKING:
    from clamp3.config import SymbolicTowerConfig
    from clamp3.inputs import Prepared
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)

MAX_QUERY_ITEMS = 32_768  # patches or audio feature rows of one uploaded query (~64 segments)
V = TypeVar("V")


class _LRU(Generic[V]):
    """A thread-safe least-recently-used map with a fixed number of entries."""

    def __init__(self, size: int):
        self._size = size
        self._data: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


class QueryEncoder:
    """Turns queries into unit vectors (D,) float32 with one model; thread-safe.

    ``timeout`` (seconds) bounds how long a request waits for its vector, or for the audio
    front-end or the captioner while another upload holds it (then ``Unavailable``, HTTP 503).
    Uploads are capped at ``max_audio_seconds`` of audio, ``max_unpacked_bytes`` of unpacked
    ``.mxl`` content and ``max_image_pixels`` of image. The captioner (the pipeline's) loads
    with the first image upload, not at start-up.
    """

    def __init__(
        self,
        model: Clamp3Model | Clamp3Pipeline,
        max_batch: int = 32,
        cache_size: int = 4096,
        timeout: float = 60.0,
        max_audio_seconds: float = MAX_AUDIO_SECONDS,
        max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
        conversion_timeout: float | None = 60.0,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
    ):
        self.pipeline = as_pipeline(model)
        self.model = self.pipeline.model
        self.dim = self.pipeline.dim
        self.max_batch = max_batch
        self.timeout = timeout
        self.max_audio_seconds = max_audio_seconds
        self.max_unpacked_bytes = max_unpacked_bytes
        self.conversion_timeout = conversion_timeout or None
        self.max_image_pixels = max_image_pixels
        self._model_lock = threading.Lock()  # one forward pass at a time: 2 cores, shared towers
        self._frontend_lock = threading.Lock()
        self._captioner_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, Future] | None] = queue.SimpleQueue()
        self._cache: _LRU[np.ndarray] = _LRU(cache_size)
        self._uploads: _LRU[np.ndarray] = _LRU(256)
        self._captions: _LRU[str] = _LRU(256)  # what an uploaded image was searched as
        self._worker = threading.Thread(target=self._run, name="clamp3-text-encoder", daemon=True)
        self._worker.start()

    def warm_up(self) -> None:
        """Build every tower and the tokenizer now, so no request pays for it (and no two
        requests race to build a tower lazily)."""
        with self._model_lock:
            self.model.load_all()
            _ = self.pipeline.tokenizer
        self.text("warm-up")

    # ----------------------------------------------------------------------------- text
    def text(self, query: str) -> np.ndarray:
        """A text query in any language -> unit vector (D,)."""
        cached = self._cache.get(query)
        if cached is not None:
            return cached
        future: Future = Future()
        self._queue.put((query, future))
        try:
            vector = future.result(timeout=self.timeout)
        except TimeoutError as exc:
            raise Unavailable("the text encoder is overloaded; try again in a moment") from exc
        self._cache.put(query, vector)
        return vector

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(item)
            self._encode_batch(batch)

    def _encode_batch(self, batch: list[tuple[str, Future]]) -> None:
        texts = list(dict.fromkeys(query for query, _ in batch))  # equal queries run once
        try:
            with self._model_lock:
                ids = self.pipeline.tokenizer.encode_batch(texts)
                vectors = dict(zip(texts, self.model.embed_text_ids(ids), strict=True))
        except Exception as exc:  # hand the failure to every waiting request
            for _, future in batch:
                future.set_exception(exc)
            return
        for query, future in batch:
            future.set_result(l2_normalize(vectors[query]))

    # ----------------------------------------------------------------------------- files
    def file(self, path: Path, digest: str, name: str = "the upload") -> np.ndarray:
        """An uploaded score, MIDI, audio or image file -> unit vector (D,); cached under ``digest``.

        ``name`` is the client's name for the file: messages use it in place of ``path``.
        Raises ``Unprocessable`` with the reason when the file cannot be read or embedded or
        holds no notes, ``TooLarge`` past the length caps, ``Unavailable`` when the audio
        front-end, the captioner or the model stays busy for ``timeout`` seconds, or the
        captioner cannot be loaded. An image's caption is kept: :meth:`caption`.
        """
        cached = self._uploads.get(digest)
        if cached is not None:
            return cached
        try:
            # Reading and converting the file happens outside the model lock: a slow or
            # pathological upload occupies its own worker thread, never the text searches.
            item = self._prepare(path)
            if item.n_items > MAX_QUERY_ITEMS:
                raise Unprocessable(
                    f"this file is too long to search with ({item.n_items} {item.modality} elements; "
                    f"at most {MAX_QUERY_ITEMS}); upload an excerpt"
                )
            with self._holding(self._model_lock, "the model is busy; try again in a moment"):
                vector = l2_normalize(self.pipeline.embed_prepared([item])[0])
        except ServeError:
            raise
        except CheckpointError as exc:  # a part of the model will not load: the operator's problem
            what, part = _unloadable(path)
            log.error("%s is unavailable: %s", what, exc)
            raise Unavailable(f"{what} is unavailable on this server ({part} cannot be loaded)") from exc
        except InputError as exc:
            raise Unprocessable(f"cannot read {name}: {_public(exc.reason, path, name)}") from exc
        except Exception as exc:
            # Parsers of uploaded bytes fail in many ways; the file is the likely culprit and
            # the client deserves the reason, not a 500. The traceback goes to the log.
            log.warning("embedding an upload failed", exc_info=True)
            detail = _public(f"{type(exc).__name__}: {exc}", path, name)
            raise Unprocessable(f"cannot embed {name} ({detail})") from exc
        if item.caption is not None:
            self._captions.put(digest, item.caption)
        self._uploads.put(digest, vector)
        return vector

    def caption(self, digest: str) -> str | None:
        """The caption an uploaded image (``digest``) was searched as; ``None`` for other uploads."""
        return self._captions.get(digest)

    def _prepare(self, path: Path) -> Prepared:
        kind = kind_of(path)
        if kind.name == "image":
            # The pixel cap, before decoding; messages carry only the reason (see file()).
            image = read_image(path, max_pixels=self.max_image_pixels)
            busy = "the image captioner is busy with other uploads; try again in a moment"
            with self._holding(self._captioner_lock, busy):  # one captioning model, one image at a time
                return self.pipeline.prepare_image(image)
        if kind.modality == "audio":
            check_audio_length(path, self.max_audio_seconds)  # before any decoding work
            busy = "the audio reader is busy with other uploads; try again in a moment"
            with self._holding(self._frontend_lock, busy):  # MERT is one module, one call at a time
                return self.pipeline.prepare_file(path)
        item = self._convert(path)
        if not has_notes(item.data):
            raise Unprocessable("no music in the file: it holds no notes once converted")
        return item

    def _convert(self, path: Path) -> Prepared:
        """A score or MIDI upload -> patches, in a process of its own (module docstring);
        in this thread when ``conversion_timeout`` is None. Raises ``InputError``."""
        from clamp3.utils.workers import WorkerDied, WorkTimeout, run_isolated

        config = self.model.config.tower("symbolic")
        if self.conversion_timeout is None:
            return convert_upload(str(path), config, None, self.max_unpacked_bytes)
        task = functools.partial(
            convert_upload,
            config=config,
            timeout=self.conversion_timeout,
            max_unpacked_bytes=self.max_unpacked_bytes,
        )
        (outcome,) = run_isolated(task, [str(path)], 1, self.conversion_timeout)
        if outcome.ok:
            return outcome.value
        if isinstance(outcome.error, WorkTimeout):  # stuck where the alarm could not reach it
            raise InputError(path, f"conversion {outcome.error}")
        if isinstance(outcome.error, WorkerDied):
            raise InputError(path, "the converter crashed on it")
        raise outcome.error

    @contextlib.contextmanager
    def _holding(self, lock: threading.Lock, busy: str) -> Iterator[None]:
        """Hold ``lock``, waiting at most ``timeout`` seconds; ``Unavailable(busy)`` otherwise."""
        if not lock.acquire(timeout=self.timeout):
            raise Unavailable(busy)
        try:
            yield
        finally:
            lock.release()

    def upload(self, digest: str) -> np.ndarray | None:
        """The vector of a recent upload, for its further result pages (``None`` once forgotten)."""
        return self._uploads.get(digest)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)


def convert_upload(
    path: str, config: SymbolicTowerConfig, timeout: float | None, max_unpacked_bytes: int
) -> Prepared:
    """Top-level (picklable) so the conversion process can run it: one upload's patches, with
    the service's unpack cap and the conversion ``timeout``."""
    from clamp3.inputs import Prepared
    from clamp3.pipeline import read_symbolic_file

    with unpacked_size_limit(max_unpacked_bytes):
        return Prepared("symbolic", read_symbolic_file(path, config, timeout))


def _public(message: str, path: Path, name: str) -> str:
    """``message`` with the server-side upload ``path`` replaced by the client's file ``name``
    and any other mention of the upload folders removed: parsers quote the path they opened."""
    folders = (path.parent, Path(os.path.realpath(path.parent)))
    for form in (str(path), os.path.realpath(path)):
        message = message.replace(form, name)
    for folder in folders:  # names derived from the path (a converter's output file)
        message = message.replace(f"{folder}{os.sep}", "")
    for folder in (*folders, *(f.parent for f in folders)):
        message = message.replace(str(folder), "the upload folder")
    return message.replace(path.name, name)


def _unloadable(path: Path) -> tuple[str, str]:
    """(the search a ``CheckpointError`` disables, the part that failed) for an upload: the
    captioner for images, the audio front-end (MERT) or tower for recordings, the symbolic
    tower for scores (an ONNX export without it, say)."""
    kind = kind_of(path)
    if kind.name == "image":
        return "image search", "its captioner"
    if kind.modality == "audio":
        return "audio search", "its audio front-end or audio tower"
    return "score and MIDI search", "its symbolic tower"
