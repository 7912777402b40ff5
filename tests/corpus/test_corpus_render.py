"""Audio rendering of the corpus: the additive fallback synthesizer, FluidSynth when present,
MIDI truncation, and the choice between them."""

from __future__ import annotations

import numpy as np
import pytest

mido = pytest.importorskip("mido")
sf = pytest.importorskip("soundfile")

from clamp3.corpus import render  # noqa: E402
from clamp3.corpus.options import ConfigError  # noqa: E402
from clamp3.corpus.synth import RELEASE_TAIL, Note, read_notes, synthesize  # noqa: E402
from clamp3.utils.errors import InputError  # noqa: E402


def _midi(path, notes, program=0, tempo=500000, ticks=480):
    """A type-1 MIDI file: ``notes`` = [(pitch, beats)] played one after another."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.Message("program_change", program=program, channel=0, time=0))
    for pitch, beats in notes:
        track.append(mido.Message("note_on", note=pitch, velocity=90, channel=0, time=0))
        track.append(mido.Message("note_off", note=pitch, velocity=0, channel=0, time=int(beats * ticks)))
    mido.MidiFile(type=1, ticks_per_beat=ticks, tracks=[track]).save(str(path))
    return path


def test_read_notes_applies_tempo_and_cut(tmp_path):
    path = _midi(tmp_path / "a.mid", [(60, 1), (64, 1), (67, 2)], tempo=1_000_000)  # 60 quarter notes/min
    notes, length = read_notes(path)
    assert length == pytest.approx(4.0)
    assert [(n.pitch, round(n.start, 3), round(n.end, 3)) for n in notes] == [
        (60, 0, 1),
        (64, 1, 2),
        (67, 2, 4),
    ]
    cut, _ = read_notes(path, seconds_max=2.5)
    assert [(n.pitch, round(n.end, 3)) for n in cut] == [(60, 1), (64, 2), (67, 2.5)]


def test_additive_synth_is_audible_at_the_right_times():
    sr = 24000
    audio = synthesize([Note(0.5, 1.0, 69, 100, 73, 0)], seconds=2.0, sample_rate=sr)
    assert audio.dtype == np.float32 and audio.shape == (2 * sr,)
    assert np.abs(audio[: int(0.45 * sr)]).max() == 0.0  # silence before the note
    spectrum = np.abs(np.fft.rfft(audio[int(0.55 * sr) : int(0.95 * sr)]))
    peak_hz = np.argmax(spectrum) * sr / (0.4 * sr)
    assert peak_hz == pytest.approx(440.0, abs=5.0)  # A4 sounds at its pitch
    assert np.abs(audio[int(1.9 * sr) :]).max() < 0.01 * np.abs(audio).max()  # released


def test_timbres_differ_between_instrument_families():
    def harmonic_share(program):
        audio = synthesize([Note(0.0, 1.0, 57, 100, program, 0)], 1.0)
        spectrum = np.abs(np.fft.rfft(audio[2400:21600]))
        fundamental = spectrum[int(220 * 0.8) - 5 : int(220 * 0.8) + 5].max()
        return spectrum.sum() / fundamental

    assert harmonic_share(40) > 1.5 * harmonic_share(73)  # violin is richer than flute


@pytest.mark.parametrize("seconds_max, expected", [(10.0, 3.0 + RELEASE_TAIL), (2.0, 2.0)])
def test_additive_render_writes_24k_mono_of_expected_duration(tmp_path, seconds_max, expected):
    midi = _midi(tmp_path / "tune.mid", [(62, 1), (66, 1), (69, 1), (74, 3)])  # 6 beats at 120 = 3 s
    info = render.render_audio(midi, tmp_path / "tune.wav", seconds_max, synth="additive")
    audio, rate = sf.read(str(tmp_path / "tune.wav"), dtype="float32")
    assert rate == 24000 and audio.ndim == 1
    assert len(audio) == round(expected * 24000)
    assert info == {
        "synth": "additive",
        "seconds": pytest.approx(expected),
        "midi_seconds": pytest.approx(3.0),
    }
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.05 and np.abs(audio).max() <= 1.0


def test_auto_falls_back_when_fluidsynth_or_soundfont_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "find_fluidsynth", lambda: None)
    assert render.choose_synth("auto") == "additive"
    with pytest.raises(ConfigError, match="fluid-soundfont-gm"):
        render.choose_synth("fluidsynth")
    with pytest.raises(ConfigError, match="unknown synthesizer 'fluidsynt'"):
        render.choose_synth("fluidsynt")
    midi = _midi(tmp_path / "a.mid", [(60, 2)])
    assert render.render_audio(midi, tmp_path / "a.wav", 5.0)["synth"] == "additive"


def test_midi_without_notes_is_an_input_error(tmp_path):
    midi = _midi(tmp_path / "empty.mid", [])
    with pytest.raises(InputError, match="no notes"):
        render.render_audio(midi, tmp_path / "empty.wav", 5.0, synth="additive")
    assert not (tmp_path / "empty.wav").exists()


def test_truncate_midi_keeps_the_head_and_releases_held_notes(tmp_path):
    midi = _midi(tmp_path / "long.mid", [(60, 4), (62, 4), (64, 4)])  # 6 s at 120 bpm
    render.truncate_midi(midi, tmp_path / "cut.mid", 3.0)
    notes, length = read_notes(tmp_path / "cut.mid")
    assert [n.pitch for n in notes] == [60, 62]
    assert length == pytest.approx(3.0, abs=0.01) and notes[-1].end == pytest.approx(3.0, abs=0.01)


needs_fluidsynth = pytest.mark.skipif(
    render.find_fluidsynth() is None or render.find_soundfont() is None,
    reason="FluidSynth or a General-MIDI soundfont is not installed (apt-get install fluidsynth fluid-soundfont-gm)",
)


@needs_fluidsynth
def test_fluidsynth_is_used_when_present(tmp_path):
    assert render.choose_synth("auto") == "fluidsynth"
    midi = _midi(tmp_path / "tune.mid", [(62, 1), (66, 1), (69, 1), (74, 3)], program=40)
    info = render.render_audio(midi, tmp_path / "tune.wav", 2.5)
    audio, rate = sf.read(str(tmp_path / "tune.wav"), dtype="float32")
    assert info["synth"] == "fluidsynth"
    assert rate == 24000 and audio.ndim == 1 and len(audio) == round(2.5 * 24000)
    assert float(np.sqrt(np.mean(audio**2))) > 0.02
    # the soundfont's violin differs from the additive rendering of the same notes
    additive = render.render_audio(midi, tmp_path / "add.wav", 2.5, synth="additive")
    assert additive["synth"] == "additive"
    other, _ = sf.read(str(tmp_path / "add.wav"), dtype="float32")
    assert not np.allclose(audio, other, atol=1e-2)


@needs_fluidsynth
def test_fluidsynth_without_lazy_sample_loading_renders_the_same(tmp_path, monkeypatch):
    """An older FluidSynth refuses the lazy-sample setting: it is run again without it
    (and not offered again), and the audio is the same as with it."""
    midi = _midi(tmp_path / "tune.mid", [(62, 1), (69, 2)], program=40)
    monkeypatch.setattr(render, "_lazy_samples_refused", False)
    lazy = render.render_audio(midi, tmp_path / "lazy.wav", 2.0)
    assert render._lazy_samples_refused is False
    real_run, calls = render.subprocess.run, []

    def old_fluidsynth(cmd, **kwargs):
        calls.append(cmd)
        if "synth.dynamic-sample-loading=1" in cmd:
            return render.subprocess.CompletedProcess(
                cmd, 255, "", "Setting parameter 'synth.dynamic-sample-loading' not found\n"
            )
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(render.subprocess, "run", old_fluidsynth)
    render.render_audio(midi, tmp_path / "old.wav", 2.0)
    render.render_audio(midi, tmp_path / "old2.wav", 2.0)
    assert render._lazy_samples_refused is True
    assert ["synth.dynamic-sample-loading=1" in c for c in calls] == [True, False, False]
    first, _ = sf.read(str(tmp_path / "lazy.wav"), dtype="float32")
    for name in ("old.wav", "old2.wav"):
        assert np.array_equal(first, sf.read(str(tmp_path / name), dtype="float32")[0])
    assert lazy["synth"] == "fluidsynth"


@pytest.mark.parametrize(
    "source, number, repair",
    [("essenFolksong/lot.abc", 319, "unshared"), ("ryansMammoth/BoyneHuntReel.abc", 1, "dropped repeats")],
)
def test_write_midi_repairs_scores_music21_cannot_write(tmp_path, source, number, repair):
    corpus = pytest.importorskip("music21.corpus")
    with pytest.raises(Exception, match="already found|cannot expand"):
        corpus.parse(source, number=number).write("midi", fp=str(tmp_path / "plain.mid"))
    score = corpus.parse(source, number=number)
    repairs = render.write_midi(score, tmp_path / "fixed.mid", [40], 120)
    assert any(r.startswith(repair) for r in repairs)
    notes, length = read_notes(tmp_path / "fixed.mid")
    assert len(notes) > 20 and length > 5
    assert {n.program for n in notes} == {40}


def test_each_part_sounds_with_its_own_program(tmp_path):
    """Files that pin every part to MIDI channel 1 would let the last program change win."""
    corpus = pytest.importorskip("music21.corpus")
    score = corpus.parse("mozart/k80/movement4")
    assert {p.getInstrument().midiChannel for p in score.parts} == {0}  # pinned in the file
    render.write_midi(score, tmp_path / "q.mid", [40, 40, 41, 42], 100)
    notes, _ = read_notes(tmp_path / "q.mid")
    assert {n.program for n in notes} == {40, 41, 42}
    assert len({n.channel for n in notes if n.program == 42}) == 1
    assert not {n.channel for n in notes if n.program == 42} & {n.channel for n in notes if n.program != 42}
    assert {p.getInstrument().midiChannel for p in score.parts} == {0}  # the score is restored


def _overlapping_midi(path):
    """Channel 0, pitch 60 struck at beat 0 (velocity 80) and again at beat 1 (velocity 100)
    before the first is released; note-offs at beats 2 and 3; then a stray note-off."""
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))  # one beat per second
    track.append(mido.Message("note_on", note=60, velocity=80, channel=0, time=0))
    track.append(mido.Message("note_on", note=60, velocity=100, channel=0, time=480))
    track.append(mido.Message("note_off", note=60, velocity=0, channel=0, time=480))
    track.append(mido.Message("note_on", note=60, velocity=0, channel=0, time=480))  # a note-off
    track.append(mido.Message("note_off", note=60, velocity=0, channel=0, time=480))  # nothing sounding
    mido.MidiFile(type=1, ticks_per_beat=480, tracks=[track]).save(str(path))
    return path


def test_overlapping_notes_of_one_key_follow_one_rule_in_synthesis_and_piano_roll(tmp_path):
    """First in, first out (clamp3.preprocess.notes): the corpus synthesizer and the service's
    piano roll read the same notes from one file."""
    from clamp3.serve.pianoroll import midi_notes

    path = _overlapping_midi(tmp_path / "restrike.mid")
    expected = [(0.0, 2.0, 80), (1.0, 3.0, 100)]
    synth_notes, _ = read_notes(path)
    roll_notes, duration, cut = midi_notes(mido.MidiFile(str(path)))
    for notes in (synth_notes, sorted(roll_notes, key=lambda n: n.start)):
        assert [(round(n.start, 3), round(n.end, 3), n.velocity) for n in notes] == expected
    assert synth_notes == sorted(roll_notes, key=lambda n: n.start)
    assert duration == pytest.approx(4.0) and not cut
