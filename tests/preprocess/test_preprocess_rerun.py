"""``clamp3 convert`` edge cases: file names that are not UTF-8, unlistable subdirectories,
reruns after edits (mtime) and with warnings, Ctrl-C."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from clamp3.cli.main import main
from clamp3.preprocess import bulk, convert_tree
from clamp3.utils.errorlog import read_errors
from clamp3.utils.io import read_jsonl


def _named(directory: Path, name: bytes) -> Path:
    """``directory / name`` for a raw byte name, as ``os.walk`` would spell it."""
    return Path(os.fsdecode(os.path.join(os.fsencode(directory), name)))


def _later(path: Path, than: Path) -> None:
    """Date ``path`` one second after ``than`` (file times can tick coarser than two writes)."""
    stamp = than.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(stamp, stamp))


@pytest.mark.parametrize("workers", [1, 2])
def test_file_names_that_are_not_utf8(parity_dir, tmp_path, capsys, workers):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    bad = _named(src, b"bad\xe9.mid")
    bad.write_bytes(b"junk, not a MIDI file")
    shutil.copy(parity_dir / "inputs" / "midi" / "m21_test01.mid", _named(src, b"caf\xe9.mid"))
    shutil.copy(parity_dir / "inputs" / "musicxml" / "haydn_op74no1_mvt3.mxl", _named(src, b"h\xe9.mxl"))

    assert main(["convert", str(src), str(out), "--workers", str(workers), "--quiet"]) == 1
    expected = (parity_dir / "prep" / "mtf" / "m21_test01.mtf").read_bytes()
    assert _named(out, b"caf\xe9.mtf").read_bytes() == expected
    (error,) = read_jsonl(out / "errors.jsonl")  # valid UTF-8, and the very path back
    assert error["path"] == str(bad) and "corrupt MIDI file" in error["reason"]
    (warning,) = read_jsonl(out / "warnings.jsonl")
    assert os.fsencode(warning["path"]) == os.fsencode(src) + b"/h\xe9.mxl"
    assert "3 files: 2 converted, 0 already done, 1 failed" in capsys.readouterr().err

    rerun = convert_tree(src, out, workers=workers, show_progress=False)
    assert (rerun.skipped, rerun.converted, len(rerun.failed)) == (2, 0, 1)
    assert [r["path"] for r in read_jsonl(out / "warnings.jsonl")] == [warning["path"]]


def test_an_unlistable_subdirectory_is_a_failure(parity_dir, tmp_path, monkeypatch, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    for sub, name in [("open", "m21_test01"), ("locked", "m21_test09")]:
        (src / sub).mkdir(parents=True)
        shutil.copy(parity_dir / "inputs" / "midi" / f"{name}.mid", src / sub)
    locked = src / "locked"
    listdir = os.scandir

    def scandir(path: str | os.PathLike = ".") -> object:
        # Tests run as root, whom chmod 000 does not stop: refuse the listing as the kernel would.
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return listdir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["convert", str(src), str(out), "--workers", "1", "--quiet"]) == 1
    assert (out / "open" / "m21_test01.mtf").is_file()
    (error,) = read_errors(out / "errors.jsonl")
    assert (error.path, error.reason) == (
        str(locked),
        "cannot list this folder, its files were left out: Permission denied",
    )
    stderr = capsys.readouterr().err
    assert "2 files: 1 converted, 0 already done, 1 failed" in stderr and str(locked) in stderr


def test_an_input_newer_than_its_output_is_converted_again(parity_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    midi, prep = parity_dir / "inputs" / "midi", parity_dir / "prep" / "mtf"
    shutil.copy(midi / "m21_test01.mid", src / "piece.mid")
    shutil.copy(midi / "m21_test09.mid", src / "other.mid")
    assert convert_tree(src, out, workers=1, show_progress=False).converted == 2
    untouched = (out / "other.mtf").stat()

    shutil.copy(midi / "m21_test12.mid", src / "piece.mid")  # the user edits one input
    _later(src / "piece.mid", out / "piece.mtf")
    second = convert_tree(src, out, workers=1, show_progress=False)
    assert (second.converted, second.skipped) == (1, 1)
    assert (out / "piece.mtf").read_bytes() == (prep / "m21_test12.mtf").read_bytes()
    assert (out / "other.mtf").stat().st_mtime_ns == untouched.st_mtime_ns

    # An edit that breaks the input: its stale output goes, so OUT_DIR never disagrees with IN_DIR.
    (src / "piece.mid").write_bytes(b"MThd\x00\x00")
    _later(src / "piece.mid", out / "piece.mtf")
    third = convert_tree(src, out, workers=1, show_progress=False)
    assert [Path(p).name for p, _ in third.failed] == ["piece.mid"]
    assert not (out / "piece.mtf").exists() and (out / "other.mtf").is_file()


def test_a_rerun_keeps_the_warnings_of_skipped_files_once(parity_dir, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "musicxml" / "haydn_op74no1_mvt3.mxl", src)
    shutil.copy(parity_dir / "inputs" / "midi" / "m21_test01.mid", src)
    assert convert_tree(src, out, workers=1, show_progress=False).warned == 1
    (warning,) = read_jsonl(out / "warnings.jsonl")
    assert "unequal bar duration" in warning["warnings"][0]

    rerun = convert_tree(src, out, workers=1, show_progress=False)
    assert (rerun.skipped, rerun.converted) == (2, 0)
    assert read_jsonl(out / "warnings.jsonl") == [warning]
    _later(src / "haydn_op74no1_mvt3.mxl", out / "haydn_op74no1_mvt3.abc")
    redo = convert_tree(src, out, workers=1, show_progress=False)  # converted again: re-recorded
    assert (redo.converted, redo.warned) == (1, 1)
    assert read_jsonl(out / "warnings.jsonl") == [warning]
    (src / "haydn_op74no1_mvt3.mxl").unlink()  # an input that is gone takes its record along
    convert_tree(src, out, workers=1, show_progress=False)
    assert read_jsonl(out / "warnings.jsonl") == []


def test_ctrl_c_says_what_was_finished_and_exits_130(parity_dir, tmp_path, monkeypatch, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ["m21_test01", "m21_test09", "m21_test12"]:
        shutil.copy(parity_dir / "inputs" / "midi" / f"{name}.mid", src)
    run = bulk._run

    def one_then_ctrl_c(jobs, workers, timeout):
        yield next(run(jobs, workers, timeout))
        raise KeyboardInterrupt

    monkeypatch.setattr(bulk, "_run", one_then_ctrl_c)
    assert main(["convert", str(src), str(out), "--workers", "1", "--quiet"]) == 130
    stderr = capsys.readouterr().err
    assert "3 files: 1 converted, 0 already done, 0 failed, 2 not reached (rerun to finish them)" in stderr
    assert stderr.rstrip().endswith("interrupted") and "Traceback" not in stderr
    assert len(list(out.glob("*.mtf"))) == 1
