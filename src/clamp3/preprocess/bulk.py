"""Convert whole trees of symbolic music files in parallel, resumably.

Layout: ``OUT_DIR`` mirrors ``IN_DIR``; each input gets one output with the same relative path
and a new extension (MusicXML -> ``.abc`` interleaved, MIDI -> ``.mtf``; reverse:
``.mtf`` -> ``.mid``, ``.abc`` -> ``.xml``). Optionally the standard (non-interleaved) ABC goes
to a second mirrored tree. ``OUT_DIR/errors.jsonl`` lists every input that failed in the latest
run, and every subdirectory that could not be listed (``{"path", "reason"}``);
``OUT_DIR/warnings.jsonl`` the inputs whose current outputs were converted with a warning
(voices whose bar durations differ, which the official pipeline keeps too).

Guarantees: outputs are written atomically (a file exists only when complete); a rerun skips
inputs whose outputs all exist and are at least as new as the input (an edited input is
converted again), retries the failed ones and deletes temporary files left by a killed run;
a bad input never stops the batch.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clamp3.inputs import read_input_text
from clamp3.preprocess.abc import MUSICXML_EXTENSIONS
from clamp3.preprocess.mtf import MIDI_EXTENSIONS
from clamp3.utils.errorlog import ERRORS_NAME, append_error
from clamp3.utils.io import append_jsonl, json_text, read_jsonl, remove_stale_temporaries, write_text_atomic
from clamp3.utils.reasons import describe_exception
from clamp3.utils.walk import walk_files
from clamp3.utils.workers import WorkerDied, WorkTimeout, run_isolated, time_limit

logger = logging.getLogger(__name__)

TARGETS = ("symbolic", "midi", "musicxml")
# atomic_path() temporaries: ".<name>.<random>.tmp" next to the target
_OUTPUT_SUFFIXES = (".abc", ".mtf", ".mid", ".xml")
WARNINGS_NAME = "warnings.jsonl"


@dataclass(frozen=True)
class Job:
    """One input and the outputs it produces (``kind`` -> path)."""

    source: Path
    outputs: tuple[tuple[str, Path], ...]


@dataclass
class ConvertSummary:
    """What a :func:`convert_tree` run did. ``failed`` lists (input path, reason); an unlistable
    subdirectory counts as one failed input (its files could not even be seen)."""

    total: int = 0
    converted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warned: int = 0
    errors_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


class ConvertInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`convert_tree`. ``summary`` counts what the run finished before it;
    those outputs are complete and a rerun skips them."""

    def __init__(self, summary: ConvertSummary):
        super().__init__("interrupted")
        self.summary = summary


def plan_jobs(
    in_dir: Path, out_dir: Path, to: str = "symbolic", standard_abc_dir: Path | None = None
) -> tuple[list[Job], list[tuple[str, str]]]:
    """All inputs under ``in_dir`` with their outputs, listed by :mod:`clamp3.utils.walk`
    (sorted, hidden entries skipped, the output folders left out), and what is rejected up
    front as (path, reason): an input whose output another input already produces (``a.xml``
    and ``a.mxl``), and a subdirectory that cannot be listed (its files would otherwise be
    missed without a word)."""
    jobs: list[Job] = []
    rejected: list[tuple[str, str]] = []
    claimed: dict[Path, Path] = {}
    listing = walk_files(in_dir, skip=[out_dir, standard_abc_dir])
    rejected.extend((error.path, error.reason) for error in listing.errors)
    for source in listing.files:
        outputs = _outputs_for(source.relative_to(in_dir), out_dir, to, standard_abc_dir)
        if not outputs:
            continue
        first = outputs[0][1]
        if first in claimed:
            rejected.append((str(source), f"output {first} is already produced from {claimed[first]}"))
            continue
        claimed[first] = source
        jobs.append(Job(source, outputs))
    return jobs, rejected


def is_current(job: Job) -> bool:
    """Whether a rerun may skip ``job``: every output exists and is at least as new as the
    input (make's rule), so an input edited after its conversion is converted again."""
    try:
        source_time = job.source.stat().st_mtime_ns
        return all(path.stat().st_mtime_ns >= source_time for _, path in job.outputs)
    except OSError:  # a missing output, or an input that vanished (its failure is reported)
        return False


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

    Never raises for a bad input: the reason is returned, and outputs older than the input
    (left from a version of it that did convert) or written by this failed attempt (a
    conversion that finished after its time limit) are deleted, so that ``OUT_DIR`` never holds
    an output that does not match its input. Runs in worker processes.
    """
    from clamp3.utils.errors import InputError

    started = time.time_ns()
    try:
        with time_limit(timeout):
            return str(job.source), None, _convert(job)
    except InputError as exc:
        error = exc.reason
    except WorkTimeout as exc:
        error = f"conversion {exc}"
    except Exception as exc:  # a converter bug on one file must not stop the batch
        error = describe_exception(exc)
    _remove_stale_outputs(job, started)
    return str(job.source), error, []


def _convert(job: Job) -> list[str]:
    """Write ``job``'s outputs; returns their warnings (MusicXML's interleaving, an ABC tune
    book of which only the first tune is converted)."""
    from clamp3.preprocess.abc import abc_to_musicxml, count_tunes, interleave_abc_checked, musicxml_to_abc
    from clamp3.preprocess.mtf import midi_to_mtf, mtf_to_midi

    kinds = dict(job.outputs)
    if "abc" in kinds:
        standard = musicxml_to_abc(job.source)
        interleaved, warnings = interleave_abc_checked(standard, name=str(job.source))
        if "standard_abc" in kinds:
            write_text_atomic(kinds["standard_abc"], standard)
        write_text_atomic(kinds["abc"], interleaved)
        return warnings
    if "mtf" in kinds:
        write_text_atomic(kinds["mtf"], midi_to_mtf(job.source))
    elif "midi" in kinds:
        mtf_to_midi(read_input_text(job.source), kinds["midi"])
    else:
        abc = read_input_text(job.source)
        write_text_atomic(kinds["musicxml"], abc_to_musicxml(abc) + "\n")
        tunes = count_tunes(abc)
        if tunes > 1:
            return [f"holds {tunes} tunes (X: fields); only the first is converted, as abc2xml does"]
    return []


def _remove_stale_outputs(job: Job, attempt_started: int) -> None:
    try:
        source_time = job.source.stat().st_mtime_ns
    except OSError:
        return  # the input is gone or unreadable: nothing says its outputs are stale
    for _, path in job.outputs:
        with contextlib.suppress(OSError):
            written = path.stat().st_mtime_ns
            if written < source_time or written >= attempt_started:
                path.unlink()


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
    (default: CPU count; 0 or 1 converts in this process). Inputs whose outputs exist and are
    not older than the input are skipped unless ``overwrite``; ``timeout`` seconds per file.
    Failures go to ``out_dir/errors.jsonl`` and the returned summary; they never stop the batch.
    Raises ``NotADirectoryError`` (naming the path) when ``in_dir`` is missing or a file, or an
    output directory cannot be created; ``ConvertInterrupted`` (a ``KeyboardInterrupt``) on Ctrl-C.
    """
    if to not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got {to!r}")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    std_dir = Path(standard_abc_dir) if standard_abc_dir is not None else None
    _check_directories(in_dir, out_dir, std_dir)
    started = time.time()
    removed = sum(remove_stale_temporaries(d, _OUTPUT_SUFFIXES, started) for d in (out_dir, std_dir) if d)
    if removed > 0:
        logger.info("removed %d temporary files left by an interrupted run", removed)

    jobs, rejected = plan_jobs(in_dir, out_dir, to, std_dir)
    todo = [j for j in jobs if overwrite or not is_current(j)]
    summary = ConvertSummary(total=len(jobs) + len(rejected), errors_path=out_dir / ERRORS_NAME)
    summary.skipped = len(jobs) - len(todo)
    _start_logs(out_dir, set(jobs) - set(todo))
    for source, reason in rejected:
        _record(summary, out_dir, source, reason, [])

    from tqdm.auto import tqdm

    try:
        with tqdm(total=len(todo), desc="convert", unit="file", disable=not show_progress) as bar:
            for source, error, warnings in _run(todo, workers, timeout):
                _record(summary, out_dir, source, error, warnings)
                bar.update(1)
                if summary.failed:
                    bar.set_postfix(failed=len(summary.failed), refresh=False)
    except KeyboardInterrupt:
        raise ConvertInterrupted(summary) from None
    return summary


def _check_directories(in_dir: Path, out_dir: Path, std_dir: Path | None) -> None:
    """Refuse unusable directory arguments up front, naming the path and what is wrong."""
    if not in_dir.is_dir():
        what = "is a file, not a directory" if in_dir.exists() else "input directory not found"
        raise NotADirectoryError(
            f"{in_dir}: {what} (convert takes a directory and converts the files under it)"
        )
    for directory in (out_dir, std_dir):
        if directory is None:
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"{directory}: cannot write outputs there: it is a file") from None
        except OSError as exc:
            raise NotADirectoryError(
                f"{directory}: cannot create the output directory: {exc.strerror or exc}"
            ) from exc


def _start_logs(out_dir: Path, skipped: set[Job]) -> None:
    """Begin this run's logs. ``errors.jsonl`` starts empty: every earlier failure is retried.
    ``warnings.jsonl`` keeps one record per skipped input that had one, since those inputs are
    not converted again and would otherwise lose their warnings; the others are re-recorded as
    they convert."""
    # Absolute paths, so that records still match when IN_DIR is spelled differently (./in, in).
    skipped_paths = {os.path.abspath(job.source) for job in skipped}
    kept: dict[str, dict] = {}
    for record in read_jsonl(out_dir / WARNINGS_NAME):
        path = record.get("path")
        if isinstance(path, str) and os.path.abspath(path) in skipped_paths:
            kept[os.path.abspath(path)] = record
    write_text_atomic(out_dir / ERRORS_NAME, "")
    write_text_atomic(out_dir / WARNINGS_NAME, "".join(json_text(r) + "\n" for r in kept.values()))


def _record(summary: ConvertSummary, out_dir: Path, source: str, error: str | None, warnings: list) -> None:
    if error is not None:
        summary.failed.append((source, error))
        append_error(out_dir / ERRORS_NAME, source, error)
        return
    summary.converted += 1
    if warnings:
        summary.warned += 1
        append_jsonl(out_dir / WARNINGS_NAME, {"path": source, "warnings": warnings})


def _run(jobs: list[Job], workers: int | None, timeout: float | None) -> Iterator[tuple]:
    """Yield ``convert_file`` results as they finish, in-process or in worker processes
    (:func:`clamp3.utils.workers.run_isolated`: a file that kills its worker, or hangs past the
    timeout where the alarm cannot reach it, fails alone)."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    processes = workers if workers > 1 and len(jobs) > 1 else 0  # 0 or 1 worker: this process
    for outcome in run_isolated(functools.partial(convert_file, timeout=timeout), jobs, processes, timeout):
        source = str(jobs[outcome.index].source)
        if outcome.ok:
            yield outcome.value
        elif isinstance(outcome.error, WorkerDied):
            yield source, "worker process died during conversion (crash, out of memory or killed)", []
        elif isinstance(outcome.error, WorkTimeout):
            yield source, f"conversion {outcome.error}", []
        else:  # e.g. a result that cannot be sent back
            yield source, describe_exception(outcome.error), []
