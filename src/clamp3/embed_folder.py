"""Embed a folder tree: the job behind ``clamp3 embed``.

On-disk layout of the output (compatible with the official ``extract_clamp3.py``)::

    OUT/<relative path without extension>.npy   float32 (1, D) global vector, not normalised
                                                 (or (1, n, H) last hidden states with pooled=False)
    OUT/manifest.jsonl                           one record per embedded file (see ``_record``)
    OUT/errors.jsonl                             one record per failed file: path, reason
    (``manifest.rank-K.jsonl`` / ``errors.rank-K.jsonl`` for rank K > 0 of a distributed run)

Every ``.npy`` is written atomically and its manifest record appended after it, so a killed run
leaves only complete files; a rerun skips every file whose record matches the input's size and
modification time and whose ``.npy`` exists, and embeds the rest.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.encode import FILE_EXTENSIONS, Prepared, Preparer, detect_modality, embed_prepared
from clamp3.utils.errors import InputError
from clamp3.utils.io import (
    append_jsonl,
    read_jsonl,
    remove_stale_temporaries,
    save_npy_atomic,
    write_text_atomic,
)
from clamp3.utils.workers import fork_pool

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model


_PROCESS_START = time.time()


@dataclass
class EmbedReport:
    total: int = 0
    embedded: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def list_inputs(root: Path, modality: str | None = None) -> list[Path]:
    """Supported files under ``root`` (recursive, sorted, hidden files and folders skipped)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in FILE_EXTENSIONS:
                continue
            if modality is None or detect_modality(path) == modality:
                found.append(path)
    return found


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) from torchrun / accelerate environment variables, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _log_names(rank: int) -> tuple[str, str]:
    suffix = "" if rank == 0 else f".rank-{rank}"
    return f"manifest{suffix}.jsonl", f"errors{suffix}.jsonl"


def read_manifests(out_dir: Path) -> dict[str, dict]:
    """Manifest records of every rank, keyed by input path relative to the input root."""
    records: dict[str, dict] = {}
    for path in sorted(out_dir.glob("manifest*.jsonl")):
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


def _record(rel: str, npy: str, path: Path, item: Prepared, shape: tuple, model_id: str) -> dict:
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
        "model": model_id,
    }


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


def embed_folder(
    model: Clamp3Model,
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    pooled: bool = True,
    modality: str | None = None,
    batch_size: int = 32,
    workers: int = 0,
    chunk_size: int = 64,
    shard: tuple[int, int] | None = None,
    model_id: str = "",
    show_progress: bool = True,
) -> EmbedReport:
    """Embed every supported file under ``in_dir`` into ``out_dir`` (layout in the module doc).

    ``shard = (rank, world)`` embeds only files ``rank::world`` of the sorted list, so each
    process of a torchrun/accelerate launch takes its share; the union equals one process.
    ``workers`` > 0 converts MusicXML/MIDI in that many worker processes.
    """
    from tqdm.auto import tqdm

    root, out = Path(in_dir), Path(out_dir)
    if not root.is_dir():
        raise InputError(root, "input folder does not exist")
    rank, world = shard or (0, 1)
    out.mkdir(parents=True, exist_ok=True)
    # .npy temporaries of a killed run; other ranks' files being written now are newer.
    remove_stale_temporaries(out, (".npy", ".jsonl"), older_than=_PROCESS_START)
    manifest_name, errors_name = _log_names(rank)
    jobs, failures = plan(list_inputs(root, modality), root, out)
    jobs = jobs[rank::world]
    report = EmbedReport(total=len(jobs) + len(failures), failures=list(failures))
    done = read_manifests(out)
    pending = [job for job in jobs if not _is_done(done.get(job[1]), job[0], out)]
    report.skipped = len(jobs) - len(pending)
    executor = fork_pool(workers) if workers > 0 else None
    preparer = Preparer(model, executor)
    bar = tqdm(total=len(pending), desc="embed", unit="file", disable=not show_progress)
    try:
        for lo in range(0, len(pending), chunk_size):
            chunk = pending[lo : lo + chunk_size]
            _embed_chunk(
                model, preparer, chunk, out, manifest_name, pooled, modality, batch_size, model_id, report
            )
            bar.update(len(chunk))
    finally:
        bar.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    lines = "".join(_error_line(rel, reason) for rel, reason in report.failures)
    write_text_atomic(out / errors_name, lines)
    return report


def _error_line(rel: str, reason: str) -> str:
    import json

    return json.dumps({"path": rel, "reason": reason, "time": time.time()}, ensure_ascii=False) + "\n"


def _embed_chunk(model, preparer, chunk, out, manifest_name, pooled, modality, batch_size, model_id, report):
    good: list[tuple[Path, str, str, Prepared]] = []
    for (path, rel, npy), item in zip(
        chunk, preparer.prepare_many([c[0] for c in chunk], modality), strict=True
    ):
        if isinstance(item, InputError):
            report.failures.append((rel, item.reason))
        else:
            good.append((path, rel, npy, item))
    if not good:
        return
    try:
        vectors = embed_prepared(model, [g[3] for g in good], batch_size, pooled=pooled)
    except Exception as exc:  # e.g. an item the tower rejects; retry one by one to isolate it
        if len(good) == 1:
            report.failures.append((good[0][1], f"embedding failed: {exc}"))
            return
        for g in good:
            _embed_chunk(
                model, preparer, [g[:3]], out, manifest_name, pooled, modality, batch_size, model_id, report
            )
        return
    for (path, rel, npy, item), vector in zip(good, vectors, strict=True):
        array = vector[None].astype(np.float32)
        save_npy_atomic(out / npy, array)
        append_jsonl(out / manifest_name, _record(rel, npy, path, item, array.shape, model_id))
        report.embedded += 1
