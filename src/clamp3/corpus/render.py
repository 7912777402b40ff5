"""Render a music21 score to files: MusicXML, MIDI, and 24 kHz mono audio of that MIDI.

Audio comes from FluidSynth with a General-MIDI soundfont (Debian: ``fluidsynth`` and
``fluid-soundfont-gm``) when both are installed, else from the additive synthesizer in
:mod:`clamp3.corpus.synth`. Either way the audio is the first ``seconds_max`` seconds of
the MIDI plus a short release tail, peak-normalised, written as 16-bit PCM WAV.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.corpus.options import SYNTHS, ConfigError
from clamp3.corpus.synth import RELEASE_TAIL, read_notes, synthesize
from clamp3.utils.errors import InputError

SAMPLE_RATE = 24000
PEAK = 0.9  # peak level after normalisation: loud and consistent across synthesizers, no clipping
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
FLUIDSYNTH_TIMEOUT = 120  # seconds; a 60-second excerpt renders in about one


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`clamp3.utils.io.atomic_path`, but the temporary file keeps ``path``'s
    suffix, because music21 and FluidSynth choose the output format from it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_musicxml(score: Any, path: str | os.PathLike) -> None:
    """The score as uncompressed MusicXML, written atomically."""
    with atomic_file(path) as tmp:
        score.write("musicxml", fp=str(tmp))


def write_midi(score: Any, path: str | os.PathLike, programs: list[int], default_qpm: float) -> list[str]:
    """The score as a MIDI file, each part on the General-MIDI ``programs[i]``; returns the
    repairs :func:`repair_for_midi` had to make (usually none).

    Scores without a metronome mark get ``default_qpm`` (quarter notes per minute) in the
    MIDI only. The score is changed while it is written and restored afterwards (cheaper than
    copying a large score), so the sheet music never shows an invented tempo or instrument.
    """
    from music21 import instrument, tempo

    changed: list[tuple[Any, int | None, int | None]] = []
    inserted: list[tuple[Any, Any]] = []
    for part, program in zip(score.parts, programs):
        found = part.getInstrument(returnDefault=False)
        if found is None:
            found = instrument.Instrument()
            part.insert(0, found)
            inserted.append((part, found))
        changed.append((found, found.midiProgram, found.midiChannel))
        found.midiProgram = program
        # some files pin every part to channel 1, where the last program change would win
        found.midiChannel = None
    if not score.recurse().getElementsByClass(tempo.MetronomeMark).first():
        first = score.parts.first() if score.parts else score
        mark = tempo.MetronomeMark(number=default_qpm)
        first.insert(0, mark)
        inserted.append((first, mark))
    repairs: list[str] = []
    try:
        with atomic_file(path) as tmp:
            try:
                score.write("midi", fp=str(tmp))
            except Exception:  # music21 fails on a few scores; repair them and try once more
                repairs = repair_for_midi(score)
                if not repairs:
                    raise
                score.write("midi", fp=str(tmp))
    finally:
        for found, program, channel in changed:
            found.midiProgram, found.midiChannel = program, channel
        for container, element in inserted:
            container.remove(element)
    return repairs


def repair_for_midi(score: Any) -> list[str]:
    """Work around the two music21 failures seen when writing corpus pieces as MIDI.

    Some ABC tunes come back with one TimeSignature object shared by several measures, which
    music21's MIDI writer then inserts twice (StreamException); each extra use gets its own
    copy. Malformed repeats cannot be expanded (ExpanderException); the repeat barlines,
    brackets and expressions are dropped, so the MIDI plays each section once. Changes the
    score in place; returns what was done (empty when nothing applied).
    """
    import copy

    from music21 import bar, meter, repeat, spanner

    done = []
    shared = 0
    for measure in score.recurse().getElementsByClass("Measure"):
        for ts in list(measure.getElementsByClass(meter.TimeSignature)):
            if sum(1 for site in ts.sites.get() if site is not None and "Measure" in site.classes) > 1:
                measure.replace(ts, copy.deepcopy(ts))
                shared += 1
    if shared:
        done.append(f"unshared {shared} time signatures")
    repeats = 0
    for barline in list(score.recurse().getElementsByClass(bar.Repeat)):
        site = barline.activeSite
        if site is not None and site.leftBarline is barline:
            site.leftBarline = None
        elif site is not None and site.rightBarline is barline:
            site.rightBarline = bar.Barline("regular")
        repeats += 1
    for element in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
        if element.activeSite is not None:
            element.activeSite.remove(element)
            repeats += 1
    if repeats:
        done.append("dropped repeats")
    return done


def find_fluidsynth() -> str | None:
    """Path of the ``fluidsynth`` program, or None."""
    return shutil.which("fluidsynth")


def find_soundfont() -> Path | None:
    """A General-MIDI soundfont: ``$CLAMP3_SOUNDFONT`` if set, else the Debian locations."""
    configured = os.environ.get("CLAMP3_SOUNDFONT")
    for candidate in ([configured] if configured else []) + list(SOUNDFONT_CANDIDATES):
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def choose_synth(requested: str = "auto") -> str:
    """``"fluidsynth"`` or ``"additive"``. ``"auto"`` picks FluidSynth when both the program
    and a soundfont exist. Asking for ``"fluidsynth"`` without them, or for an unknown
    synthesizer, raises :class:`~clamp3.corpus.options.ConfigError` (a machine setting, not
    a fault of the piece being rendered)."""
    if requested not in SYNTHS:
        raise ConfigError("synth", f"unknown synthesizer {requested!r}; use {', '.join(SYNTHS)}")
    available = find_fluidsynth() is not None and find_soundfont() is not None
    if requested == "auto":
        return "fluidsynth" if available else "additive"
    if requested == "fluidsynth" and not available:
        raise ConfigError(
            "synth",
            "FluidSynth or its General-MIDI soundfont is missing: install the Debian packages "
            "fluidsynth and fluid-soundfont-gm, set CLAMP3_SOUNDFONT to an .sf2 file, or use "
            "--synth auto (the built-in synthesizer when FluidSynth is absent)",
        )
    return requested


def render_audio(
    midi_path: str | os.PathLike,
    wav_path: str | os.PathLike,
    seconds_max: float,
    synth: str = "auto",
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, Any]:
    """Render the first ``seconds_max`` seconds of a MIDI file to a mono WAV.

    The WAV lasts exactly ``min(midi length + RELEASE_TAIL, seconds_max)`` seconds at
    ``sample_rate`` Hz, peak-normalised to ``PEAK``. Returns ``{"synth", "seconds",
    "midi_seconds"}``. Raises :class:`InputError` naming the MIDI file when it has no notes or
    the synthesizer fails.
    """
    engine = choose_synth(synth)
    notes, midi_seconds = read_notes(midi_path, seconds_max)
    if not notes:
        raise InputError(midi_path, "no notes to render")
    seconds = min(midi_seconds + RELEASE_TAIL, seconds_max)
    total = int(round(seconds * sample_rate))
    if engine == "fluidsynth":
        audio = _fluidsynth(midi_path, seconds_max, sample_rate)
    else:
        audio = synthesize(notes, seconds, sample_rate)
    audio = np.pad(audio[:total], (0, max(0, total - len(audio))))
    peak = float(np.max(np.abs(audio)))
    if peak < 1e-4:
        raise InputError(midi_path, f"{engine} rendered silence")
    _write_wav(wav_path, (audio * (PEAK / peak)).astype(np.float32), sample_rate)
    return {"synth": engine, "seconds": round(total / sample_rate, 3), "midi_seconds": round(midi_seconds, 3)}


def _fluidsynth(midi_path: str | os.PathLike, seconds_max: float, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="clamp3-render-") as tmp:
        cut = Path(tmp) / "cut.mid"
        wav = Path(tmp) / "out.wav"
        truncate_midi(midi_path, cut, seconds_max)
        # -n/-i: no MIDI input, no shell; -F renders faster than real time to a file
        cmd = [find_fluidsynth() or "fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(sample_rate)]
        try:
            done = _run_fluidsynth(cmd, [str(find_soundfont()), str(cut)])
        except subprocess.TimeoutExpired as exc:
            raise InputError(midi_path, f"fluidsynth took more than {FLUIDSYNTH_TIMEOUT} s") from exc
        if done.returncode != 0 or not wav.is_file():
            raise InputError(midi_path, f"fluidsynth failed: {(done.stderr or done.stdout).strip()[:300]}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise InputError(midi_path, f"fluidsynth wrote {rate} Hz instead of {sample_rate} Hz")
    return audio.mean(axis=1)


# Load only the samples of the instruments a file plays, not all 140 MB of a GM soundfont:
# 0.42 s instead of 0.52 s a render (benchmarks/corpus_steps.py), the same audio byte for byte.
# An older FluidSynth that does not know the setting refuses to start; it is then left out.
_LAZY_SAMPLES = ["-o", "synth.dynamic-sample-loading=1"]
_lazy_samples_refused = False  # set once this process's FluidSynth has refused the setting


def _run_fluidsynth(cmd: list[str], files: list[str]) -> subprocess.CompletedProcess:
    """``cmd`` + the lazy-sample setting (unless this FluidSynth refused it) + ``files``."""
    global _lazy_samples_refused
    settings = [] if _lazy_samples_refused else _LAZY_SAMPLES
    done = subprocess.run(cmd + settings + files, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT)
    if settings and done.returncode != 0 and "dynamic-sample-loading" in (done.stderr + done.stdout):
        _lazy_samples_refused = True
        return _run_fluidsynth(cmd, files)
    return done


def truncate_midi(src: str | os.PathLike, dst: str | os.PathLike, seconds_max: float) -> None:
    """A type-0 copy of ``src`` holding its first ``seconds_max`` seconds: later events are
    dropped and notes still sounding are released at the cut, so FluidSynth renders only
    what is kept (a 10-minute mass would otherwise be rendered in full)."""
    import mido

    source = mido.MidiFile(str(src))
    track = mido.MidiTrack()
    tpb = source.ticks_per_beat
    tempo = 500000  # the MIDI default, 120 quarter notes per minute
    tick = last_tick = 0
    now = last_time = 0.0
    sounding: set[tuple[int, int]] = set()
    for msg in mido.merge_tracks(source.tracks):
        tick += msg.time
        now += mido.tick2second(msg.time, tpb, tempo)
        if now >= seconds_max:
            break
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if msg.type == "end_of_track":
            continue
        if msg.type == "note_on" and msg.velocity > 0:
            sounding.add((msg.channel, msg.note))
        elif msg.type in ("note_on", "note_off"):
            sounding.discard((msg.channel, msg.note))
        track.append(msg.copy(time=tick - last_tick))
        last_tick, last_time = tick, now
    cut_delta = int(mido.second2tick(max(seconds_max - last_time, 0.0), tpb, tempo))
    for channel, note in sorted(sounding):
        track.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=cut_delta))
        cut_delta = 0
    track.append(mido.MetaMessage("end_of_track", time=0))
    mido.MidiFile(type=0, ticks_per_beat=source.ticks_per_beat, tracks=[track]).save(str(dst))


def _write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
    import soundfile as sf

    with atomic_file(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16")
