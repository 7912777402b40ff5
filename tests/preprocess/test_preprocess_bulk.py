"""convert_tree / ``clamp3 convert``: bad inputs of every kind, reruns, reverse directions."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from clamp3.cli.main import main
from clamp3.preprocess import bulk, convert_tree
from clamp3.preprocess.bulk import Job, convert_file, plan_jobs


def _bach_xml(parity_dir: Path) -> bytes:
    with zipfile.ZipFile(parity_dir / "inputs" / "musicxml" / "bach_bwv66_6.mxl") as archive:
        name = next(n for n in archive.namelist() if n.endswith(".xml") and not n.startswith("META"))
        return archive.read(name)


def _unequal_bars(parity_dir: Path) -> bytes:
    """Bach chorale whose second part lost its last measure."""
    root = ET.fromstring(_bach_xml(parity_dir))
    part = root.findall("part")[1]
    part.remove(part.findall("measure")[-1])
    return ET.tostring(root)


@pytest.fixture()
def mixed_tree(parity_dir, tmp_path) -> Path:
    src = tmp_path / "in"
    (src / "scores" / "folk").mkdir(parents=True)
    (src / "perf").mkdir()
    inputs = parity_dir / "inputs"
    shutil.copy(inputs / "musicxml" / "bach_bwv66_6.mxl", src / "scores")
    shutil.copy(inputs / "musicxml" / "oneills_0003_little_heathy_hill.musicxml", src / "scores" / "folk")
    shutil.copy(inputs / "midi" / "m21_test01.mid", src / "perf")
    (src / "perf" / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff")
    (src / "scores" / "drawing.xml").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'><rect/></svg>")
    (src / "scores" / "silent.musicxml").write_bytes(b"<score-partwise><part-list/></score-partwise>")
    (src / "scores" / "zero.mxl").write_bytes(b"")
    (src / "perf" / "gone.mid").symlink_to(src / "perf" / "does-not-exist.mid")
    (src / "scores" / "unequal.xml").write_bytes(_unequal_bars(parity_dir))
    (src / "notes.txt").write_text("not music, ignored", encoding="utf-8")
    return src


EXPECTED_ERRORS = {
    "perf/corrupt.mid": "corrupt MIDI file (EOFError: the file ends early)",
    "scores/drawing.xml": "XML but not MusicXML (root element <{http://www.w3.org/2000/svg}svg>)",
    "scores/silent.musicxml": "conversion produced no ABC",
    "scores/zero.mxl": "empty file (0 bytes)",
    "perf/gone.mid": "cannot read file",
    "scores/unequal.xml": "voices have unequal bar counts (V:1 10, V:2 9, V:3 10, V:4 10)",
}


@pytest.mark.parametrize("workers", [1, 2])
def test_every_bad_input_is_logged_and_good_files_are_written(
    parity_dir, mixed_tree, tmp_path, capsys, workers
):
    out = tmp_path / "out"
    status = main(["convert", str(mixed_tree), str(out), "--workers", str(workers), "--quiet"])
    assert status == 1
    errors = {str(Path(r["path"]).relative_to(mixed_tree)): r["reason"] for r in _jsonl(out / "errors.jsonl")}
    assert set(errors) == set(EXPECTED_ERRORS)
    for rel, reason in EXPECTED_ERRORS.items():
        assert reason in errors[rel], (rel, errors[rel])
    stderr = capsys.readouterr().err
    assert "9 files: 3 converted, 0 already done, 6 failed" in stderr
    assert all(str(mixed_tree / rel) in stderr for rel in EXPECTED_ERRORS)

    prep = parity_dir / "prep"
    assert (out / "scores" / "bach_bwv66_6.abc").read_bytes() == (
        prep / "abc_interleaved" / "bach_bwv66_6.abc"
    ).read_bytes()
    folk = out / "scores" / "folk" / "oneills_0003_little_heathy_hill.abc"
    assert (
        folk.read_bytes() == (prep / "abc_interleaved" / "oneills_0003_little_heathy_hill.abc").read_bytes()
    )
    assert (out / "perf" / "m21_test01.mtf").read_bytes() == (prep / "mtf" / "m21_test01.mtf").read_bytes()
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(
        [
            "errors.jsonl",
            "warnings.jsonl",
            "perf/m21_test01.mtf",
            "scores/bach_bwv66_6.abc",
            "scores/folk/oneills_0003_little_heathy_hill.abc",
        ]
    )


def test_rerun_skips_finished_files_and_retries_failures(mixed_tree, tmp_path):
    out = tmp_path / "out"
    first = convert_tree(mixed_tree, out, workers=1, show_progress=False)
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.abc")}
    (mixed_tree / "scores" / "zero.mxl").unlink()  # the user removes one bad file
    second = convert_tree(mixed_tree, out, workers=1, show_progress=False)
    assert (first.converted, len(first.failed)) == (3, 6)
    assert (second.skipped, second.converted, len(second.failed)) == (3, 0, 5)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*.abc")} == stamps
    assert len(_jsonl(out / "errors.jsonl")) == 5  # the log describes the latest run only
    third = convert_tree(mixed_tree, out, workers=1, overwrite=True, show_progress=False)
    assert third.converted == 3 and third.skipped == 0


def test_standard_abc_tree_and_warnings(parity_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "musicxml" / "haydn_op74no1_mvt3.mxl", src)
    summary = convert_tree(
        src, tmp_path / "out", standard_abc_dir=tmp_path / "std", workers=1, show_progress=False
    )
    assert summary.ok and summary.warned == 1
    prep = parity_dir / "prep"
    assert (tmp_path / "std" / "haydn_op74no1_mvt3.abc").read_bytes() == (
        prep / "abc_standard" / "haydn_op74no1_mvt3.abc"
    ).read_bytes()
    (warning,) = _jsonl(tmp_path / "out" / "warnings.jsonl")
    assert "unequal bar duration" in warning["warnings"][0]


def test_reverse_directions(parity_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(parity_dir / "prep" / "mtf" / "m21_test19.mtf", src)
    shutil.copy(parity_dir / "prep" / "abc_interleaved" / "bach_bwv66_6.abc", src)
    assert main(["convert", str(src), str(tmp_path / "midi"), "--to", "midi", "--quiet"]) == 0
    assert main(["convert", str(src), str(tmp_path / "xml"), "--to", "musicxml", "--quiet"]) == 0
    from clamp3.preprocess import interleave_abc, midi_to_mtf, musicxml_to_abc

    assert midi_to_mtf(tmp_path / "midi" / "m21_test19.mid") == (src / "m21_test19.mtf").read_text(
        encoding="utf-8"
    )
    back = interleave_abc(musicxml_to_abc(tmp_path / "xml" / "bach_bwv66_6.xml"))
    assert back == (src / "bach_bwv66_6.abc").read_text(encoding="utf-8")
    warnings = tmp_path / "xml" / "warnings.jsonl"
    assert not warnings.exists() or not _jsonl(warnings)
    # A tune book: abc2xml converts its first tune; the output is kept and the rest is a warning.
    (src / "book.abc").write_text("X:1\nT:One\nK:C\nCDEF|\n\nX:2\nT:Two\nK:G\nGABc|\n", encoding="utf-8")
    assert main(["convert", str(src), str(tmp_path / "xml"), "--to", "musicxml", "--quiet"]) == 0
    (warning,) = _jsonl(warnings)
    assert warning["path"].endswith("book.abc")
    assert warning["warnings"] == ["holds 2 tunes (X: fields); only the first is converted, as abc2xml does"]
    assert "One" in (tmp_path / "xml" / "book.xml").read_text(encoding="utf-8")


def test_name_collisions_and_output_inside_input(parity_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(parity_dir / "inputs" / "musicxml" / "bach_bwv297.mxl", src)
    (src / "bach_bwv297.xml").write_bytes(b"<score-partwise/>")
    jobs, clashes = plan_jobs(src, src / "out")
    assert [j.source.name for j in jobs] == ["bach_bwv297.mxl"]
    assert clashes == [
        (
            str(src / "bach_bwv297.xml"),
            f"output {src / 'out' / 'bach_bwv297.abc'} is already produced from {src / 'bach_bwv297.mxl'}",
        )
    ]
    convert_tree(src, src / "out", workers=1, show_progress=False)
    again, _ = plan_jobs(src, src / "out")  # the output tree is never read back as input
    assert [j.source.name for j in again] == ["bach_bwv297.mxl"]


# The alarm may land in a garbage-collector callback, which swallows it with this warning; the
# limit repeats its alarm and fails the item on exit all the same (utils.workers.time_limit).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_timeout_marks_the_file_failed(parity_dir, tmp_path):
    job = Job(
        parity_dir / "inputs" / "musicxml" / "beethoven_op18no1_mvt2.mxl", (("abc", tmp_path / "b.abc"),)
    )
    source, error, _ = convert_file(job, timeout=0.05)
    assert source == str(job.source) and "timeout" in error
    assert not (tmp_path / "b.abc").exists()
    assert convert_file(job, timeout=None)[1] is None and (tmp_path / "b.abc").exists()


def _crash_on_corrupt(job, timeout=None):
    if job.source.name == "m21_test03.mid":
        os._exit(3)  # simulate a segfault / OOM kill inside the worker
    return _original_convert_file(job, timeout)


_original_convert_file = bulk.convert_file


def test_a_dying_worker_fails_only_its_files(parity_dir, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    for name in ["m21_test01", "m21_test03", "m21_test08", "m21_test12"]:
        shutil.copy(parity_dir / "inputs" / "midi" / f"{name}.mid", src)
    monkeypatch.setattr(bulk, "convert_file", _crash_on_corrupt)  # workers are forked after this
    summary = convert_tree(src, tmp_path / "out", workers=2, show_progress=False)
    (failed,) = summary.failed  # files in flight beside the culprit were retried, alone
    assert Path(failed[0]).name == "m21_test03.mid" and "worker process died" in failed[1]
    assert summary.converted == 3
    monkeypatch.setattr(bulk, "convert_file", _original_convert_file)
    rerun = convert_tree(src, tmp_path / "out", workers=2, show_progress=False)
    assert rerun.ok and (rerun.skipped, rerun.converted) == (3, 1)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_missing_input_directory_is_a_usage_error(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "out"), "--quiet"]) == 2
    assert "input directory not found" in capsys.readouterr().err


def test_unusable_directory_arguments_are_named_with_the_reason(parity_dir, tmp_path, capsys):
    score = tmp_path / "bach.mxl"
    shutil.copy(parity_dir / "inputs" / "musicxml" / "bach_bwv66_6.mxl", score)
    assert main(["convert", str(score), str(tmp_path / "out"), "--quiet"]) == 2
    assert f"{score}: is a file, not a directory" in capsys.readouterr().err
    src = tmp_path / "in"
    src.mkdir()
    assert main(["convert", str(src), str(score), "--quiet"]) == 2
    assert f"{score}: cannot write outputs there: it is a file" in capsys.readouterr().err
    assert main(["convert", str(src), str(score / "sub"), "--quiet"]) == 2
    assert f"{score / 'sub'}: cannot create the output directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--workers", "-3", "must be 0 or more"),
        ("--timeout", "-1", "must be a finite number, 0 or more"),
        ("--timeout", "nan", "must be a finite number, 0 or more"),
    ],
)
def test_bad_numbers_are_refused_when_parsing(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(tmp_path), str(tmp_path / "out"), option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
