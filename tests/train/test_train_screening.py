"""The up-front data check: bad files are skipped and listed (or fatal), the result is cached."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from clamp3.train import config_from_dict, screening, train
from clamp3.train.logger import read_log
from clamp3.train.screening import ReadRules, file_problem, find_problems
from clamp3.train.toy import write_toy_pairs
from clamp3.utils.errors import InputError

# Tiny models train several times faster on one thread than on two busy cores.
pytestmark = pytest.mark.usefixtures("one_thread")

RULES = ReadRules(strip_default_length=True, feature_dim=32)


def test_file_problem_names_each_kind_of_bad_file(tmp_path):
    (tmp_path / "ok.abc").write_text("X:1\nK:C\nCDEF|\n")
    (tmp_path / "empty.abc").write_text("")
    (tmp_path / "latin1.mtf").write_bytes(b"ticks_per_beat 480\nnote_on 0 0 60 80 \xe9\n")
    np.save(tmp_path / "ok.npy", np.ones((1, 3, 32), np.float32))
    np.save(tmp_path / "wide.npy", np.ones((3, 16), np.float32))
    np.save(tmp_path / "none.npy", np.ones((0, 32), np.float32))
    np.save(tmp_path / "nan.npy", np.full((2, 32), np.nan, np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:100])
    expected = {
        "ok.abc": None,
        "ok.npy": None,
        "empty.abc": "empty file",
        "latin1.mtf": "not UTF-8 text",
        "wide.npy": "or (n, 32), got (3, 16)",
        "none.npy": "got (0, 32)",
        "nan.npy": "NaN or infinity",
        "cut.npy": "not a readable .npy array",
        "missing.abc": "does not exist",
    }
    for name, reason in expected.items():
        problem = file_problem(str(tmp_path / name), RULES)
        assert (problem is None) if reason is None else (reason in problem), (name, problem)


def test_worker_processes_find_the_same_problems(tmp_path):
    files = []
    for i in range(screening.SERIAL_BELOW + 44):
        path = tmp_path / f"{i:03d}.abc"
        path.write_text("" if i % 7 == 0 else f"X:{i}\nK:C\nCDEF|\n")
        files.append(str(path))
    serial = find_problems(files, RULES, workers=1)
    assert find_problems(files, RULES, workers=2) == serial
    assert sum(p is not None for p in serial) == len(range(0, len(files), 7))


_FILE_PROBLEM = screening.file_problem


def _crash_on_marker(path, rules):
    if path.endswith("crash.abc"):
        os._exit(1)  # a reader that takes its worker process down
    return _FILE_PROBLEM(path, rules)


def test_a_file_that_kills_its_worker_is_the_only_bad_one(tmp_path, monkeypatch):
    files = []
    for i in range(screening.SERIAL_BELOW + 10):
        path = tmp_path / (f"{i:03d}" + ("crash.abc" if i == 100 else ".abc"))
        path.write_text(f"X:{i}\nK:C\nCDEF|\n")
        files.append(str(path))
    monkeypatch.setattr(screening, "file_problem", _crash_on_marker)  # workers fork after this
    problems = find_problems(files, RULES, workers=2)
    assert [i for i, p in enumerate(problems) if p is not None] == [100]
    assert "worker process died" in problems[100]


def _spoil(root):
    """Three bad files in the toy set: an empty ABC, a NaN feature file, a missing ABC."""
    (root / "abc/0003.abc").write_text("")
    np.save(root / "npy/0005.npy", np.full((4, 32), np.nan, np.float32))
    (root / "abc/0009.abc").unlink()


def _config(root, out, modality="symbolic", **extra):
    stage = {"preset": modality, "optim": {"lr": 1e-3, "batch_size": 4, "warmup_steps": 0, "max_steps": 2}}
    data = {
        "output_dir": str(out),
        "model": "tiny",
        "tokenizer": str(root),
        "train_data": str(root / "pairs.jsonl"),
        "eval_fraction": 0.25,
        "log_every": 1,
        "show_progress": False,
        "stages": [stage],
        **extra,
    }
    return config_from_dict(data)


def test_bad_files_are_skipped_listed_and_counted(tmp_path, tiny_tokenizer, caplog):
    root = tmp_path / "data"
    write_toy_pairs(root, n=16, feature_dim=32)
    tiny_tokenizer.save(root)
    _spoil(root)
    caplog.set_level("INFO", logger="clamp3.train")
    run = tmp_path / "run"
    # Without the check the empty ABC stopped the run mid-training with a traceback.
    assert train(_config(root, run)) == run / "best"
    bad = [json.loads(line) for line in (run / "bad_items.jsonl").read_text().splitlines()]
    assert [(b["file"].rsplit("/", 2)[-2:], b["records"]) for b in bad] == [
        (["abc", "0003.abc"], ["toy-0003"]),
        (["abc", "0009.abc"], ["toy-0009"]),
    ]
    assert bad[0]["reason"] == "empty file" and "does not exist" in bad[1]["reason"]
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "16 files in" in messages and ": 2 bad (skipped; listed in" in messages
    assert "stage symbolic (from its start): 11 training items, 3 validation items" in messages
    assert "2 items left out for bad files" in messages
    assert len(read_log(run / "log.jsonl", "train")) == 2


def test_the_check_is_cached_for_resume_and_redone_when_the_data_changes(
    tmp_path, tiny_tokenizer, monkeypatch, caplog
):
    root = tmp_path / "data"
    jsonl = write_toy_pairs(root, n=16, feature_dim=32)
    tiny_tokenizer.save(root)
    _spoil(root)
    run = tmp_path / "run"
    config = _config(root, run, modality="audio")
    assert train(config, stop_after=1) is None
    checked = []
    original = screening.find_problems
    monkeypatch.setattr(
        screening, "find_problems", lambda files, *a: checked.append(files) or original(files, *a)
    )
    caplog.set_level("INFO", logger="clamp3.train")
    assert train(config, resume=True) == run / "best"
    assert checked == [] and "the earlier result reused: 16 files, 1 bad" in caplog.text
    assert len(read_log(run / "log.jsonl", "train")) == 2
    jsonl.write_text(jsonl.read_text() + "\n")  # a changed data file is checked again
    train(_config(root, tmp_path / "run", modality="audio"), resume=True)
    assert len(checked) == 1 and len(checked[0]) == 16


def test_bad_items_fail_stops_before_training(tmp_path, tiny_tokenizer):
    root = tmp_path / "data"
    write_toy_pairs(root, n=16, feature_dim=32)
    tiny_tokenizer.save(root)
    _spoil(root)
    run = tmp_path / "run"
    with pytest.raises(InputError, match=r"0005.npy: audio features contain NaN.*1 bad file\(s\) in all"):
        train(_config(root, run, modality="audio", bad_items="fail"))
    assert not (run / "stages").exists() and "0005.npy" in (run / "bad_items.jsonl").read_text()


def test_m3_file_lists_are_checked_too(tmp_path):
    root = tmp_path / "data"
    write_toy_pairs(root, n=12, feature_dim=32)
    (root / "abc/0004.abc").write_text("")
    stage = {"preset": "m3", "optim": {"lr": 1e-3, "batch_size": 4, "max_steps": 1, "warmup_steps": 0}}
    config = config_from_dict(
        {
            "output_dir": str(tmp_path / "m3"),
            "model": "tiny",
            "train_data": str(root / "abc"),
            "eval_fraction": 0.0,
            "show_progress": False,
            "stages": [stage],
        }
    )
    assert train(config) is not None
    (bad,) = [json.loads(line) for line in (tmp_path / "m3/bad_items.jsonl").read_text().splitlines()]
    assert bad["file"].endswith("abc/0004.abc") and bad["records"] == [] and bad["modality"] == "symbolic"
