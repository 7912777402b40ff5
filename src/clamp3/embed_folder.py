"""Embed a folder tree (or one file): the job behind ``clamp3 embed``.

On-disk layout of the output (compatible with the official ``extract_clamp3.py``)::

    OUT/<relative path without extension>.npy   float32 (1, D) global vector, not normalised
                                                 (or (1, n, H) last hidden states with pooled=False)
    OUT/manifest.jsonl                           one record per embedded file (see ``_record``)
    OUT/errors.jsonl                             one record per failed file: path, reason, time
    (``manifest.rank-K.jsonl`` / ``errors.rank-K.jsonl`` for rank K > 0 of a distributed run)

Every ``.npy`` is written atomically and its manifest record appended after it, so a killed run
leaves only complete files. A rerun skips every file whose record matches the input's size and
modification time and whose ``.npy`` exists, and embeds the rest; it refuses to add to a folder
whose records name another model (by fingerprint) or the other pooling, unless ``overwrite``.

A failure is appended to ``errors.jsonl`` (one flushed line, so it survives a kill) and printed
the moment it happens. A rerun keeps the records of files that still fail and drops those of
files that now embed (or that left the input).

Inputs: every supported file below ``IN``, except hidden files and folders, the output folder
itself when it lies inside ``IN``, and any sub-folder holding a clamp3 manifest (an earlier
output), so an output kept beside the music is never embedded as input.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.encode import FILE_EXTENSIONS, Prepared, Preparer, detect_modality, embed_prepared
from clamp3.model_identity import ModelIdentity, identify
from clamp3.utils.errors import InputError
from clamp3.utils.io import (
    append_jsonl,
    atomic_path,
    read_jsonl,
    remove_stale_temporaries,
    save_npy_atomic,
)
from clamp3.utils.walk import Listing, walk_files

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model


_PROCESS_START = time.time()
MANIFEST = "manifest.jsonl"


@dataclass
class EmbedReport:
    """Counts of one run: ``found`` supported inputs in the whole input (every rank's share);
    ``total`` in this rank's share, of which ``embedded`` now, ``skipped`` as already done and
    ``failures`` (relative path, reason)."""

    found: int = 0
    total: int = 0
    embedded: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def _rank_of(manifest: Path) -> int | None:
    """0 for ``manifest.jsonl``, K for ``manifest.rank-K.jsonl``, None for other names."""
    if manifest.name == MANIFEST:
        return 0
    middle = manifest.name.removeprefix("manifest.rank-").removesuffix(".jsonl")
    return int(middle) if middle.isdigit() else None


def manifest_files(out_dir: Path) -> list[Path]:
    """``manifest.jsonl`` and every ``manifest.rank-K.jsonl`` of ``out_dir``, in rank order."""
    found = [(_rank_of(p), p) for p in out_dir.glob("manifest*.jsonl")]
    return [p for rank, p in sorted((r, p) for r, p in found if r is not None)]


def is_embedding_folder(folder: Path) -> bool:
    """True when ``folder`` holds a clamp3 manifest (a record with ``path`` and ``npy``)."""
    for manifest in manifest_files(folder):
        with open(manifest, encoding="utf-8", errors="replace") as handle:
            try:
                first = json.loads(handle.readline())
            except ValueError:
                continue
        if isinstance(first, dict) and "npy" in first and "path" in first:
            return True
    return False


def list_inputs(root: Path, modality: str | None = None, exclude: Path | None = None) -> Listing:
    """Supported files under ``root`` by the walker's policy (:mod:`clamp3.utils.walk`: sorted,
    hidden entries skipped, unlistable folders reported), leaving out ``exclude`` (the output
    folder) and sub-folders that hold a clamp3 manifest."""
    listing = walk_files(root, FILE_EXTENSIONS, skip=[exclude], prune=is_embedding_folder)
    if modality is not None:
        listing.files = [p for p in listing.files if detect_modality(p) == modality]
    return listing


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) from torchrun / accelerate environment variables, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _log_names(rank: int) -> tuple[str, str]:
    suffix = "" if rank == 0 else f".rank-{rank}"
    return f"manifest{suffix}.jsonl", f"errors{suffix}.jsonl"


def read_manifests(out_dir: Path) -> dict[str, dict]:
    """Manifest records of every rank, keyed by input path relative to the input root."""
    records: dict[str, dict] = {}
    for path in manifest_files(out_dir):
        for record in read_jsonl(path):
            records[record["path"]] = record
    return records


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_done(record: dict | None, path: Path, out_dir: Path) -> bool:
    if not record or not (out_dir / record["npy"]).is_file():
        return False
    stat = path.stat()
    return record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns


def _describe(model_id: str, pooled: bool) -> str:
    return f"model {model_id or '(unsaved)'} ({'pooled' if pooled else 'unpooled'})"


def check_compatible(records: dict[str, dict], identity: ModelIdentity, pooled: bool, out: Path) -> None:
    """Refuse (``InputError``) to add embeddings to a folder whose records come from another
    model (fingerprint) or the other pooling: the folder would mix incomparable vectors."""
    for record in records.values():
        # Records without a fingerprint predate it: their model cannot be vouched for.
        was_pooled = bool(record.get("pooled", len(record.get("shape", [1, 1])) == 2))
        if record.get("model_fingerprint") != identity.fingerprint or was_pooled != pooled:
            raise InputError(
                out,
                f"holds embeddings of {_describe(record.get('model') or 'unknown', was_pooled)}, "
                f"not of {_describe(identity.id, pooled)}; use a new folder or --overwrite",
            )


def plan(
    files: list[Path], root: Path, out_dir: Path
) -> tuple[list[tuple[Path, str, str]], list[tuple[str, str]]]:
    """(file, relative path, relative .npy) per input; inputs whose output name collides with
    an earlier one's (``a.mid`` and ``a.abc`` in one folder) are returned as failures."""
    seen: dict[str, str] = {}
    jobs, failures = [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        npy = Path(rel).with_suffix(".npy").as_posix()
        if npy in seen:
            failures.append((rel, f"output {npy} already belongs to {seen[npy]}; rename one of them"))
            continue
        seen[npy] = rel
        jobs.append((path, rel, npy))
    return jobs, failures


def _rewrite_jsonl(path: Path, records: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.touch()
        for record in records:
            append_jsonl(tmp, record)


def _discard_outputs(out: Path, rank: int, world: int) -> None:
    """--overwrite: delete this rank's manifest and the .npy files it lists (they may come from
    another model); rank 0 also clears the ranks an earlier, wider launch left."""
    own = out / _log_names(rank)[0]
    stale = [p for p in manifest_files(out) if rank == 0 and (_rank_of(p) or 0) >= world]
    for manifest in [own, *stale]:
        for record in read_jsonl(manifest):
            if "npy" in record:
                (out / record["npy"]).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)


def _inputs(source: Path, out: Path, modality: str | None) -> tuple[Path, Listing]:
    """(input root, files): a folder's supported files, or one file with its folder as root."""
    if source.is_file():
        if source.suffix.lower() not in FILE_EXTENSIONS:
            raise InputError(
                source, f"unsupported file type; supported: {', '.join(sorted(FILE_EXTENSIONS))}"
            )
        wanted = modality is None or detect_modality(source) == modality
        return source.parent, Listing([source] if wanted else [])
    if not source.is_dir():
        raise InputError(source, "no such file or folder")
    return source, list_inputs(source, modality, exclude=out)


class _Run:
    """One ``embed_folder`` call: writes outputs, manifest lines and error lines as it goes."""

    def __init__(
        self, model: Clamp3Model, out: Path, rank: int, pooled: bool, identity: ModelIdentity, root: Path
    ):
        self.model, self.out, self.pooled, self.identity = model, out, pooled, identity
        self.root = str(root.resolve())
        self.manifest, self.errors = (out / name for name in _log_names(rank))
        self.report = EmbedReport()
        self.embedded: set[str] = set()

    def fail(self, rel: str, reason: str) -> None:
        from tqdm.auto import tqdm

        self.report.failures.append((rel, reason))
        append_jsonl(self.errors, {"path": rel, "reason": reason, "time": time.time()})
        tqdm.write(f"error: {rel}: {reason}", file=sys.stderr)

    def start_error_log(self, pending: set[str]) -> None:
        """Keep the old records of files about to be retried; drop the rest (fixed or gone)."""
        _rewrite_jsonl(self.errors, [r for r in read_jsonl(self.errors) if r.get("path") in pending])

    def finish_error_log(self) -> None:
        """One record per file still failing: the latest, without files embedded since."""
        latest = {r["path"]: r for r in read_jsonl(self.errors) if "path" in r}
        _rewrite_jsonl(self.errors, [r for p, r in latest.items() if p not in self.embedded])

    def record(self, rel: str, npy: str, path: Path, item: Prepared, shape: tuple) -> dict:
        stat = path.stat()
        return {
            "path": rel,
            "npy": npy,
            "modality": item.modality,
            "n_items": item.n_items,
            "shape": list(shape),
            "sha256": _sha256(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "model": self.identity.id,
            "model_fingerprint": self.identity.fingerprint,
            "pooled": self.pooled,
            "input_root": self.root,
        }

    def embed_chunk(
        self, preparer: Preparer, chunk: list[tuple[Path, str, str]], modality: str | None, batch_size: int
    ) -> None:
        """Prepare, embed and write one chunk of (file, relative path, relative .npy) jobs."""
        good: list[tuple[Path, str, str, Prepared]] = []
        for (path, rel, npy), item in zip(chunk, preparer.prepare_many([c[0] for c in chunk], modality)):
            if isinstance(item, InputError):
                self.fail(rel, item.reason)
            else:
                good.append((path, rel, npy, item))
        try:
            vectors = embed_prepared(self.model, [g[3] for g in good], batch_size, pooled=self.pooled)
        except Exception:  # e.g. an item the tower rejects: embed one by one to isolate it
            vectors = []
            for _, rel, _, item in good:
                try:
                    vectors.append(embed_prepared(self.model, [item], batch_size, pooled=self.pooled)[0])
                except Exception as exc:
                    self.fail(rel, f"embedding failed: {exc}")
                    vectors.append(None)
        for (path, rel, npy, item), vector in zip(good, vectors, strict=True):
            if vector is None:
                continue
            array = vector[None].astype(np.float32)
            save_npy_atomic(self.out / npy, array)
            append_jsonl(self.manifest, self.record(rel, npy, path, item, array.shape))
            self.embedded.add(rel)
            self.report.embedded += 1


def embed_folder(
    model: Clamp3Model,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pooled: bool = True,
    modality: str | None = None,
    batch_size: int = 32,
    workers: int = 0,
    timeout: float | None = 300.0,
    chunk_size: int = 64,
    shard: tuple[int, int] | None = None,
    model_id: str = "",
    overwrite: bool = False,
    show_progress: bool = True,
) -> EmbedReport:
    """Embed every supported file under ``in_dir`` (or the one file ``in_dir``) into
    ``out_dir`` (layout in the module doc); failures are logged and printed, never raised.

    ``model_id`` is what the model was loaded from (a tag or a path, recorded absolute;
    default: the model's own weights location). ``shard = (rank, world)`` embeds only files
    ``rank::world`` of the sorted list, so each process of a torchrun/accelerate launch takes
    its share; the union equals one process. ``workers`` > 0 converts MusicXML/MIDI in that
    many worker processes; a conversion longer than ``timeout`` seconds fails that file
    (``None``: no limit). ``overwrite`` re-embeds everything, discarding this rank's earlier
    outputs. Raises ``InputError`` for a missing input, or an output folder holding another
    model's (or the other pooling's) embeddings without ``overwrite``.
    """
    from tqdm.auto import tqdm

    source, out = Path(in_dir), Path(out_dir)
    rank, world = shard or (0, 1)
    root, listing = _inputs(source, out, modality)
    files = listing.files
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(model, out, rank, pooled, identify(model, model_id or None), root)
    # .npy temporaries of a killed run; other ranks' files being written now are newer.
    remove_stale_temporaries(out, (".npy", ".jsonl"), older_than=_PROCESS_START)
    if overwrite:
        _discard_outputs(out, rank, world)
    jobs, collisions = plan(files, root, out)
    run.report.found = len(files)
    jobs, collisions = jobs[rank::world], collisions[rank::world]
    done = read_manifests(out)
    if not overwrite:
        check_compatible(done, run.identity, pooled, out)
    pending = [job for job in jobs if overwrite or not _is_done(done.get(job[1]), job[0], out)]
    run.report.total, run.report.skipped = len(jobs) + len(collisions), len(jobs) - len(pending)
    run.start_error_log({job[1] for job in pending})
    for rel, reason in collisions:
        run.fail(rel, reason)
    for error in listing.errors if rank == 0 else []:  # a folder that could not be listed
        run.report.total += 1
        run.fail(Path(os.path.relpath(error.path, root)).as_posix(), error.reason)
    bar = tqdm(total=len(pending), desc="embed", unit="file", disable=not show_progress)
    with Preparer(model, workers, timeout) as preparer:
        try:
            for lo in range(0, len(pending), chunk_size):
                chunk = pending[lo : lo + chunk_size]
                run.embed_chunk(preparer, chunk, modality, batch_size)
                bar.update(len(chunk))
        finally:
            bar.close()
    run.finish_error_log()
    return run.report
