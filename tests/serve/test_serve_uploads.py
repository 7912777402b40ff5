"""Uploaded query files are bounded before the expensive steps and described without server
paths: compressed scores past the unpack cap (zip bombs), recordings past the length cap (judged
from the header, before decoding), a busy audio front-end (503, not a hang), files that hold no
notes, error messages that quote the upload's temporary path, and the upload folder's cleanup."""

from __future__ import annotations

import contextlib
import gc
import io
import os
import signal
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from serve_support import app_for, client_for, library, tiny_model  # noqa: F401

pytest.importorskip("fastapi")

SMALL_UPLOAD = 4096  # -> an unpack cap of 64 x 4 KB = 256 KB for compressed scores
WAV_12S = "audio/sines_44k1_stereo_12s3.wav"
SCORE_HEAD = b'<?xml version="1.0"?><score-partwise version="3.1">'


def _mxl(xml: bytes, name: str = "score.xml") -> bytes:
    """A .mxl archive holding ``xml`` deflated under ``name``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(name, xml)
    return buffer.getvalue()


def _bomb(size: int) -> bytes:
    return _mxl(SCORE_HEAD + b" " * size + b"</score-partwise>")


def _understated(data: bytes, declared: int) -> bytes:
    """The archive with its one member's uncompressed size rewritten to ``declared`` in both the
    local header (offset 22) and the central directory entry (offset 24)."""
    out = bytearray(data)
    struct.pack_into("<I", out, 22, declared)
    central = out.rindex(b"PK\x01\x02")
    struct.pack_into("<I", out, central + 24, declared)
    return bytes(out)


# ----------------------------------------------------------------------------- compressed scores
def test_musicxml_to_abc_refuses_an_mxl_past_the_unpack_cap(tmp_path, monkeypatch):
    from clamp3.preprocess import abc
    from clamp3.utils.errors import InputError

    bomb = tmp_path / "bomb.mxl"
    bomb.write_bytes(_bomb(3 * 2**20))  # 3 MB of XML in a few KB
    assert bomb.stat().st_size < 16 * 1024
    with abc.unpacked_size_limit(2**20), pytest.raises(InputError, match="unpacks to more than 1 MB"):
        abc.musicxml_to_abc(bomb)
    monkeypatch.setattr(abc, "MAX_UNPACKED_BYTES", 2 * 2**20)  # the module default applies outside
    with pytest.raises(InputError, match="unpacks to more than 2 MB"):
        abc.musicxml_to_abc(bomb)
    # An archive that understates its member's size is not read past the cap either.
    lying = tmp_path / "lying.mxl"
    lying.write_bytes(_understated(bomb.read_bytes(), 1000))
    with abc.unpacked_size_limit(2**20), pytest.raises(InputError, match=r"lying\.mxl"):
        abc.musicxml_to_abc(lying)
    with pytest.raises(ValueError, match="positive"), abc.unpacked_size_limit(0):
        pass


def test_unpack_cap_leaves_real_scores_unchanged(library):  # noqa: F811
    from clamp3.preprocess import abc

    score = library.media / "scores/bach_bwv66_6.mxl"
    with abc.unpacked_size_limit(256 * 1024):
        capped = abc.musicxml_to_abc(score)
    assert capped == abc.musicxml_to_abc(score) and "V:1" in capped


def test_the_service_caps_unpacking_by_its_upload_limit(library, tiny_model):  # noqa: F811
    with app_for(library, tiny_model, max_upload_bytes=SMALL_UPLOAD) as app, client_for(app) as c:
        assert app.state.settings.max_unpacked_bytes == 64 * SMALL_UPLOAD
        data = _bomb(300 * 1024)
        assert len(data) < SMALL_UPLOAD
        refused = c.post("/api/search/file", files={"file": ("q.mxl", data)})
        assert refused.status_code == 422, refused.text
        assert "unpacks to more than 0.25 MB" in refused.json()["message"]
        real = (library.media / "scores/bach_bwv66_6.mxl").read_bytes()  # 2.3 KB -> 52 KB of XML
        assert c.post("/api/search/file", files={"file": ("q.mxl", real)}).status_code == 200


# ----------------------------------------------------------------------------- recordings
def test_long_audio_is_refused_from_its_header_before_decoding(library, tiny_model, monkeypatch):  # noqa: F811
    def never(*args, **kwargs):
        raise AssertionError("the recording was decoded")

    with app_for(library, tiny_model, max_audio_seconds=10) as app, client_for(app) as c:
        monkeypatch.setattr("clamp3.audio.base.WindowFrontend.features_from_file", never)
        monkeypatch.setattr("clamp3.audio.io.load_audio", never)
        data = (library.media / WAV_12S).read_bytes()
        refused = c.post("/api/search/file", files={"file": ("long.wav", data)})
        assert refused.status_code == 413 and refused.json()["error"] == "too_large"
        assert "12 s long; at most 10 s" in refused.json()["message"]
        monkeypatch.undo()
        short = (library.media / "audio/sines_16k_mono_3s7.wav").read_bytes()
        assert c.post("/api/search/file", files={"file": ("short.wav", short)}).status_code == 200


def test_a_header_that_understates_the_length_is_caught_while_counting(library, monkeypatch):  # noqa: F811
    import soundfile as sf

    from clamp3.serve.content import check_audio_length
    from clamp3.serve.errors import TooLarge

    path = library.media / WAV_12S
    assert check_audio_length(path, 13) == pytest.approx(12.3, abs=0.05)
    real_info = sf.info

    def lying_info(name):
        info = real_info(name)
        info.frames = info.samplerate  # "one second"
        return info

    monkeypatch.setattr(sf, "info", lying_info)
    with pytest.raises(TooLarge, match="longer than its header says"):
        check_audio_length(path, 10)


def test_a_busy_audio_reader_gives_503_not_a_hang(library, tiny_model):  # noqa: F811
    with app_for(library, tiny_model) as app, client_for(app) as c:
        encoder = app.state.catalog.encoder
        encoder.timeout = 0.2
        data = (library.media / "audio/sines_16k_mono_3s7.wav").read_bytes()
        with encoder._frontend_lock:  # another upload is being read
            busy = c.post("/api/search/file", files={"file": ("q.wav", data)})
        assert busy.status_code == 503 and busy.json()["error"] == "unavailable"
        assert "busy" in busy.json()["message"]
        assert c.post("/api/search/file", files={"file": ("q.wav", data)}).status_code == 200


def test_a_part_that_cannot_load_is_a_503_naming_it(library, tiny_model, monkeypatch):  # noqa: F811
    """A tower an ONNX export lacks, or MERT not in the cache offline: the operator's problem,
    told as the search it disables (it read "image search is unavailable" for every upload)."""
    from clamp3.utils.errors import CheckpointError

    with app_for(library, tiny_model) as app, client_for(app) as c:
        pipeline = app.state.catalog.encoder.pipeline

        def refuse(*args, **kwargs):
            raise CheckpointError("model: the tower was not exported")

        monkeypatch.setattr(pipeline, "embed_prepared", refuse)
        cases = {
            "q.mid": ("midi/m21_test01.mid", "score and MIDI search is unavailable", "its symbolic tower"),
            "q.wav": ("audio/sines_16k_mono_3s7.wav", "audio search is unavailable", "its audio front-end"),
        }
        for name, (source, what, part) in cases.items():
            reply = c.post("/api/search/file", files={"file": (name, (library.media / source).read_bytes())})
            assert reply.status_code == 503 and reply.json()["error"] == "unavailable", reply.text
            message = reply.json()["message"]
            assert message.startswith(what) and part in message and "captioner" not in message
        monkeypatch.undo()
        data = (library.media / "midi/m21_test01.mid").read_bytes()
        assert c.post("/api/search/file", files={"file": ("q.mid", data)}).status_code == 200


# ----------------------------------------------------------------------------- no music
def _midi_without_notes() -> bytes:
    import mido

    song = mido.MidiFile()
    track = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=500000), mido.Message("program_change", program=1)]
    )
    song.tracks.append(track)
    buffer = io.BytesIO()
    song.save(file=buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [("q.abc", b"X:1\n"), ("q.abc", b"X:1\nT:Title only\nK:C\n"), ("q.abc", b'X:1\nK:C\n"Am" z4 | !fermata! z4 |]\n'),
     ("q.mtf", b"ticks_per_beat 480\ngarbage\n"), ("q.mtf", b"ticks_per_beat 480\nnote_on 0 0 60 0\n"),
     ("q.mid", None)],
)  # fmt: skip
def test_files_without_notes_are_422(library, tiny_model, name, data):  # noqa: F811
    with app_for(library, tiny_model) as app, client_for(app) as c:
        data = _midi_without_notes() if data is None else data
        response = c.post("/api/search/file", files={"file": (name, data)})
        assert response.status_code == 422, response.text
        assert response.json()["message"].startswith("no music in the file")


def test_every_real_score_and_midi_file_has_notes(library, tiny_model):  # noqa: F811
    from clamp3.preprocess import load_symbolic
    from clamp3.serve.content import has_notes

    files = [p for p in library.media.rglob("*") if p.parent.name in ("scores", "midi")]
    assert len(files) == 6
    for path in files:
        assert has_notes(load_symbolic(path, tiny_model.config.tower("symbolic"))), path
    assert not has_notes(np.zeros((0, 64), np.int32))


# ----------------------------------------------------------------------------- no server paths
@pytest.mark.parametrize(
    "name, data",
    [("my song.wav", b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio"),
     ("Score (draft).mxl", b"PK\x03\x04 not really a zip archive"),
     ("tune.mid", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff\xff garbage")],
)  # fmt: skip
def test_error_messages_name_the_clients_file_not_the_server_path(library, tiny_model, name, data):  # noqa: F811
    with app_for(library, tiny_model) as app, client_for(app) as c:
        response = c.post("/api/search/file", files={"file": (name, data)})
        assert response.status_code == 422, response.text
        message = response.json()["message"]
        base = str(app.state.uploads.base)
        private = [base, os.path.realpath(base), tempfile.gettempdir(), "clamp3-serve-uploads", "upload."]
        assert not [p for p in private if p in message], message
    # One rule for every format: the message names the client's file (libsndfile also quotes
    # the path it opened, which is then the client's name too).
    assert message.startswith((f"cannot read {name}: ", f"cannot embed {name} (")), message


def test_health_shows_a_model_label_not_a_path(library, tiny_model):  # noqa: F811
    with app_for(library, tiny_model) as app, client_for(app) as c:
        response = c.get("/api/health")
        assert response.json()["model"] == "tiny"
        assert str(library.model_dir) not in response.text
    with app_for(library, None) as app, client_for(app) as c:  # no model: the stored id's last part
        response = c.get("/api/health")
        assert response.json()["model"] == library.model_dir.name
        assert str(library.model_dir) not in response.text and response.json()["text_search"] is False


# ----------------------------------------------------------------------------- cleanup
def test_the_upload_folder_goes_at_shutdown_or_collection(library, tiny_model):  # noqa: F811
    from clamp3.serve.uploads import UploadArea

    with app_for(library, tiny_model) as app:
        base = app.state.uploads.base
        with client_for(app) as c:  # the client runs the app's lifespan
            data = (library.media / "midi/m21_test01.mid").read_bytes()
            assert c.post("/api/search/file", files={"file": ("q.mid", data)}).status_code == 200
            assert base.is_dir()
        assert not base.exists()
    area = UploadArea([Path(library.media)])
    base = area.base
    assert base.is_dir()
    del area
    gc.collect()
    assert not base.exists()


# ----------------------------------------------------------------------------- conversion limit
def _hang_in_python(path, config):
    while True:  # a converter that never returns and swallows what it can
        with contextlib.suppress(Exception):
            time.sleep(60)


def _hang_in_c(path, config):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as C code that never yields
    time.sleep(120)


@pytest.mark.parametrize("hang", [_hang_in_python, _hang_in_c])
def test_a_conversion_that_hangs_fails_that_upload_after_the_timeout(library, tiny_model, monkeypatch, hang):  # noqa: F811
    import clamp3.preprocess
    from clamp3.utils import workers

    monkeypatch.setattr(workers, "GRACE_SECONDS", 1.0)
    monkeypatch.setattr(clamp3.preprocess, "load_symbolic", hang)  # the forked converter inherits it
    midi = (library.media / "midi/m21_test01.mid").read_bytes()
    with app_for(library, tiny_model, conversion_timeout=1.0) as app, client_for(app) as c:
        started = time.monotonic()
        response = c.post("/api/search/file", files={"file": ("slow tune.mid", midi)})
        assert time.monotonic() - started < 15
        assert response.status_code == 422, response.text
        assert (
            response.json()["message"]
            == "cannot read slow tune.mid: conversion took longer than 1 s (timeout)"
        )
        assert c.get("/api/search", params={"q": "a waltz"}).status_code == 200  # the service goes on
