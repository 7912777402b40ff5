"""``errors.jsonl``: every stage writes the one format, and the one reader reads them all
(``build-corpus``: ``test_corpus_build.py``, which needs music21)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.utils.errorlog import ErrorRecord, append_error, read_errors
from clamp3.utils.errors import InputError

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_every_stage_logs_failures_in_the_one_format(tmp_path, tiny_model_dir):
    pytest.importorskip("soundfile")
    pytest.importorskip("faiss")
    src = tmp_path / "in"
    src.mkdir()
    (src / "ok.txt").write_text("a calm waltz", encoding="utf-8")
    (src / "empty.txt").write_text("", encoding="utf-8")
    (src / "broken.mid").write_bytes(b"MThd not really")
    (src / "broken.wav").write_bytes(b"RIFF....WAVEnot audio")
    runs = {
        "embed": ["embed", str(src), str(tmp_path / "emb"), "--model", str(tiny_model_dir), "--no-progress"],
        "convert": ["convert", str(src), str(tmp_path / "conv"), "--quiet"],
        "extract-audio": [
            "extract-audio",
            str(src),
            str(tmp_path / "feat"),
            "--model",
            "logmel:8",
            "--no-progress",
        ],
    }
    for argv in runs.values():
        assert main(argv) == 1, argv
    np.save(tmp_path / "emb" / "stray.npy", np.zeros((1, 3, 4), np.float32))  # unpooled: not indexable
    assert main(["index", str(tmp_path / "emb"), str(tmp_path / "idx"), "--quiet"]) == 1
    logs = {
        "embed": tmp_path / "emb",
        "convert": tmp_path / "conv",
        "extract-audio": tmp_path / "feat",
        "index": tmp_path / "idx",
    }
    found = {stage: read_errors(folder / "errors.jsonl") for stage, folder in logs.items()}
    for stage, records in found.items():
        assert records, stage
        for record in records:
            assert set(record.to_json()) >= {"path", "reason", "time"} and not record.extra, (stage, record)
            assert ISO_UTC.match(record.time) and "\n" not in record.reason, (stage, record)
    assert {r.path for r in found["embed"]} >= {"empty.txt", "broken.mid", "broken.wav"}
    assert [r.path for r in found["extract-audio"]] == ["broken.wav"]
    assert any(r.path.endswith("broken.mid") for r in found["convert"])
    assert [r.path for r in found["index"]] == [str(tmp_path / "emb" / "stray.npy")]


def test_the_reader_refuses_records_of_another_format(tmp_path):
    log = tmp_path / "errors.jsonl"
    append_error(log, "a.mid", "bad", stage="parse")
    (record,) = read_errors(log)
    assert record == ErrorRecord("a.mid", "bad", record.time, {"stage": "parse"})
    log.write_text('{"path": "a.mid", "error": "bad", "time": 1.5}\n', encoding="utf-8")  # an old schema
    with pytest.raises(InputError, match="lacks reason, time"):
        read_errors(log)
