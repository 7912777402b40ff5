"""Build the aligned corpus: per piece a score (MusicXML, interleaved ABC), its MIDI (and MTF),
audio of that MIDI and facts; then texts, splits, JSONL and the evaluation folders.

Pieces are built in worker processes. Each output file is written atomically and a piece is
finished when its ``facts.json`` (written last) exists, so an interrupted build resumes where
it stopped. A piece that fails is logged to ``errors.jsonl`` with the stage and reason and the
next candidate takes its place, so ``pieces=N`` gives N pieces whenever the corpus has them.
Configuration errors (:class:`~clamp3.corpus.options.ConfigError`, missing modules) are not
piece failures: they are checked before the workers start, and one met inside a worker stops
the build without logging any piece.
One piece's steps: :mod:`clamp3.corpus.piece`. On-disk layout: see :mod:`clamp3.corpus.assemble`
and ``docs/corpus.md``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp3.corpus.assemble import PIECES_DIR, assemble, corpus_piece_ids
from clamp3.corpus.options import BuildOptions, ConfigError
from clamp3.corpus.piece import PieceError, build_piece, is_complete, piece_dir
from clamp3.corpus.select import PieceRef, select_pieces
from clamp3.utils.errorlog import ERRORS_NAME, error_record, read_errors
from clamp3.utils.io import append_jsonl
from clamp3.utils.workers import Outcome, WorkerDied, WorkTimeout, run_isolated, time_limit

logger = logging.getLogger(__name__)


@dataclass
class BuildSummary:
    """The outcome of :func:`build_corpus`: ids built (selection order), newly failed pieces,
    pieces reused from an earlier run, wall time and CPU time in seconds (this process and
    its workers) and pieces per split."""

    out: str
    built: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)


def _worker(ref: PieceRef, out: str, options: BuildOptions, timeout: float | None = None) -> dict[str, Any]:
    """Process-pool entry point: facts on success, an error record on a piece failure, or
    ``config`` = (option, reason) on a configuration error (exceptions from music21 do not
    always survive pickling, so errors travel as plain data)."""
    try:
        with time_limit(timeout):
            return {"ok": True, "facts": build_piece(ref, out, options)}
    except PieceError as err:
        return {"ok": False, "error": _error_record(err)}
    except WorkTimeout as exc:  # a BaseException: it passes the steps' own error handling
        return {"ok": False, "error": _error_record(PieceError(ref, "timeout", str(exc)))}
    except ConfigError as exc:
        return {"ok": False, "config": (exc.path, exc.reason)}
    except ImportError as exc:
        return {
            "ok": False,
            "config": ("dependencies", f"{exc}; install the corpus extra: pip install 'clamp3[corpus]'"),
        }


def _result(outcome: Outcome, ref: PieceRef) -> dict[str, Any]:
    """A runner outcome as a :func:`_worker` result. A worker that died or was killed past the
    time limit fails its piece; any other exception escaping :func:`_worker` is a bug and
    stops the build."""
    if outcome.ok:
        return outcome.value
    if isinstance(outcome.error, WorkTimeout):
        return {"ok": False, "error": _error_record(PieceError(ref, "timeout", str(outcome.error)))}
    if isinstance(outcome.error, WorkerDied):
        reason = "the worker process died (crash, out of memory or killed)"
        return {"ok": False, "error": _error_record(PieceError(ref, "worker", reason))}
    raise outcome.error


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (workers, FluidSynth)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _error_record(err: PieceError) -> dict[str, Any]:
    """The ``errors.jsonl`` record (``clamp3.utils.errorlog``): ``path`` is the music21 corpus
    path; the piece's ``id``, tune ``number``, ``stage``, ``message`` and ``trace`` follow."""
    ref = err.ref
    extra = {"id": ref.id, "number": ref.number, "stage": err.stage, "message": str(err), "trace": err.trace}
    return error_record(ref.source, err.reason, **extra)


def check_options(options: BuildOptions) -> None:
    """Fail fast, before any worker starts: the synthesizer must be usable and the feature
    preset must exist and have an audio tower with a known front-end. Raises
    :class:`ConfigError`. Front-end weights (MERT) are not loaded here; a worker that cannot
    load them raises :class:`ConfigError` too, which ends the build."""
    if options.audio:
        from clamp3.corpus.render import choose_synth

        choose_synth(options.synth)
    if options.features:
        from clamp3.audio.frontends import FRONTENDS
        from clamp3.config import load_preset

        try:
            audio = load_preset(options.features).tower("audio")
        except ValueError as exc:  # unknown preset, or a preset without an audio tower
            raise ConfigError("features", str(exc)) from None
        if audio.frontend not in FRONTENDS:
            raise ConfigError(
                "features", f"preset {options.features!r} has an unknown front-end {audio.frontend!r}"
            )


def build_corpus(
    out: str | os.PathLike,
    pieces: int | None = None,
    workers: int | None = None,
    options: BuildOptions | None = None,
    retry_failed: bool = False,
    show_progress: bool = True,
    candidates: list[PieceRef] | None = None,
    timeout: float | None = 300.0,
    exclude: Collection[str] = (),
) -> BuildSummary:
    """Build (or resume) a corpus of ``pieces`` pieces (all candidates when None) under ``out``.

    ``workers``: processes (default: CPU count). Pieces logged as failed by an earlier run are
    skipped unless ``retry_failed``. ``candidates`` replaces the music21 selection (tests).
    ``timeout``: seconds one piece may take before it counts as failed (None: no limit).
    ``exclude``: piece ids left out of the selection (e.g. :func:`corpus_piece_ids` of another
    corpus: pieces that corpus never had); the next candidates take their place.
    Ends by writing texts, splits, JSONL, evaluation folders and the manifest
    (:func:`clamp3.corpus.assemble.assemble`).

    Raises :class:`ConfigError` before anything is written for a count or time below 1 /
    not positive, an unusable synthesizer or feature preset, and during the build for a
    configuration error met by a worker (no piece is logged for it); ``InputError`` when no
    piece could be built.
    """
    start, cpu_start = time.perf_counter(), cpu_seconds()
    options = options or BuildOptions()
    check_arguments(pieces, workers, timeout)
    check_options(options)
    out = str(out)
    Path(out, PIECES_DIR).mkdir(parents=True, exist_ok=True)
    order = candidates if candidates is not None else select_pieces(None)
    excluded = set(exclude)
    order = [ref for ref in order if ref.id not in excluded]
    target = len(order) if pieces is None else min(pieces, len(order))
    if pieces is None:
        _say_when_a_rerun_grows(out, target)
    known_failed = set() if retry_failed else {e.extra["id"] for e in read_errors(Path(out) / ERRORS_NAME)}
    workers = workers or os.cpu_count() or 1
    summary = BuildSummary(out=out)
    done: set[str] = set()
    position = _build_pieces(
        order, target, known_failed, out, options, workers, timeout, summary, done, show_progress
    )
    summary.built = [ref.id for ref in order[:position] if ref.id in done]
    summary.seconds = round(time.perf_counter() - start, 2)
    summary.cpu_seconds = round(cpu_seconds() - cpu_start, 2)
    timing = {"wall_seconds": summary.seconds, "cpu_seconds": summary.cpu_seconds, "workers": workers}
    timing["pieces_built"] = len(summary.built) - summary.reused
    if excluded:
        timing["excluded_ids"] = len(excluded)
    summary.splits = assemble(out, summary.built, options, timing=timing)
    return summary


def _say_when_a_rerun_grows(out: str, target: int) -> None:
    """A corpus built with ``--pieces N`` and rerun without it grows to every candidate: options
    mean what they say on each run, so say it before the long build starts."""
    if not (Path(out) / "splits.json").is_file():
        return
    held = len(corpus_piece_ids(out))
    if held < target:
        logger.warning(
            "%s holds %d pieces; without --pieces every candidate is built (%d): pass --pieces %d "
            "to resume it as it was", out, held, target, held,
        )  # fmt: skip


def _build_pieces(
    order: list[PieceRef],
    target: int,
    known_failed: set[str],
    out: str,
    options: BuildOptions,
    workers: int,
    timeout: float | None,
    summary: BuildSummary,
    done: set[str],
    show_progress: bool,
) -> int:
    """Build candidates of ``order`` until ``target`` pieces are done (or the candidates run
    out), reusing complete pieces and skipping ``known_failed``; a failed piece is replaced by
    the next candidate. Fills ``done`` and ``summary``; returns how many candidates were
    looked at (the built pieces keep the selection's order)."""
    from tqdm.auto import tqdm

    position = 0
    bar = tqdm(total=target, desc="building corpus", unit="piece", disable=not show_progress)
    task = functools.partial(_worker, out=out, options=options, timeout=timeout)
    try:
        while len(done) < target and position < len(order):
            batch = order[position : position + target - len(done)]
            position += len(batch)
            todo = []
            for ref in batch:
                if ref.id in known_failed:
                    continue
                if is_complete(piece_dir(out, ref.id), options):
                    done.add(ref.id)
                    summary.reused += 1
                    bar.update(1)
                else:
                    todo.append(ref)
            # closing(): a configuration error leaves the loop; the pool must stop at once
            with contextlib.closing(
                run_isolated(task, todo, workers if workers > 1 else 0, timeout)
            ) as outcomes:
                for outcome in outcomes:
                    _record(_result(outcome, todo[outcome.index]), out, summary, done, bar)
    finally:
        bar.close()
    return position


def check_arguments(pieces: int | None, workers: int | None, timeout: float | None) -> None:
    """Refuse counts below 1 and a time limit that is not positive (None means default)."""
    for name, value in (("pieces", pieces), ("workers", workers)):
        if value is not None and value < 1:
            raise ConfigError(name, f"must be at least 1, got {value}")
    if timeout is not None and not timeout > 0:
        raise ConfigError("timeout", f"must be a positive number of seconds, got {timeout}")


def _record(result: dict[str, Any], out: str, summary: BuildSummary, done: set[str], bar: Any) -> None:
    """Account for one worker result: a built piece, a logged piece failure, or a
    configuration error, which is raised (never logged against the piece)."""
    if result["ok"]:
        done.add(result["facts"]["id"])
        bar.update(1)
    elif "config" in result:
        raise ConfigError(*result["config"])
    else:
        append_jsonl(Path(out) / ERRORS_NAME, result["error"])
        summary.failed.append(result["error"])
        logger.warning("skipped %s", result["error"]["message"])
        bar.set_postfix(failed=len(summary.failed))
