"""Embed a folder tree (or one file): the job behind ``clamp3 embed``.

On-disk layout of the output (compatible with the official ``extract_clamp3.py``)::

    OUT/<relative path without extension>.npy   float32 (1, D) global vector, not normalised
                                                 (or (1, n, H) last hidden states with pooled=False)
    OUT/manifest.jsonl                           one record per embedded file (``clamp3.formats``)
    OUT/errors.jsonl                             one record per failed file (``clamp3.utils.errorlog``)
    (``manifest.rank-K.jsonl`` / ``errors.rank-K.jsonl`` for rank K > 0 of a distributed run)

Every ``.npy`` is written atomically and its manifest record appended after it, so a killed run
leaves only complete files. A rerun skips every file whose record matches the input's size and
modification time and whose ``.npy`` exists, and embeds the rest; it refuses to add to a folder
whose records name another model (``clamp3.model_identity``) or the other pooling, unless
``overwrite``.

A file embedded before and gone from the input now is reported (``EmbedReport.vanished``) and its
embedding kept; ``prune=True`` (``--prune``) deletes it, and ``index --sync`` then drops it.

A failure is appended to ``errors.jsonl`` (one flushed line, so it survives a kill) and printed
the moment it happens. A rerun keeps the records of files that still fail and drops those of
files that now embed (or that left the input).

Inputs: every supported file below ``IN``, except hidden files and folders, the output folder
itself when it lies inside ``IN``, and any sub-folder holding a clamp3 manifest (an earlier
output), so an output kept beside the music is never embedded as input.
Images (``.png .jpg .jpeg .webp``) are embedded as their caption (the official image search);
their records add ``caption`` and ``captioner``. Cover art kept beside the music is an image
too: ``--modality symbolic`` / ``audio`` leaves it out.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clamp3.encode import Preparer
from clamp3.formats import (
    ManifestRecord,
    append_record,
    folder_identity,
    is_embedding_folder,
    log_names,
    manifest_files,
    manifest_rank,
    read_manifest,
    read_manifest_file,
    write_manifest_file,
)
from clamp3.inputs import Prepared, extensions, kind_of, modality_of
from clamp3.model_identity import ModelIdentity, identify, locate, require_same_model
from clamp3.pipeline import Clamp3Pipeline, as_pipeline
from clamp3.utils.errorlog import append_error, keep_errors
from clamp3.utils.errors import InputError
from clamp3.utils.io import file_sha256, remove_stale_temporaries, save_npy_atomic
from clamp3.utils.walk import Listing, walk_files

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model


_PROCESS_START = time.time()


@dataclass
class EmbedReport:
    """Counts of one run: ``found`` supported inputs in the whole input (every rank's share);
    ``total`` in this rank's share, of which ``embedded`` now, ``skipped`` as already done and
    ``failures`` (relative path, reason). ``vanished``: embedded files no longer in the input
    (relative paths), whose embeddings were deleted when ``pruned``, else kept."""

    found: int = 0
    total: int = 0
    embedded: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    pruned: bool = False

    @property
    def failed(self) -> int:
        return len(self.failures)


def list_inputs(root: Path, modality: str | None = None, exclude: Path | None = None) -> Listing:
    """Supported files under ``root`` by the walker's policy (:mod:`clamp3.utils.walk`: sorted,
    hidden entries skipped, unlistable folders reported), leaving out ``exclude`` (the output
    folder) and sub-folders that hold a clamp3 manifest."""
    listing = walk_files(root, extensions(), skip=[exclude], prune=is_embedding_folder)
    if modality is not None:
        listing.files = [p for p in listing.files if modality_of(p) == modality]
    return listing


def shard_from_env() -> tuple[int, int]:
    """(rank, world size) from torchrun / accelerate environment variables, else (0, 1)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def read_manifests(out_dir: Path) -> dict[str, ManifestRecord]:
    """Manifest records of every rank, keyed by input path relative to the input root (the
    last record of a path wins)."""
    return {record.path: record for record in read_manifest(out_dir)}


def _is_done(record: ManifestRecord | None, path: Path, out_dir: Path) -> bool:
    if not record or not (out_dir / record.npy).is_file():
        return False
    stat = path.stat()
    return record.size == stat.st_size and record.mtime_ns == stat.st_mtime_ns


def check_compatible(
    records: dict[str, ManifestRecord], identity: ModelIdentity, pooled: bool, out: Path
) -> None:
    """Refuse (``InputError``) to add embeddings to a folder whose records come from another
    model (:func:`clamp3.model_identity.require_same_model`) or the other pooling: the folder
    would mix incomparable vectors. A folder with no records yet has nothing to compare."""
    if not records:
        return
    way_out = "use a new folder or --overwrite"
    stored = folder_identity(list(records.values()), out, way_out)
    require_same_model((f"the embeddings in {out}", stored), ("this run", identity), out, way_out=way_out)
    other = next((r for r in records.values() if r.pooled != pooled), None)
    if other is not None:
        kinds = {True: "pooled", False: "unpooled"}
        raise InputError(out, f"holds {kinds[other.pooled]} embeddings, not {kinds[pooled]}; {way_out}")


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


def vanished_records(records: dict[str, ManifestRecord], root: Path) -> list[ManifestRecord]:
    """The latest records of files embedded from ``root`` that are no longer there (deleted or
    renamed since). Records of another input folder are not this run's to judge."""
    here = str(root.resolve())
    return [r for r in records.values() if r.input_root == here and not (root / r.path).is_file()]


def prune(out: Path, gone: list[ManifestRecord], root: Path) -> None:
    """Delete the embeddings of the ``gone`` files: their records first (each manifest rewritten
    atomically), then their ``.npy`` files, so a kill never leaves a record without its file.
    A ``.npy`` that a kept record names (another file took the name since) stays."""
    here, names = str(root.resolve()), {record.path for record in gone}
    kept: list[ManifestRecord] = []
    for manifest in manifest_files(out):
        records = read_manifest_file(manifest)
        left = [r for r in records if not (r.input_root == here and r.path in names)]
        if len(left) != len(records):
            write_manifest_file(manifest, left)
        kept += left
    in_use = {record.npy for record in kept}
    for record in gone:
        if record.npy not in in_use:
            (out / record.npy).unlink(missing_ok=True)


def _discard_outputs(out: Path, rank: int, world: int) -> None:
    """--overwrite: delete this rank's manifest and the .npy files it lists (they may come from
    another model); rank 0 also clears the ranks an earlier, wider launch left."""
    own = out / log_names(rank)[0]
    stale = [p for p in manifest_files(out) if rank == 0 and (manifest_rank(p) or 0) >= world]
    for manifest in [own, *stale]:
        for record in read_manifest_file(manifest):
            (out / record.npy).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)


def check_paths(in_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """The checks of :func:`embed_folder` that need no model (``InputError``): a missing input,
    an output named like a ``.npy`` file, the output being the input. Callers that load a model
    for the run check these first, so a typo costs no model load (or a 1.8 GB download)."""
    source, out = Path(in_dir), Path(out_dir)
    if out.suffix.lower() == ".npy" and not out.is_dir():  # ``embed a.mid a.npy`` made a folder a.npy/
        raise InputError(
            out, f"the output is a folder (it holds <name>.npy and {log_names(0)[0]}); give a folder name"
        )
    if source.is_file():
        kind_of(source)  # InputError for an unsupported type
    elif not source.is_dir():
        raise InputError(source, "no such file or folder")
    elif out.exists() and out.resolve() == source.resolve():  # (1, D) vectors pass for (1, n, D) features
        raise InputError(
            out, "the output folder is the input folder: its embeddings would be read back as inputs"
        )


def _inputs(source: Path, out: Path, modality: str | None) -> tuple[Path, Listing]:
    """(input root, files): a folder's supported files, or one file with its folder as root."""
    check_paths(source, out)
    if source.is_file():
        found = kind_of(source).modality
        return source.parent, Listing([source] if modality in (None, found) else [])
    return source, list_inputs(source, modality, exclude=out)


class _Run:
    """One ``embed_folder`` call: writes outputs, manifest lines and error lines as it goes."""

    def __init__(
        self,
        pipeline: Clamp3Pipeline,
        out: Path,
        rank: int,
        pooled: bool,
        identity: ModelIdentity,
        root: Path,
    ):
        self.pipeline, self.out, self.pooled, self.identity = pipeline, out, pooled, identity
        self.root = str(root.resolve())
        self.manifest, self.errors = (out / name for name in log_names(rank))
        self.report = EmbedReport()
        self.embedded: set[str] = set()

    def fail(self, rel: str, reason: str) -> None:
        from tqdm.auto import tqdm

        self.report.failures.append((rel, reason))
        append_error(self.errors, rel, reason)
        tqdm.write(f"error: {rel}: {reason}", file=sys.stderr)

    def start_error_log(self, pending: set[str]) -> None:
        """Keep the old records of files about to be retried; drop the rest (fixed or gone)."""
        keep_errors(self.errors, pending.__contains__)

    def finish_error_log(self) -> None:
        """One record per file still failing: the latest, without files embedded since."""
        keep_errors(self.errors, lambda path: path not in self.embedded)

    def record(self, rel: str, npy: str, path: Path, item: Prepared, shape: tuple) -> ManifestRecord:
        stat = path.stat()
        return ManifestRecord(
            path=rel,
            npy=npy,
            modality=item.modality,
            n_items=item.n_items,
            shape=tuple(shape),
            sha256=file_sha256(path),
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            model=self.identity.id,
            model_fingerprint=str(self.identity.fingerprint),
            pooled=self.pooled,
            input_root=self.root,
            # An image's vector is its caption's: the caption and who wrote it (a hub id, or a
            # folder made absolute as the model is), to read and redo.
            caption=item.caption,
            captioner=locate(self.pipeline.captioner.name) if item.caption is not None else None,
        )

    def embed_chunk(
        self, preparer: Preparer, chunk: list[tuple[Path, str, str]], modality: str | None, batch_size: int
    ) -> None:
        """Prepare, embed and write one chunk of (file, relative path, relative .npy) jobs."""
        outcomes = preparer.embed_many([c[0] for c in chunk], modality, batch_size, pooled=self.pooled)
        for (path, rel, npy), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, InputError):
                self.fail(rel, outcome.reason)
                continue
            item, vector = outcome
            array = vector[None].astype(np.float32)
            save_npy_atomic(self.out / npy, array)
            append_record(self.manifest, self.record(rel, npy, path, item, array.shape))
            self.embedded.add(rel)
            self.report.embedded += 1


def embed_folder(
    model: Clamp3Model | Clamp3Pipeline,
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
    prune: bool = False,
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
    outputs. Files embedded from this input before and gone from it now are listed in the
    report's ``vanished`` and kept, or deleted with ``prune`` (one process only; refused when
    the input holds no file at all, as an unmounted drive would look). Raises ``InputError``
    for a missing input, or an output folder holding another model's (or the other pooling's)
    embeddings without ``overwrite``.
    """
    source, out = Path(in_dir), Path(out_dir)
    rank, world = shard or (0, 1)
    if prune and world > 1:  # the other ranks append to their manifests while it would rewrite them
        raise InputError(out, "--prune runs in one process, not in a distributed launch")
    root, listing = _inputs(source, out, modality)
    files = listing.files
    out.mkdir(parents=True, exist_ok=True)
    pipeline = as_pipeline(model)
    run = _Run(pipeline, out, rank, pooled, identify(pipeline.model, model_id or None), root)
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
    _settle_vanished(run.report, done, root, out, prune)
    pending = [job for job in jobs if overwrite or not _is_done(done.get(job[1]), job[0], out)]
    run.report.total, run.report.skipped = len(jobs) + len(collisions), len(jobs) - len(pending)
    run.start_error_log({job[1] for job in pending})
    for rel, reason in collisions:
        run.fail(rel, reason)
    for error in listing.errors if rank == 0 else []:  # a folder that could not be listed
        run.report.total += 1
        run.fail(Path(os.path.relpath(error.path, root)).as_posix(), error.reason)
    with Preparer(pipeline, workers, timeout) as preparer:
        _embed_chunks(run, preparer, pending, modality, batch_size, chunk_size, show_progress)
    run.finish_error_log()
    return run.report


def _settle_vanished(
    report: EmbedReport, done: dict[str, ManifestRecord], root: Path, out: Path, delete: bool
) -> None:
    """List the embedded files gone from ``root`` in ``report``; with ``delete``, prune them."""
    gone = vanished_records(done, root)
    report.vanished = sorted(record.path for record in gone)
    if not (delete and gone):
        return
    if not any(root.iterdir()):
        raise InputError(
            root,
            f"is empty: --prune would delete the {len(gone)} embeddings made from it in {out} (a "
            "drive not mounted?); delete them yourself if that is what you want",
        )
    prune(out, gone, root)
    report.pruned = True


def _embed_chunks(
    run: _Run,
    preparer: Preparer,
    pending: list,
    modality: str | None,
    batch_size: int,
    chunk_size: int,
    show_progress: bool,
) -> None:
    """Embed ``pending`` jobs ``chunk_size`` at a time (each chunk's outputs and manifest lines
    are written before the next is read), with a progress bar in files."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc="embed", unit="file", disable=not show_progress)
    try:
        for lo in range(0, len(pending), chunk_size):
            chunk = pending[lo : lo + chunk_size]
            run.embed_chunk(preparer, chunk, modality, batch_size)
            bar.update(len(chunk))
    finally:
        bar.close()
