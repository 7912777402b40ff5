"""What a corpus build produces, and the checks made once before any piece is built.

A wrong option (an unknown preset, FluidSynth asked for but not installed) would otherwise
fail every piece at the end of its expensive steps, and each failure would be logged as if
the piece were bad, which then skips it in every later run. So options are checked here,
in the calling process, before a worker starts; anything that still turns out to be a
configuration problem inside a worker raises :class:`ConfigError`, which stops the build
instead of being recorded against a piece.
"""

from __future__ import annotations

from dataclasses import dataclass

from clamp3.utils.errors import InputError

SYNTHS = ("auto", "fluidsynth", "additive")


class ConfigError(InputError):
    """A build setting that cannot work on this machine: ``str(err)`` is
    ``"<option>: <reason>"``. Never a property of one piece, so never logged as a piece failure."""


@dataclass(frozen=True)
class BuildOptions:
    """What to produce per piece. ``seconds_max``: audio length cap in seconds (> 0);
    ``synth``: ``auto``, ``fluidsynth`` or ``additive``; ``features``: name of a model preset
    whose audio front-end writes ``audio.npy`` (e.g. ``"mini"``), or None for no features;
    ``transpose``: transposed copies (ABC, MTF, texts; no audio) of each training piece, 0-11
    (:mod:`clamp3.corpus.transpose`); ``train_titles``: False writes the training split's
    texts and every split's ``eval/`` queries without the pieces' titles (``write_texts(...,
    titled=False)``); the validation and test records keep them. Only the assembly reads it,
    so changing it rebuilds no piece.
    Raises :class:`ConfigError` for a value no build could use."""

    seconds_max: float = 30.0
    audio: bool = True
    synth: str = "auto"
    features: str | None = None
    transpose: int = 0
    train_titles: bool = True

    def __post_init__(self) -> None:
        if self.features and not self.audio:
            raise ConfigError("features", "audio features need audio: drop --no-audio or --features")
        if not self.seconds_max > 0:  # also refuses NaN
            raise ConfigError("seconds_max", f"must be a positive number of seconds, got {self.seconds_max}")
        if not 0 <= self.transpose <= 11:
            raise ConfigError("transpose", f"must be 0-11 copies (11 other keys), got {self.transpose}")
        if self.synth not in SYNTHS:
            raise ConfigError("synth", f"unknown synthesizer {self.synth!r}; use {', '.join(SYNTHS)}")
