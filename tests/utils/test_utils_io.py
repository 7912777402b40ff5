"""JSON logs and manifests (``append_jsonl``, ``read_jsonl``, ``write_json_atomic``) with any path."""

from __future__ import annotations

import json
import os

import pytest

from clamp3.utils.errors import InputError
from clamp3.utils.extras import optional_module
from clamp3.utils.io import append_jsonl, json_text, jsonl_objects, read_jsonl, write_json_atomic

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


def test_a_truncated_last_line_is_ignored_and_the_next_append_starts_a_new_line(tmp_path):
    log = tmp_path / "manifest.jsonl"
    append_jsonl(log, {"path": "a.mid"})
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"path": "b.m')  # what a writer killed mid-line leaves
    assert read_jsonl(log) == [{"path": "a.mid"}]
    append_jsonl(log, {"path": "c.mid"})  # the remnant becomes a line of its own
    with pytest.raises(InputError) as caught:
        read_jsonl(log)  # ... which is now damage in the middle, reported, not skipped
    assert (caught.value.path, caught.value.reason.split(":")[0]) == (str(log), "line 2")


def test_a_malformed_line_in_the_middle_names_the_file_and_line(tmp_path):
    log = tmp_path / "errors.jsonl"
    log.write_text('{"path": "a"}\n\n{"path": "b"\n{"path": "c"}\n', encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_jsonl(log)
    assert caught.value.path == str(log) and caught.value.reason.startswith("line 3: not valid JSON")
    log.write_text('{"path": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2: expected a JSON object"):
        read_jsonl(log)


def test_lines_end_at_newline_only(tmp_path):
    log = tmp_path / "manifest.jsonl"
    record = {"path": "odd\u2028name\x1c.mid"}  # separators str.splitlines would split at
    append_jsonl(log, record)
    assert read_jsonl(log) == [record]


def test_lenient_jsonl_keeps_the_good_lines_and_names_each_bad_one():
    lines = ['{"a": 1}', "", "{oops", "[1, 2]", '{"b": 2}']
    rows, errors = jsonl_objects("cat.jsonl", lines)
    assert rows == [(1, {"a": 1}), (5, {"b": 2})]
    assert [(e.path, e.reason.split(":")[0]) for e in errors] == [
        ("cat.jsonl:line 3", "invalid JSON"),
        ("cat.jsonl:line 4", "not a JSON object"),
    ]


def test_a_missing_optional_dependency_names_the_extra():
    assert optional_module("json", "never", "none") is json
    with pytest.raises(ImportError, match=r"^x needs y: pip install 'clamp3\[demo\]'$") as caught:
        optional_module("clamp3_no_such_module", "x needs y", "demo")
    assert isinstance(caught.value.__cause__, ImportError)
