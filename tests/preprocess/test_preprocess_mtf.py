"""MIDI <-> MTF: the CLaMP 2 variant, round trips and message-line parsing."""

from __future__ import annotations

import mido
import pytest

from clamp3.preprocess import midi_to_mtf, mtf_to_midi
from clamp3.preprocess.mtf import line_to_message, message_to_line
from clamp3.utils.errors import InputError


def test_clamp2_variant_drops_sysex_only(parity_dir):
    path = parity_dir / "inputs" / "midi" / "m21_test04.mid"
    clamp3 = midi_to_mtf(path).split("\n")
    clamp2 = midi_to_mtf(path, drop_sysex=True).split("\n")
    sysex = [line for line in clamp3 if line.startswith(("sysex ", "sequencer_specific "))]
    assert sysex, "fixture is expected to hold sysex messages"
    assert clamp2 == [line for line in clamp3 if line not in sysex]


@pytest.mark.parametrize("name", ["m21_test04", "m21_test09", "m21_k525short"])
def test_mtf_to_midi_round_trip(parity_dir, tmp_path, name):
    text = (parity_dir / "prep" / "mtf" / f"{name}.mtf").read_text(encoding="utf-8")
    out = mtf_to_midi(text, tmp_path / "sub" / f"{name}.mid")
    assert out.is_file() and midi_to_mtf(out) == text
    assert mido.MidiFile(out).type == 1 and len(mido.MidiFile(out).tracks) == 1
    assert [p.name for p in out.parent.iterdir()] == [f"{name}.mid"]  # no temporary left


def test_text_and_byte_messages_round_trip_through_lines():
    messages = [
        mido.MetaMessage("track_name", name="Violin  I \\ é\n", time=3),
        mido.MetaMessage("key_signature", key="C#m", time=0),
        mido.MetaMessage(
            "smpte_offset", frame_rate=25, hours=1, minutes=2, seconds=3, frames=4, sub_frames=5
        ),
        mido.MetaMessage("sequencer_specific", data=[0, 33, 127], time=7),
        mido.Message("sysex", data=[65, 16, 66], time=20),
        mido.Message("sysex", data=[], time=0),
        mido.Message("note_on", channel=9, note=36, velocity=100, time=455),
        mido.Message("pitchwheel", channel=1, pitch=-8192, time=1),
        mido.UnknownMetaMessage(0x60, data=(1, 2, 3), time=9),
    ]
    for msg in messages:
        line = message_to_line(msg)
        assert "\n" not in line and line.isascii()
        assert line_to_message(line) == msg, line


def test_line_format_matches_official_examples():
    assert (
        message_to_line(mido.Message("note_on", channel=0, note=74, velocity=0, time=455))
        == "note_on 455 0 74 0"
    )
    assert message_to_line(mido.MetaMessage("set_tempo", tempo=500000)) == "set_tempo 500000 0"
    assert message_to_line(mido.Message("sysex", data=[1, 2, 3])) == "sysex 0 [1, 2, 3]"


def test_malformed_mtf_names_the_line(tmp_path):
    with pytest.raises(ValueError, match="ticks_per_beat"):
        mtf_to_midi("note_on 0 0 60 80", tmp_path / "x.mid")
    with pytest.raises(ValueError, match="line 3"):
        mtf_to_midi("ticks_per_beat 480\nnote_on 0 0 60 80\nnote_on 0 0 sixty 80", tmp_path / "x.mid")
    # mido takes these when the message is made and fails only on save, naming no line
    with pytest.raises(ValueError, match=r"line 3.*delta time 0\.5 is not a whole number of ticks"):
        mtf_to_midi("ticks_per_beat 480\nnote_on 0 0 60 64\nnote_off 0.5 0 60 0", tmp_path / "x.mid")
    with pytest.raises(ValueError, match="line 2.*negative delta time -5"):
        mtf_to_midi("ticks_per_beat 480\nset_tempo 500000 -5\nend_of_track 0", tmp_path / "x.mid")
    with pytest.raises(ValueError, match="line 2.*negative delta time"):
        mtf_to_midi("ticks_per_beat 480\nunknown_meta 127 [1, 2] -1", tmp_path / "x.mid")
    assert not (tmp_path / "x.mid").exists()
    mtf_to_midi("ticks_per_beat 480\nnote_on 0.0 0 60 64\nend_of_track 0", tmp_path / "x.mid")  # "0.0" is 0
    assert midi_to_mtf(tmp_path / "x.mid").splitlines()[1] == "note_on 0 0 60 64"
    # a float where mido has one: 29.97 frames per second
    mtf_to_midi("ticks_per_beat 480\nsmpte_offset 29.97 1 0 0 0 0 0\nend_of_track 0", tmp_path / "x.mid")
    assert midi_to_mtf(tmp_path / "x.mid").splitlines()[1] == "smpte_offset 29.97 1 0 0 0 0 0"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"RIFF1234WAVEfmt ", "corrupt MIDI"),
        (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00\x90", "corrupt MIDI"),
    ],
)
def test_bad_midi_raises_input_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        midi_to_mtf(path)
    assert info.value.path == str(path) and str(info.value).startswith(str(path))


def test_a_type_2_midi_is_refused_as_unsupported_not_corrupt(tmp_path):
    import mido

    midi = mido.MidiFile(type=2, ticks_per_beat=96)
    for note in (60, 64):
        track = [mido.Message("note_on", note=note), mido.Message("note_off", note=note, time=96)]
        midi.tracks.append(mido.MidiTrack(track))
    midi.save(tmp_path / "song.mid")
    with pytest.raises(InputError) as info:
        midi_to_mtf(tmp_path / "song.mid")
    assert info.value.path == str(tmp_path / "song.mid")
    assert info.value.reason.startswith("MIDI type 2 (independent sequences, one per track) is not supported")
    midi.type = 1  # the same tracks as one performance convert
    midi.save(tmp_path / "song1.mid")
    assert midi_to_mtf(tmp_path / "song1.mid").count("note_on") == 2


def test_missing_midi_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        midi_to_mtf(tmp_path / "missing.mid")
