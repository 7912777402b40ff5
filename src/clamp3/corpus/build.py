"""Build the aligned corpus: per piece a score (MusicXML, interleaved ABC), its MIDI (and MTF),
audio of that MIDI and facts; then texts, splits, JSONL and the evaluation folders.

Pieces are built in worker processes. Each output file is written atomically and a piece is
finished when its ``facts.json`` (written last) exists, so an interrupted build resumes where
it stopped. A piece that fails is logged to ``errors.jsonl`` with the stage and reason and the
next candidate takes its place, so ``pieces=N`` gives N pieces whenever the corpus has them.
Configuration errors (:class:`~clamp3.corpus.options.ConfigError`, missing modules) are not
piece failures: they are checked before the workers start, and one met inside a worker stops
the build without logging any piece.
On-disk layout: see :mod:`clamp3.corpus.assemble` and ``docs/corpus.md``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clamp3.corpus.assemble import FILES, PIECES_DIR, assemble
from clamp3.corpus.options import BuildOptions, ConfigError
from clamp3.corpus.select import PieceRef, select_pieces
from clamp3.utils.errorlog import ERRORS_NAME, error_record, read_errors
from clamp3.utils.io import append_jsonl, save_npy_atomic, write_json_atomic, write_text_atomic
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


def piece_dir(out: str | os.PathLike, piece_id: str) -> Path:
    return Path(out) / PIECES_DIR / piece_id


def is_complete(directory: Path, options: BuildOptions) -> bool:
    """True when every requested output exists and was made with the same audio settings."""
    facts_path = directory / FILES["facts"]
    if not facts_path.is_file():
        return False
    facts = json.loads(facts_path.read_text(encoding="utf-8"))
    return not _missing_steps(directory, facts, options)


def _missing_steps(directory: Path, facts: dict[str, Any] | None, options: BuildOptions) -> list[str]:
    steps = [s for s in ("musicxml", "abc", "midi", "mtf") if not (directory / FILES[s]).is_file()]
    if facts is None:
        steps.append("facts")
    audio = (facts or {}).get("audio") or {}
    if options.audio and (
        not (directory / FILES["wav"]).is_file() or audio.get("seconds_max") != options.seconds_max
    ):
        steps.append("wav")
    if options.features and (
        "wav" in steps
        or not (directory / FILES["npy"]).is_file()
        or audio.get("features") != options.features
    ):
        steps.append("npy")
    return steps


def build_piece(ref: PieceRef, out: str, options: BuildOptions) -> dict[str, Any]:
    """Build the missing outputs of one piece; returns its facts.

    Raises ``PieceError`` naming the piece, the stage that failed and the reason.
    """
    directory = piece_dir(out, ref.id)
    facts_path = directory / FILES["facts"]
    facts = json.loads(facts_path.read_text(encoding="utf-8")) if facts_path.is_file() else None
    steps = _missing_steps(directory, facts, options)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            facts = _run_steps(ref, directory, facts, steps, options)
    except _StepFailed as failed:
        cause = failed.__cause__
        detail = f"{type(cause).__name__}: {cause}".strip()
        trace = "".join(traceback.format_exception(cause, limit=-4))
        raise PieceError(ref, failed.stage, detail, trace) from cause
    # music21's warnings (MIDI channels, odd notation) are kept with the piece, not printed
    notes = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught))
    if notes:
        facts["warnings"] = notes[:10]
    write_json_atomic(facts_path, facts)
    return facts


def _run_steps(
    ref: PieceRef, directory: Path, facts: dict[str, Any] | None, steps: list[str], options: BuildOptions
) -> dict[str, Any]:
    """Run the missing ``steps``; a failure is re-raised as :class:`_StepFailed` naming the stage,
    except configuration errors and missing modules, which are no fault of the piece."""
    stage = "parse"
    try:
        score = _parse(ref) if set(steps) & {"musicxml", "abc", "midi", "facts"} else None
        if facts is None:
            stage = "describe"
            facts = _describe(score, ref)
        for stage in steps:
            if stage != "facts":
                _STEPS[stage](score, ref, directory, facts, options)
        if "seconds" not in facts:  # facts lost (killed before they were written), MIDI kept
            stage = "midi"
            facts["seconds"] = _midi_seconds(directory / FILES["midi"])
    except (ConfigError, ImportError):
        raise
    except Exception as exc:
        raise _StepFailed(stage) from exc
    return facts


class _StepFailed(Exception):
    """Carries the stage that failed; the original exception is its ``__cause__``."""

    def __init__(self, stage: str):
        super().__init__(stage)
        self.stage = stage


class PieceError(RuntimeError):
    """A piece that could not be built: ``str(err)`` names the piece, the stage and the reason."""

    def __init__(self, ref: PieceRef, stage: str, reason: str, trace: str = ""):
        self.ref, self.stage, self.reason, self.trace = ref, stage, reason, trace
        number = f" (tune {ref.number})" if ref.number is not None else ""
        super().__init__(f"{ref.id} [{ref.source}{number}] {stage}: {reason}")


def _parse(ref: PieceRef) -> Any:
    from music21 import corpus, stream

    score = (
        corpus.parse(ref.source, number=ref.number) if ref.number is not None else corpus.parse(ref.source)
    )
    if isinstance(score, stream.Opus):
        raise ValueError("the file holds several scores (an opus), not one piece")
    if not score.parts:
        raise ValueError("the score has no parts")
    from clamp3.corpus.textfix import repair_metadata

    repair_metadata(score)  # before anything reads or writes it: titles, texts, MusicXML
    return score


def _describe(score: Any, ref: PieceRef) -> dict[str, Any]:
    from clamp3.corpus.describe import describe
    from clamp3.corpus.textfix import find_unclean

    facts = describe(score, ref)
    facts["group"] = ref.group
    unclean = find_unclean(facts)
    if unclean:
        raise ValueError(f"control or replacement characters left after repair: {'; '.join(unclean[:3])}")
    return facts


def _step_musicxml(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    from clamp3.corpus.render import write_musicxml

    write_musicxml(score, directory / FILES["musicxml"])


def _step_abc(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    from clamp3.preprocess import interleave_abc, musicxml_to_abc

    path = directory / FILES["musicxml"]
    write_text_atomic(directory / FILES["abc"], interleave_abc(musicxml_to_abc(path), name=str(path)))


def _step_midi(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    from clamp3.corpus.render import write_midi

    path = directory / FILES["midi"]
    repairs = write_midi(score, path, facts["programs"], facts["default_qpm"])
    if repairs:
        facts["midi_repairs"] = repairs
    facts["seconds"] = _midi_seconds(path)


def _midi_seconds(path: Path) -> float:
    """Length of a MIDI file in seconds (tempo changes applied)."""
    from clamp3.corpus.synth import read_notes

    return round(read_notes(path)[1], 3)


def _step_mtf(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    from clamp3.preprocess import midi_to_mtf

    write_text_atomic(directory / FILES["mtf"], midi_to_mtf(directory / FILES["midi"]))


def _step_wav(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    from clamp3.corpus.render import render_audio

    info = render_audio(
        directory / FILES["midi"], directory / FILES["wav"], options.seconds_max, options.synth
    )
    facts["audio"] = {**info, "seconds_max": options.seconds_max}


def _step_npy(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    features = _frontend(options.features).features_from_file(directory / FILES["wav"])
    save_npy_atomic(directory / FILES["npy"], features.astype("float32"))
    facts["audio"]["features"] = options.features
    facts["audio"]["feature_rows"] = int(features.shape[0])


_STEPS = {
    "musicxml": _step_musicxml,
    "abc": _step_abc,
    "midi": _step_midi,
    "mtf": _step_mtf,
    "wav": _step_wav,
    "npy": _step_npy,
}
_FRONTENDS: dict[str, Any] = {}


def _frontend(preset: str) -> Any:
    """The audio front-end of a model preset, loaded once per worker process. Raises
    :class:`ConfigError` when it cannot be loaded (e.g. MERT weights absent): that would fail
    every piece alike."""
    if preset not in _FRONTENDS:
        from clamp3.audio import load_frontend
        from clamp3.config import load_preset

        try:
            _FRONTENDS[preset] = load_frontend(load_preset(preset).tower("audio"))
        except Exception as exc:
            reason = f"cannot load the audio front-end of preset {preset!r}: {type(exc).__name__}: {exc}"
            raise ConfigError("features", reason) from exc
    return _FRONTENDS[preset]


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
) -> BuildSummary:
    """Build (or resume) a corpus of ``pieces`` pieces (all candidates when None) under ``out``.

    ``workers``: processes (default: CPU count). Pieces logged as failed by an earlier run are
    skipped unless ``retry_failed``. ``candidates`` replaces the music21 selection (tests).
    ``timeout``: seconds one piece may take before it counts as failed (None: no limit).
    Ends by writing texts, splits, JSONL, evaluation folders and the manifest
    (:func:`clamp3.corpus.assemble.assemble`).

    Raises :class:`ConfigError` before anything is written for a count or time below 1 /
    not positive, an unusable synthesizer or feature preset, and during the build for a
    configuration error met by a worker (no piece is logged for it); ``InputError`` when no
    piece could be built.
    """
    from tqdm.auto import tqdm

    start, cpu_start = time.perf_counter(), cpu_seconds()
    options = options or BuildOptions()
    check_arguments(pieces, workers, timeout)
    check_options(options)
    out = str(out)
    Path(out, PIECES_DIR).mkdir(parents=True, exist_ok=True)
    order = candidates if candidates is not None else select_pieces(None)
    target = len(order) if pieces is None else min(pieces, len(order))
    known_failed = set() if retry_failed else {e.extra["id"] for e in read_errors(Path(out) / ERRORS_NAME)}
    workers = workers or os.cpu_count() or 1
    summary = BuildSummary(out=out)
    done: set[str] = set()
    position = 0
    bar = tqdm(total=target, desc="building corpus", unit="piece", disable=not show_progress)
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
            task = functools.partial(_worker, out=out, options=options, timeout=timeout)
            # closing(): a configuration error leaves the loop; the pool must stop at once
            with contextlib.closing(
                run_isolated(task, todo, workers if workers > 1 else 0, timeout)
            ) as outcomes:
                for outcome in outcomes:
                    _record(_result(outcome, todo[outcome.index]), out, summary, done, bar)
    finally:
        bar.close()
    summary.built = [ref.id for ref in order[:position] if ref.id in done]
    summary.seconds = round(time.perf_counter() - start, 2)
    summary.cpu_seconds = round(cpu_seconds() - cpu_start, 2)
    timing = {"wall_seconds": summary.seconds, "cpu_seconds": summary.cpu_seconds, "workers": workers}
    timing["pieces_built"] = len(summary.built) - summary.reused
    summary.splits = assemble(out, summary.built, options, timing=timing)
    return summary


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


def summary_dict(summary: BuildSummary) -> dict[str, Any]:
    data = asdict(summary)
    data["failed"] = [{k: e[k] for k in ("id", "stage", "reason")} for e in summary.failed]
    return data
