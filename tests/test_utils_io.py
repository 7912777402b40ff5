"""JSON logs and manifests (``append_jsonl``, ``read_jsonl``, ``write_json_atomic``) with any path."""

from __future__ import annotations

import json
import os

from clamp3.utils.io import append_jsonl, json_text, read_jsonl, write_json_atomic

# What os.walk / Path give for the file-name bytes b"caf\xe9.mid" (Latin-1, not UTF-8).
NOT_UTF8 = os.fsdecode(b"caf\xe9.mid")


def test_records_with_names_that_are_not_utf8_round_trip(tmp_path):
    log = tmp_path / "errors.jsonl"
    records = [{"path": NOT_UTF8, "reason": "corrupt"}, {"path": "café ♪.mid", "reason": "ok"}]
    for record in records:
        append_jsonl(log, record)
    text = log.read_bytes().decode("utf-8")  # the log stays valid UTF-8
    assert "café ♪.mid" in text  # real non-ASCII names stay readable
    assert "caf\\udce9.mid" in text
    assert read_jsonl(log) == records  # the same str path back, so resume logic can match it
    assert os.fsencode(read_jsonl(log)[0]["path"]) == b"caf\xe9.mid"


def test_json_files_and_text_take_any_path(tmp_path):
    data = {"files": [NOT_UTF8, 'naïve \\ "quoted"', "\U0001d11e"], "n": 3}
    write_json_atomic(tmp_path / "meta.json", data)
    assert json.loads((tmp_path / "meta.json").read_text(encoding="utf-8")) == data
    assert json.loads(json_text(data)) == data
    assert json_text(data, indent=2) == json.dumps(data, indent=2, ensure_ascii=False).replace(
        NOT_UTF8, "caf\\udce9.mid"
    )
