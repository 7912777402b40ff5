"""JSON logs and manifests (``append_jsonl``, ``read_jsonl``, ``write_json_atomic``) with any path."""

from __future__ import annotations

import json
import os

import pytest

from clamp3.utils.errors import InputError
from clamp3.utils.extras import optional_module
from clamp3.utils.io import append_jsonl, csv_rows, header_delimiter, json_text, jsonl_objects, read_jsonl
from clamp3.utils.io import write_json_atomic

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


def test_a_truncated_last_line_is_ignored_and_cut_off_by_the_next_append(tmp_path):
    log = tmp_path / "manifest.jsonl"
    append_jsonl(log, {"path": "a.mid"})
    with open(log, "a", encoding="utf-8") as handle:
        handle.write('{"path": "b.m')  # what a writer killed mid-line leaves
    assert read_jsonl(log) == [{"path": "a.mid"}]
    append_jsonl(log, {"path": "c.mid"})  # the remnant goes: kept, it would be damage mid-file
    assert read_jsonl(log) == [{"path": "a.mid"}, {"path": "c.mid"}]
    assert log.read_bytes().count(b"\n") == 2
    first = tmp_path / "torn-first.jsonl"
    first.write_bytes(b'{"path": "x')  # killed during the very first line
    append_jsonl(first, {"path": "y"})
    assert first.read_bytes() == b'{"path": "y"}\n'


def test_a_torn_manifest_line_leaves_the_embedding_folder_usable(tmp_path, tiny_model_dir):
    """A kill mid-line, then two reruns: the second used to fail on a broken line mid-file."""
    from clamp3.cli.main import main

    (tmp_path / "in").mkdir()
    for i in range(3):
        (tmp_path / "in" / f"t{i}.txt").write_text(f"a waltz number {i}", encoding="utf-8")
    args = [
        "embed",
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        "--model",
        str(tiny_model_dir),
        "--no-progress",
    ]
    assert main(args) == 0
    manifest = tmp_path / "out" / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes()[:-20])  # the last record torn
    assert main(args) == 0 and main(args) == 0
    assert sorted(r["path"] for r in read_jsonl(manifest)) == ["t0.txt", "t1.txt", "t2.txt"]


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


def test_an_atomic_write_onto_a_folder_names_it_and_leaves_nothing(tmp_path):
    from clamp3.utils.io import write_text_atomic

    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        write_text_atomic(target, "x")
    assert caught.value.filename == str(target) and "is a folder" in caught.value.strerror
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any(target.iterdir())


def test_csv_rows_keep_multi_line_cells_and_number_rows_by_their_first_line():
    text = 'a,b\r\n\r\n1,"two\nlines"\n3,"x\n\ny"\n4,z'
    expected = [(1, ["a", "b"]), (2, []), (3, ["1", "two\nlines"]), (5, ["3", "x\n\ny"]), (8, ["4", "z"])]
    assert list(csv_rows(text)) == expected


def test_a_catalogue_header_tells_its_delimiter(tmp_path):
    """Spreadsheets in locales with a decimal comma save ``;``; the header of a catalogue (which
    has one) says so. Header-less files keep the comma."""
    from clamp3.curate.catalogue import read_catalogue as curate_catalogue
    from clamp3.index.catalogue import read_catalogue

    assert header_delimiter("\nid;title;files\n") == ";" and header_delimiter("id\ttitle") == "\t"
    assert header_delimiter("key,tags\na,rock;live;folk\n") == ","  # cells do not vote
    assert header_delimiter('"a;b;c",d\n') == "," and header_delimiter("key\n") == ","
    assert list(csv_rows("a;b\n1;2", ";")) == [(1, ["a", "b"]), (2, ["1", "2"])]

    def both(directory, text):
        directory.mkdir()
        (directory / "a.abc").write_text("X:1\nK:C\nC|\n")
        (directory / "cat.csv").write_text(text, encoding="utf-8")
        index_rows = read_catalogue(directory / "cat.csv").rows
        return index_rows, repr(curate_catalogue(directory / "cat.csv")).replace(str(directory), "DIR")

    comma = both(tmp_path / "comma", "key,title,files,year:int\na,Wiegenlied,a.abc,1868\n")
    for name, delimiter in (("semicolon", ";"), ("tab", "\t")):
        text = delimiter.join(["key", "title", "files", "year:int"]) + "\n"
        text += delimiter.join(["a", "Wiegenlied", "a.abc", "1868"]) + "\n"
        assert both(tmp_path / name, text) == comma, name


def _as_written(text: str, how: str) -> bytes:
    """``text`` as an editor saves it: plain UTF-8, with Excel's or Notepad's byte-order mark,
    as Windows PowerShell's ``>`` (UTF-16 LE with a mark), or with CRLF line ends."""
    return {
        "utf8": text.encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "utf16": b"\xff\xfe" + text.replace("\n", "\r\n").encode("utf-16-le"),
        "crlf": text.replace("\n", "\r\n").encode(),
    }[how]


def test_every_reader_of_a_file_people_write_decodes_it_alike(tmp_path):
    """Label CSVs and lists, prompt files, index and curate catalogues, training records and file
    lists, curate documents: one decoder (``read_text``), so a byte-order mark, UTF-16 or CRLF
    reads as plain UTF-8 does in every one (a BOM broke the first JSON line of some, and a
    UTF-16 file was a traceback in others)."""
    from clamp3.curate.catalogue import read_catalogue as curate_catalogue
    from clamp3.curate.documents import read_documents
    from clamp3.evaluate.genscore import read_prompts
    from clamp3.evaluate.labels import read_label_csv, read_lines
    from clamp3.index.catalogue import read_catalogue
    from clamp3.train.records import list_symbolic_files, load_records

    def passages(path):
        return [passage.text for passage in read_documents(path.parent)[0]]

    readers = {
        "labels.csv": ("path,label\na.mid,folk;dance\nb.mid,jazz\n", read_label_csv),
        "labels.txt": ("folk\n\njazz\n", lambda p: read_lines(p, "label")),
        "prompts.csv": ('id,prompt\na,"a calm waltz, in D"\n', read_prompts),
        "catalogue.jsonl": ('{"key": "a", "title": "Wiegenlied"}\n', lambda p: read_catalogue(p).rows),
        "catalogue.csv": ("key,title,year:int\na,Wiegenlied,1868\n", lambda p: read_catalogue(p).rows),
        "items.csv": ("id,title,files\na,Wiegenlied,a.abc\n", lambda p: repr(curate_catalogue(p))),
        "records.jsonl": ('{"id": "a", "filepaths": ["a.abc"], "title": "x"}\n', load_records),
        "files.txt": ("\na.abc\n", list_symbolic_files),
        "docs/doc.txt": ("Ein Wiegenlied\nvon Brahms\n", passages),
    }
    for name, (text, read) in readers.items():
        results = {}
        for how in ("utf8", "bom", "utf16", "crlf"):
            path = tmp_path / how / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_as_written(text, how))
            (path.parent / "a.abc").write_text("X:1\nK:C\nC|\n")  # what the lists name
            results[how] = str(read(path)).replace(str(path.parent), "DIR")
        assert results["bom"] == results["utf8"] == results["utf16"] == results["crlf"], name


def test_a_file_list_names_the_line_of_a_missing_file_counting_blank_lines(tmp_path):
    from clamp3.train.records import list_symbolic_files

    (tmp_path / "a.abc").write_text("X:1\nK:C\nC|\n")
    (tmp_path / "files.txt").write_text("a.abc\n\n  \ngone.abc\n")
    with pytest.raises(InputError) as info:
        list_symbolic_files(tmp_path / "files.txt")
    assert info.value.path == f"{tmp_path / 'files.txt'}:4" and "gone.abc does not exist" in info.value.reason


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"a,b\n\x00c", "binary data, not text (a NUL byte at offset 4)"),
        (b"caf\xe9\n", "not UTF-8 text (invalid continuation byte at offset 3)"),
        (b"\xfe\xff\xd8\x00", "not UTF-16 text"),
        ("a,b\n".encode("utf-32"), "binary data, not text (a NUL character at character 0)"),
    ],
)
def test_read_text_names_the_file_and_what_is_wrong(tmp_path, data, reason):
    from clamp3.utils.io import read_text

    (tmp_path / "x.csv").write_bytes(data)
    with pytest.raises(InputError) as info:
        read_text(tmp_path / "x.csv")
    assert info.value.path == str(tmp_path / "x.csv") and info.value.reason.startswith(reason)
    with pytest.raises(InputError, match="cannot read file"):
        read_text(tmp_path)  # a folder
