"""Convert whole trees of symbolic music files in parallel, resumably.

Layout: ``OUT_DIR`` mirrors ``IN_DIR``; each input gets one output with the same relative path
and a new extension (MusicXML -> ``.abc`` interleaved, MIDI -> ``.mtf``; reverse:
``.mtf`` -> ``.mid``, ``.abc`` -> ``.xml``). Optionally the standard (non-interleaved) ABC goes
to a second mirrored tree. ``OUT_DIR/errors.jsonl`` lists every input that failed in the latest
run (``{"path", "reason"}``), ``OUT_DIR/warnings.jsonl`` inputs converted with a warning
(voices whose bar durations differ, which the official pipeline keeps too).

Guarantees: outputs are written atomically (a file exists only when complete); a rerun skips
inputs whose outputs all exist, retries the failed ones and deletes temporary files left by a
killed run; a bad input never stops the batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.preprocess.abc import MUSICXML_EXTENSIONS
from clamp3.preprocess.mtf import MIDI_EXTENSIONS
from clamp3.utils.io import append_jsonl, remove_stale_temporaries, write_text_atomic
from clamp3.utils.workers import fork_pool, time_limit

logger = logging.getLogger(__name__)

TARGETS = ("symbolic", "midi", "musicxml")
# atomic_path() temporaries: ".<name>.<random>.tmp" next to the target
_OUTPUT_SUFFIXES = (".abc", ".mtf", ".mid", ".xml")


@dataclass(frozen=True)
class Job:
    """One input and the outputs it produces (``kind`` -> path)."""

    source: Path
    outputs: tuple[tuple[str, Path], ...]


@dataclass
class ConvertSummary:
    """What a :func:`convert_tree` run did. ``failed`` lists (input path, reason)."""

    total: int = 0
    converted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warned: int = 0
    errors_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def plan_jobs(
    in_dir: Path, out_dir: Path, to: str = "symbolic", standard_abc_dir: Path | None = None
) -> tuple[list[Job], list[tuple[str, str]]]:
    """All inputs under ``in_dir`` (sorted) with their outputs, and the inputs rejected up front
    because another input already maps to the same output (``a.xml`` and ``a.mxl``)."""
    jobs, clashes, claimed = [], [], {}
    skip_dirs = {d.resolve() for d in (out_dir, standard_abc_dir) if d is not None}
    for root, dirs, files in os.walk(in_dir):
        dirs[:] = sorted(d for d in dirs if (Path(root) / d).resolve() not in skip_dirs)
        for name in sorted(files):
            source = Path(root) / name
            outputs = _outputs_for(source.relative_to(in_dir), out_dir, to, standard_abc_dir)
            if not outputs:
                continue
            first = outputs[0][1]
            if first in claimed:
                clashes.append((str(source), f"output {first} is already produced from {claimed[first]}"))
                continue
            claimed[first] = source
            jobs.append(Job(source, outputs))
    return jobs, clashes


def _outputs_for(rel: Path, out_dir: Path, to: str, standard_abc_dir: Path | None) -> tuple:
    ext = rel.suffix.lower()
    if to == "symbolic" and ext in MUSICXML_EXTENSIONS:
        outputs = [("abc", out_dir / rel.with_suffix(".abc"))]
        if standard_abc_dir is not None:
            outputs.append(("standard_abc", standard_abc_dir / rel.with_suffix(".abc")))
        return tuple(outputs)
    if to == "symbolic" and ext in MIDI_EXTENSIONS:
        return (("mtf", out_dir / rel.with_suffix(".mtf")),)
    if to == "midi" and ext == ".mtf":
        return (("midi", out_dir / rel.with_suffix(".mid")),)
    if to == "musicxml" and ext == ".abc":
        return (("musicxml", out_dir / rel.with_suffix(".xml")),)
    return ()


def convert_file(job: Job, timeout: float | None = None) -> tuple[str, str | None, list[str]]:
    """Convert one input and write its outputs atomically -> (input, error or None, warnings).

    Never raises for a bad input: the reason is returned. Runs in worker processes.
    """
    from clamp3.preprocess.abc import abc_to_musicxml, interleave_abc_checked, musicxml_to_abc
    from clamp3.preprocess.mtf import midi_to_mtf, mtf_to_midi
    from clamp3.utils.errors import InputError

    kinds = dict(job.outputs)
    warnings: list[str] = []
    try:
        with time_limit(timeout, ConversionTimeout):
            if "abc" in kinds:
                standard = musicxml_to_abc(job.source)
                interleaved, warnings = interleave_abc_checked(standard, name=str(job.source))
                if "standard_abc" in kinds:
                    write_text_atomic(kinds["standard_abc"], standard)
                write_text_atomic(kinds["abc"], interleaved)
            elif "mtf" in kinds:
                write_text_atomic(kinds["mtf"], midi_to_mtf(job.source))
            elif "midi" in kinds:
                mtf_to_midi(_read(job.source), kinds["midi"])
            else:
                write_text_atomic(kinds["musicxml"], abc_to_musicxml(_read(job.source)) + "\n")
    except InputError as exc:
        return str(job.source), exc.reason, warnings
    except ConversionTimeout:
        return str(job.source), f"conversion took longer than {timeout:g} s (timeout)", warnings
    except Exception as exc:  # a converter bug on one file must not stop the batch
        return str(job.source), f"{type(exc).__name__}: {exc}", warnings
    return str(job.source), None, warnings


def _read(path: Path) -> str:
    from clamp3.utils.errors import InputError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read UTF-8 text: {exc}") from exc
    if not text.strip():
        raise InputError(path, "empty file")
    return text


class ConversionTimeout(BaseException):
    """A file took too long. A ``BaseException`` so the converters' ``except Exception``
    clauses (which turn errors into "bad input") let it through."""


def convert_tree(
    in_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    to: str = "symbolic",
    workers: int | None = None,
    standard_abc_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    timeout: float | None = 300.0,
    show_progress: bool = True,
) -> ConvertSummary:
    """Convert every supported file under ``in_dir`` into the mirrored tree ``out_dir``.

    ``to``: ``"symbolic"`` (MusicXML -> interleaved ``.abc``, MIDI -> ``.mtf``), ``"midi"``
    (``.mtf`` -> ``.mid``) or ``"musicxml"`` (``.abc`` -> ``.xml``). ``workers`` processes
    (default: CPU count; 0 or 1 converts in this process). Inputs whose outputs exist are
    skipped unless ``overwrite``; ``timeout`` seconds per file. Failures go to
    ``out_dir/errors.jsonl`` and the returned summary; they never stop the batch.
    """
    if to not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got {to!r}")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise NotADirectoryError(f"{in_dir}: input directory not found")
    std_dir = Path(standard_abc_dir) if standard_abc_dir is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    removed = sum(remove_stale_temporaries(d, _OUTPUT_SUFFIXES, started) for d in (out_dir, std_dir) if d)
    if removed > 0:
        logger.info("removed %d temporary files left by an interrupted run", removed)

    jobs, clashes = plan_jobs(in_dir, out_dir, to, std_dir)
    summary = ConvertSummary(total=len(jobs) + len(clashes), errors_path=out_dir / "errors.jsonl")
    todo = [j for j in jobs if overwrite or not all(p.exists() for _, p in j.outputs)]
    summary.skipped = len(jobs) - len(todo)
    # Both logs describe the latest run; every input that failed before is retried in it.
    write_text_atomic(summary.errors_path, "")
    write_text_atomic(out_dir / "warnings.jsonl", "")
    for source, reason in clashes:
        _record(summary, out_dir, source, reason, [])

    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="convert", unit="file", disable=not show_progress) as bar:
        for source, error, warnings in _run(todo, workers, timeout):
            _record(summary, out_dir, source, error, warnings)
            bar.update(1)
            if summary.failed:
                bar.set_postfix(failed=len(summary.failed), refresh=False)
    return summary


def _record(summary: ConvertSummary, out_dir: Path, source: str, error: str | None, warnings: list) -> None:
    if error is not None:
        summary.failed.append((source, error))
        append_jsonl(out_dir / "errors.jsonl", {"path": source, "reason": error})
        return
    summary.converted += 1
    if warnings:
        summary.warned += 1
        append_jsonl(out_dir / "warnings.jsonl", {"path": source, "warnings": warnings})


def _run(jobs: list[Job], workers: int | None, timeout: float | None) -> Iterator[tuple]:
    """Yield ``convert_file`` results as they finish, in-process or in a worker pool."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield convert_file(job, timeout)
        return
    pending = list(reversed(jobs))
    while pending:
        suspects = yield from _run_pool(pending, workers, timeout)
        # A worker died: retry each file it may have held alone, to blame only the culprit.
        for job in suspects:
            with fork_pool(1) as pool:
                try:
                    yield pool.submit(convert_file, job, timeout).result()
                except BrokenProcessPool:
                    yield str(job.source), _DIED, []
                except Exception as exc:  # e.g. a result that cannot be sent back
                    yield str(job.source), f"{type(exc).__name__}: {exc}", []


_DIED = "worker process died during conversion (crash, out of memory or killed)"


def _run_pool(pending: list[Job], workers: int, timeout: float | None) -> Generator[tuple, None, list[Job]]:
    """Drain ``pending`` through one pool, keeping a bounded number of files in flight.

    Returns early, with the unfinished files that were in flight, when a worker dies (crash,
    out of memory, killed); the pool is then unusable.
    """
    in_flight: dict[Future, Job] = {}
    with fork_pool(workers) as pool:
        try:
            while pending or in_flight:
                while pending and len(in_flight) < 4 * workers:
                    job = pending.pop()
                    try:
                        in_flight[pool.submit(convert_file, job, timeout)] = job
                    except BrokenProcessPool:
                        pending.append(job)
                        break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    if future.exception() is None:
                        del in_flight[future]
                        yield future.result()
                if any(future.exception() is not None for future in done):
                    return list(in_flight.values())
        except BaseException:  # interrupted: do not wait for the queued files
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return []
