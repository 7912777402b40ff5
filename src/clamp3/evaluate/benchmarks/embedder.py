"""The one seam between the benchmarks and the model, and the vector cache that makes reruns resume.

:class:`Embedder` is the only place the benchmarks (and the MTEB encoder) reach the model: it
runs the project's own embedding path (:class:`clamp3.pipeline.Clamp3Pipeline`, with the
preparation and batching of ``clamp3 embed``), returning one vector or one :class:`InputError` per input so that a bad
file fails alone.

:class:`VectorCache` keeps every vector computed, one ``.npz`` shard per chunk, so a killed or
repeated run embeds only what is missing::

    CACHE/<fingerprint>-<precision>/<16 hex digits>.npz   keys uint8 (n, 32), vectors float32 (n, D)

``<fingerprint>`` is the model identity's weight fingerprint (``clamp3.model_identity``) and
``<precision>`` the dtype it computes in, so other weights or precisions never reuse these vectors. A key is SHA-256 of the input's kind and content:
a text's characters, or a file's absolute path, size and modification time (a changed file is
embedded again). Vectors are stored as the model returns them, not normalised.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.utils.errors import InputError
from clamp3.utils.io import atomic_path

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

log = logging.getLogger(__name__)

Result = np.ndarray | InputError
CHUNK = 64  # inputs per embedding call and per cache shard: a kill loses at most one chunk


class Embedder:
    """The model behind one run: texts, files and audio feature rows -> global vectors.

    Wraps one :class:`~clamp3.pipeline.Clamp3Pipeline` (given, or made around a
    :class:`~clamp3.model.Clamp3Model`), so the tokenizer and the audio front-end load once per
    run; returns one float32 (D,) vector, not normalised, or one :class:`InputError` per input,
    in input order.
    """

    def __init__(self, model: Clamp3Model | Clamp3Pipeline, batch_size: int = 32):
        from clamp3.pipeline import as_pipeline

        self.pipeline = as_pipeline(model)
        self.model = self.pipeline.model
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return self.pipeline.dim

    @property
    def audio_frontend(self):
        """The pipeline's audio front-end (``WindowFrontend``: MERT, or log-mel for ``mini``)."""
        return self.pipeline.audio_frontend

    def _vectors(self, prepared: list) -> list[Result]:
        good = [i for i, item in enumerate(prepared) if not isinstance(item, InputError)]
        vectors = self.pipeline.embed_prepared([prepared[i] for i in good], self.batch_size) if good else []
        out: list[Result] = list(prepared)
        for i, vector in zip(good, vectors):
            out[i] = np.asarray(vector, dtype=np.float32)
        return out

    def texts(self, texts: Sequence[str]) -> list[Result]:
        """One vector per text string (never read as a path), or its ``InputError``."""
        prepared: list = []
        for text in texts:
            try:
                prepared.append(self.pipeline.prepare_text(text))
            except InputError as exc:
                prepared.append(exc)
        return self._vectors(prepared)

    def files(self, paths: Sequence[str | os.PathLike]) -> list[Result]:
        """One vector per music file (modality from the extension), or the ``InputError``
        naming the file and the reason (a converter crash, or a file the towers refuse, costs
        only its file)."""
        from clamp3.encode import Preparer

        with Preparer(self.pipeline) as preparer:  # prepare and embed, as ``clamp3 embed`` does
            outcomes = preparer.embed_many([str(p) for p in paths], batch_size=self.batch_size)
        return [o if isinstance(o, InputError) else np.asarray(o[1], dtype=np.float32) for o in outcomes]

    def audio_features(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """float32 (N, D) of audio feature rows (n_windows, F) made by :attr:`audio_frontend`."""
        from clamp3.inputs import Prepared

        items = [Prepared("audio", np.asarray(f, dtype=np.float32)) for f in features]
        return np.stack(self.pipeline.embed_prepared(items, self.batch_size)).astype(np.float32)


def as_text_file(text: str) -> str:
    """``text`` as the official evaluation embeds it: written to a ``.txt`` and read back by the
    extractor, so its non-empty lines (first occurrence of each) are joined with ``</s>``
    (:func:`clamp3.inputs.join_text_lines`, the reading of ``clamp3 embed``). A one-line text
    is unchanged."""
    from clamp3.inputs import join_text_lines

    return join_text_lines(text.split("\n")) if "\n" in text else text


# ------------------------------------------------------------------------------------- cache
def text_key(text: str) -> bytes:
    return hashlib.sha256(b"text\0" + text.encode("utf-8", "surrogatepass")).digest()


def file_key(path: str | os.PathLike) -> bytes:
    """Key of a file from its absolute path, size and mtime; a missing file still gets a key
    (it fails when embedded, and failures are never cached)."""
    p = Path(path).absolute()
    try:
        stat = p.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return hashlib.sha256(f"file\0{p}\0{stamp}".encode("utf-8", "surrogatepass")).digest()


def precision(model: Clamp3Model) -> str:
    """The floating-point type the model computes in (``float32``, ``float16``, ``bfloat16``)."""
    # The model's anchor buffer follows .to(dtype); buffers, unlike parameters, never make a
    # lazily built tower load.
    first = next((b for b in model.buffers() if b.is_floating_point()), None)
    return str(first.dtype).replace("torch.", "") if first is not None else "float32"


class VectorCache:
    """Vectors of one model under ``root/<fingerprint>``; see the module docstring."""

    def __init__(self, root: str | os.PathLike, fingerprint: str):
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in fingerprint) or "model"
        self.folder = Path(root) / safe
        self._vectors: dict[bytes, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                log.warning("%s: unreadable cache shard (%s); its inputs are embedded again", shard, exc)
                continue
            for key, vector in zip(keys, vectors):
                self._vectors[bytes(key)] = vector

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, key: bytes) -> np.ndarray | None:
        return self._vectors.get(key)

    def compact(self) -> None:
        """Merge every shard into one (written first, the others deleted after: a kill in between
        leaves duplicate keys, which are harmless since a key always has the same vector)."""
        shards = sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []
        if len(shards) < 2:
            return
        keys = list(self._vectors)
        merged = self.add(keys, [self._vectors[k] for k in keys])
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)

    def add(self, keys: Sequence[bytes], vectors: Sequence[np.ndarray]) -> Path | None:
        """Store a shard (atomically) and remember its vectors; returns the shard's path."""
        if not keys:
            return None
        array_keys = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        array = np.stack([np.asarray(v, np.float32) for v in vectors])
        name = hashlib.sha256(array_keys.tobytes()).hexdigest()[:16]
        path = self.folder / f"{name}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=array_keys, vectors=array)
        self._vectors.update(zip(keys, array))
        return path


def cached(
    cache: VectorCache,
    keys: Sequence[bytes],
    compute: Callable[[list[int]], list[Result]],
    progress: Callable[[int], None] | None = None,
) -> list[Result]:
    """The vector (or error) of every key: cached ones as stored, the others from
    ``compute(indices)`` :data:`CHUNK` at a time, each chunk's vectors cached as it finishes."""
    out: list[Result | None] = [cache.get(k) for k in keys]
    todo = [i for i, v in enumerate(out) if v is None]
    if progress:
        progress(len(keys) - len(todo))
    for lo in range(0, len(todo), CHUNK):
        chunk = todo[lo : lo + CHUNK]
        results = compute(chunk)
        done = [(keys[i], r) for i, r in zip(chunk, results) if not isinstance(r, InputError)]
        cache.add([k for k, _ in done], [r for _, r in done])
        for i, result in zip(chunk, results):
            out[i] = result
        if progress:
            progress(len(chunk))
    return out  # type: ignore[return-value]
