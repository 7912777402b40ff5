"""One piece of the corpus: its folder, which of its outputs are missing, and the steps that
make them (parse, describe, MusicXML, ABC, MIDI, MTF, audio, features).

Every output is written atomically and ``facts.json`` last, so a piece whose facts exist is
finished unless the options ask for outputs it lacks (:func:`is_complete`). A failure is a
:class:`PieceError` naming the stage; configuration errors and missing modules pass through
(they are no fault of the piece). The worker pool around it: :mod:`clamp3.corpus.build`.
"""

from __future__ import annotations

import json
import os
import traceback
import warnings
from pathlib import Path
from typing import Any

from clamp3.corpus.assemble import FILES, PIECES_DIR, split_of
from clamp3.corpus.options import BuildOptions, ConfigError
from clamp3.corpus.select import PieceRef
from clamp3.utils.io import save_npy_atomic, write_json_atomic, write_text_atomic


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
    if (facts or {}).get("transposed_count", 0) != options.transpose:
        steps.append("transposed")
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


def _step_transposed(score: Any, ref: PieceRef, directory: Path, facts: dict, options: BuildOptions) -> None:
    """Transposed copies of a training piece (:mod:`clamp3.corpus.transpose`); other splits
    only record that none are due, so they are never asked again."""
    from clamp3.corpus.transpose import write_transposed

    made, failed = [], []
    if options.transpose and split_of(facts["group"]) == "train":
        made, failed = write_transposed(directory, facts, options.transpose)
    facts["transposed"], facts["transposed_count"] = made, options.transpose
    if failed:
        facts["transposed_failed"] = failed
    else:
        facts.pop("transposed_failed", None)


_STEPS = {
    "musicxml": _step_musicxml,
    "abc": _step_abc,
    "midi": _step_midi,
    "mtf": _step_mtf,
    "wav": _step_wav,
    "npy": _step_npy,
    "transposed": _step_transposed,
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
