"""Passage embeddings cached on disk, so that a rerun does not embed again and a killed run resumes.

Layout: a folder ``OUT.embeddings/`` next to the output ``OUT.jsonl``. It is kept apart from the
resume state ``OUT.curate/`` because deleting the state to start over should not throw away
vectors, which depend only on the passage text and the model. Inside, one folder per model,
``<model name made filesystem-safe>-<first 8 hex digits of SHA-256(model name)>``, holds shards:

* ``<16 hex digits>.npz`` — a numpy ``.npz`` archive (no pickled objects) with two arrays:
  ``keys``, uint8 ``(n, 32)``: SHA-256 of ``model name + "\\0" + passage text`` (the text is
  :attr:`Passage.search_text`, title + newline + text); and ``vectors``, float32 ``(n, D)``:
  the L2-normalised embeddings, row ``i`` for key ``i``. The file name is a hash of the keys.

Each shard is written atomically (temporary file, fsync, rename) as soon as its request returns,
so a kill loses at most the batches in flight. Once every passage of a run has its vector, the
shards are merged into one: the merged shard is written first and the others deleted after, so a
kill in between leaves duplicate keys, which are harmless (a key always has the same vector).
A shard that cannot be read is logged and skipped; its passages are embedded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clamp3.curate.documents import Passage
from clamp3.curate.embeddings import EmbeddingClient
from clamp3.curate.transport import LLMConfigError, LLMRequestError
from clamp3.utils.errors import InputError
from clamp3.utils.io import atomic_path

log = logging.getLogger(__name__)

KEY_BYTES = 32


class EmbeddingCache:
    """The shards of one model under ``root``; :meth:`add` is safe to call from several threads."""

    def __init__(self, root: str | os.PathLike, model: str) -> None:
        self.model = model
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:80] or "model"
        self.folder = Path(root) / f"{slug}-{hashlib.sha256(model.encode('utf-8')).hexdigest()[:8]}"

    def key(self, text: str) -> bytes:
        """The 32-byte cache key of ``text`` embedded by this model."""
        return hashlib.sha256(self.model.encode("utf-8") + b"\0" + text.encode("utf-8")).digest()

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []

    def load(self) -> dict[bytes, np.ndarray]:
        """``{key: float32 (D,) vector}`` of every readable shard (the first copy of a key wins)."""
        stored: dict[bytes, np.ndarray] = {}
        for path in self.shards():
            try:
                with np.load(path, allow_pickle=False) as archive:
                    keys, vectors = archive["keys"], archive["vectors"]
                if keys.dtype != np.uint8 or keys.shape[1:] != (KEY_BYTES,) or vectors.dtype != np.float32:
                    raise ValueError("unexpected array types")
                if vectors.ndim != 2 or len(vectors) != len(keys):
                    raise ValueError("keys and vectors differ in length")
            except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as exc:
                log.warning("ignoring unreadable embedding shard %s (%s); its passages are embedded again",
                            path, exc)  # fmt: skip
                continue
            for key, vector in zip(keys, vectors):
                stored.setdefault(key.tobytes(), vector)
        return stored

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> Path:
        """Write one shard atomically; ``vectors`` is float32 ``(len(keys), D)``. Returns its path."""
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)
        path = self.folder / f"{hashlib.sha256(key_array.tobytes()).hexdigest()[:16]}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=key_array, vectors=np.asarray(vectors, dtype=np.float32))
        return path

    def compact(self, stored: dict[bytes, np.ndarray]) -> None:
        """Merge all shards into one holding ``stored`` (which must include every shard's content)."""
        old = self.shards()
        if len(old) <= 1 or not stored:
            return
        keys = sorted(stored)  # a deterministic merged file, whatever order batches finished in
        merged = self.add(keys, np.stack([stored[k] for k in keys]))
        for path in old:
            if path != merged:
                path.unlink(missing_ok=True)


@dataclass
class PassageVectors:
    """``vectors``: float32 ``(N, D)`` unit rows in passage order, a zero row for each passage the
    endpoint refused (listed by key in ``refused``); ``cached``/``embedded``: passages read from
    the cache / distinct passage texts embedded by this run."""

    vectors: np.ndarray
    cached: int
    embedded: int
    refused: list[str]


def embed_passages(
    passages: Sequence[Passage],
    client: EmbeddingClient,
    root: str | os.PathLike,
    *,
    show_progress: bool = True,
) -> PassageVectors:
    """Vectors of ``passages``, embedding (``client.concurrency`` batches at a time) only texts the
    cache under ``root`` lacks. Transport errors propagate after the batches in flight are saved."""
    cache = EmbeddingCache(root, client.model)
    stored = cache.load()
    keys = [cache.key(p.search_text) for p in passages]
    todo: dict[bytes, str] = {}  # distinct missing texts, in passage order
    for key, passage in zip(keys, passages):
        if key not in stored:
            todo.setdefault(key, passage.search_text)
    refused = _fill(cache, client, todo, stored, show_progress)
    dims = {stored[k].shape[0] for k in set(keys) if k in stored}
    if len(dims) > 1:
        raise InputError(cache.folder, f"cached and new vectors differ in size {sorted(dims)}: the model "
                         "served under this name changed; delete this folder to embed again")  # fmt: skip
    cache.compact(stored)
    vectors = np.zeros((len(passages), dims.pop() if dims else 0), dtype=np.float32)
    for row, key in enumerate(keys):
        if key in stored:
            vectors[row] = stored[key]
    return PassageVectors(
        vectors=vectors,
        cached=sum(key not in todo for key in keys),
        embedded=len(todo) - len(refused),
        refused=[p.key for p, key in zip(passages, keys) if key in refused],
    )


def _fill(
    cache: EmbeddingCache,
    client: EmbeddingClient,
    todo: dict[bytes, str],
    stored: dict[bytes, np.ndarray],
    show_progress: bool,
) -> set[bytes]:
    """Embed ``todo`` into the cache and ``stored``; return the keys the endpoint refused.

    Batches are submitted a few at a time so that after the first error (budget spent, server
    down, wrong model) nothing new is sent; the batches already in flight finish and are saved.
    """
    items = list(todo.items())
    batches = [items[i : i + client.batch_size] for i in range(0, len(items), client.batch_size)]
    refused: set[bytes] = set()
    lock = threading.Lock()

    def work(batch: list[tuple[bytes, str]]) -> int:
        rows = _embed_or_split(client, [text for _, text in batch])
        done = [(key, row) for (key, _), row in zip(batch, rows) if row is not None]
        if done:
            cache.add([key for key, _ in done], np.stack([row for _, row in done]))
        with lock:
            stored.update(done)
            refused.update(key for (key, _), row in zip(batch, rows) if row is None)
        return len(batch)

    queue = iter(batches)
    running: set[Future] = set()
    error: BaseException | None = None
    bar = tqdm(total=len(items), desc="embed passages", unit="passage", disable=not show_progress)
    with ThreadPoolExecutor(client.concurrency, thread_name_prefix="embed") as pool, bar:
        while True:
            while error is None and len(running) < 2 * client.concurrency and (b := next(queue, None)):
                running.add(pool.submit(work, b))
            if not running:
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    bar.update(future.result())
                except Exception as exc:  # BudgetExhausted, LLMUnavailable, LLMConfigError, a bug
                    error = error or exc
    if error is not None:
        raise error
    return refused


def _embed_or_split(client: EmbeddingClient, texts: list[str]) -> list[np.ndarray | None]:
    """Rows for ``texts``; ``None`` for a text the endpoint refuses even alone.

    A refused batch (e.g. one passage longer than the model's context) is sent again one text
    at a time so that one bad passage does not cost its neighbours their vectors. If every text
    of a batch of two or more is refused alone too, the fault is not in the texts: the endpoint
    cannot embed at all, and going on would spend a request per passage for nothing.
    """
    try:
        return list(client.embed_batch(texts))
    except LLMRequestError as exc:
        if len(texts) == 1:
            log.warning("the embedding endpoint refused a passage: %s", exc)
            return [None]
    rows: list[np.ndarray | None] = []
    last: LLMRequestError | None = None
    for text in texts:
        try:
            rows.append(client.embed_batch([text])[0])
        except LLMRequestError as exc:
            log.warning("the embedding endpoint refused a passage: %s", exc)
            rows.append(None)
            last = exc
    if last is not None and all(row is None for row in rows):
        raise LLMConfigError(f"every input of a batch was refused, also one at a time; last: {last}")
    return rows
