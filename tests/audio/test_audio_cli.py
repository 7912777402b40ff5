"""``clamp3 extract-audio``: mirrored tree, official format, resume, error log, exit status."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clamp3.audio import MertExtractor
from clamp3.cli.main import main
from clamp3.utils.errorlog import read_errors


def _tone(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture()
def audio_tree(tmp_path):
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    sf.write(root / "one.wav", _tone(6.0, 44100), 44100)
    sf.write(root / "sub" / "TWO.FLAC", _tone(3.0, 16000), 16000, format="FLAC")
    sf.write(root / "sub" / "deeper" / "three.mp3", _tone(2.0, 44100), 44100, format="MP3")
    sf.write(root / "sub" / "short.ogg", _tone(0.4, 24000), 24000, format="OGG")
    (root / "sub" / "broken.wav").write_bytes(b"RIFF....WAVEnot audio")
    (root / "notes.txt").write_text("ignored")
    return root


def test_extract_audio_tree(audio_tree, tmp_path, tiny_mert_dir, capsys):
    out = tmp_path / "out"
    argv = ["extract-audio", str(audio_tree), str(out), "--model", str(tiny_mert_dir), "--no-progress"]
    assert main(argv) == 1  # two files failed
    one = np.load(out / "one.npy")
    assert one.shape == (1, 2, 16) and one.dtype == np.float32
    expected = MertExtractor.from_pretrained(tiny_mert_dir).features_from_file(audio_tree / "one.wav")
    np.testing.assert_allclose(one[0], expected, rtol=1e-5, atol=1e-6)
    assert np.load(out / "sub" / "TWO.npy").shape == (1, 1, 16)
    assert np.load(out / "sub" / "deeper" / "three.npy").shape == (1, 1, 16)
    assert not (out / "sub" / "short.npy").exists() and not (out / "notes.npy").exists()
    errors = read_errors(out / "errors.jsonl")
    assert sorted(e.path for e in errors) == ["sub/broken.wav", "sub/short.ogg"]
    assert "too short" in next(e.reason for e in errors if e.path == "sub/short.ogg")

    # A rerun keeps what exists and only retries the failures.
    stamp = (out / "one.npy").stat().st_mtime_ns
    (audio_tree / "sub" / "broken.wav").unlink()
    (audio_tree / "sub" / "short.ogg").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    assert "wrote 0, skipped 3 existing, failed 0" in capsys.readouterr().out
    assert (out / "one.npy").stat().st_mtime_ns == stamp
    assert not list(out.rglob("*.tmp"))


def test_reruns_redo_edited_recordings_keep_one_error_each_and_refuse_another_frontend(tmp_path, capsys):
    import json
    import os

    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    sf.write(root / "t.wav", _tone(2.0, 24000), 24000)
    (root / "bad.wav").write_bytes(b"RIFF....WAVEnot audio")
    argv = ["extract-audio", str(root), str(out), "--model", "logmel:8", "--no-progress"]
    for _ in range(3):  # a failing file is retried each time and listed once
        assert main(argv) == 1
    assert [e.path for e in read_errors(out / "errors.jsonl")] == ["bad.wav"]
    assert np.load(out / "t.npy").shape == (1, 1, 8)
    sf.write(root / "t.wav", _tone(12.0, 24000), 24000)  # the recording is edited: newer than its output
    later = (out / "t.npy").stat().st_mtime_ns + 10**9
    os.utime(root / "t.wav", ns=(later, later))
    capsys.readouterr()
    assert main(argv) == 1
    assert "wrote 1, skipped 0 existing" in capsys.readouterr().out
    assert np.load(out / "t.npy").shape == (1, 3, 8)
    (root / "bad.wav").unlink()  # fixed or gone: its record goes
    assert main(argv) == 0 and read_errors(out / "errors.jsonl") == []
    assert json.loads((out / "extract.json").read_text())["source"] == "logmel:8"
    other = ["extract-audio", str(root), str(out), "--model", "logmel:16", "--no-progress"]
    assert main(other) == 2  # its features would sit beside the 8-band ones
    assert "holds features of" in capsys.readouterr().err
    assert np.load(out / "t.npy").shape == (1, 3, 8)


def test_same_output_name_is_an_error_not_an_overwrite(tmp_path, capsys):
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "song.wav", _tone(2.0, 24000), 24000)
    sf.write(root / "song.flac", _tone(3.0, 24000), 24000, format="FLAC")
    out = tmp_path / "out"
    assert main(["extract-audio", str(root), str(out), "--model", "logmel:8", "--no-progress"]) == 1
    assert np.load(out / "song.npy").shape == (1, 1, 8)
    assert "same output song.npy as song.flac" in capsys.readouterr().out


def test_setup_errors_exit_2_without_traceback(tmp_path, capsys):
    assert (
        main(["extract-audio", str(tmp_path / "absent"), str(tmp_path / "out"), "--model", "logmel:8"]) == 2
    )
    assert "absent: no such file or folder" in capsys.readouterr().err  # before any front-end loads
    (tmp_path / "afile").write_text("")
    assert main(["extract-audio", str(tmp_path / "afile"), str(tmp_path / "out"), "--model", "logmel:8"]) == 2
    assert "afile: not a directory" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    assert main(["extract-audio", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tmp_path)]) == 2
    assert "needs config.json" in capsys.readouterr().err
    for spec in ("logmel:abc", "logmel:0", "logmel:"):
        assert main(["extract-audio", str(tmp_path / "in"), str(tmp_path / "out"), "--model", spec]) == 2
        expected = f"--model logmel:DIM needs a whole number of mel bands, got '{spec}'"
        assert expected in capsys.readouterr().err
