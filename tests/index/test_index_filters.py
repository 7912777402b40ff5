"""The --where grammar (parser, checks, Milvus text, three-valued matching), the catalogue
reader, and the CLI: bad filters are one line + exit 2, --sync and --backend milvus end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embedding_support import manifest_record, write_manifest

from clamp3.cli.main import main
from clamp3.index.catalogue import read_catalogue
from clamp3.index.filters import FilterError, parse_where
from clamp3.utils.errors import InputError

COLUMNS = {
    "modality": "str",
    "year": "int",
    "composer": "str",
    "tags": "list",
    "rating": "float",
    "live": "bool",
}


def test_the_example_parses_and_compiles_for_milvus():
    where = parse_where('modality == "audio" and year >= 1950 and composer in ["Bach", "Händel"]', COLUMNS)
    assert where.milvus() == '((modality == "audio") and (year >= 1950) and (composer in ["Bach", "Händel"]))'
    assert where.matches({"modality": "audio", "year": 1960, "composer": "Händel"})
    assert not where.matches({"modality": "audio", "year": 1940, "composer": "Bach"})


def test_precedence_negation_and_quoting():
    where = parse_where("""not year < 1900 or composer == 'O\\'Brien "x"' and live == true""", COLUMNS)
    # and binds tighter than or; not pushes down to its comparison, with a null guard for none needed.
    assert where.milvus() == '((year >= 1900) or ((composer == "O\'Brien \\"x\\"") and (live == true)))'
    negated = parse_where('not (tags contains "a" or composer != "B")', COLUMNS)
    assert negated.milvus() == '((tags is not null and not array_contains(tags, "a")) and (composer == "B"))'
    assert (
        parse_where("composer not in []", COLUMNS).milvus() == "(composer is not null and composer not in [])"
    )
    assert parse_where(r'composer == "caf\u00e9\tx"', COLUMNS).tree.value == "café\tx"  # JSON escapes


@pytest.mark.parametrize(
    "record,expected",
    [
        ({"year": None}, False),  # unknown -> not (unknown) is unknown -> no match
        ({"year": 1800}, True),
        ({"year": 1950}, False),
    ],
)
def test_missing_values_follow_three_valued_logic(record, expected):
    assert parse_where("not (year >= 1900)", COLUMNS).matches(record) is expected
    # "or" with a true side matches even when the other side is unknown.
    assert parse_where('year > 0 or modality == "audio"', COLUMNS).matches({"modality": "audio"})


@pytest.mark.parametrize(
    "text,message",
    [
        ("", "empty"),
        ("year >=", "expected a value"),
        ("year >= 1950 and", "expected a column name"),
        ("year 1950", "expected a comparison"),
        ("(year > 1", r"expected '\)'"),
        ("year > 1 year < 2", "unexpected 'year'"),
        ('titel == "x"', "unknown column 'titel'"),
        ('year >= "1950"', "year holds int values"),
        ("year >= 1950.5", "year holds int values"),
        ('composer > "B"', "needs a number column"),
        ('tags == "x"', "list column"),
        ("composer contains 'x'", "'contains' needs a list column"),
        ("__import__('os').system('true')", "cannot read|expected a comparison"),
        ("year >= 1950; drop", "cannot read"),
        ("not " * 3000 + "year > 1", "longer than|nested"),
    ],
)
def test_bad_expressions_are_one_line_errors(text, message):
    with pytest.raises(FilterError, match=message) as info:
        parse_where(text, COLUMNS)
    assert "\n" not in str(info.value) and str(info.value).startswith("--where: ")
    assert isinstance(info.value, InputError)


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(FilterError, match="nested"):
        parse_where("(" * 900 + "year > 1" + ")" * 900, COLUMNS)


def test_catalogue_csv_types_and_join_by_path(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text(
        "path,year,rating,composer,tags:list,live:bool\n./a/x.mid,1950,4.5,Bach,chorale; sacred,true\na/y.mid,,3,Händel,,false\n"
    )
    catalogue = read_catalogue(path)
    assert catalogue.by == "path"
    assert catalogue.columns == {
        "year": "int",
        "rating": "float",
        "composer": "str",
        "tags": "list",
        "live": "bool",
    }
    joined = catalogue.join([{"key": "a/x", "path": "a/x.mid"}, {"key": "a/z", "path": "a/z.mid"}])
    assert joined[0] | {} == {
        "key": "a/x",
        "path": "a/x.mid",
        "year": 1950,
        "rating": 4.5,
        "composer": "Bach",
        "tags": ["chorale", "sacred"],
        "live": True,
    }
    assert joined[1]["year"] is None and catalogue.unmatched == 1  # a/y.mid matched no item


def test_a_catalogue_naming_items_by_the_other_column_says_which_to_use(tmp_path, caplog):
    """File names under ``key`` (the key has no extension) matched nothing, with no word why."""
    import logging

    records = [{"key": "folk/reel", "path": "folk/reel.mid"}, {"key": "jig", "path": "jig.abc"}]
    (tmp_path / "by_key.csv").write_text("key,composer\nfolk/reel.mid,A\njig,B\n", encoding="utf-8")
    (tmp_path / "by_path.csv").write_text("path,composer\nfolk/reel,A\n./jig.abc,B\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, "clamp3.index.catalogue"):
        joined = read_catalogue(tmp_path / "by_key.csv").join(records)
        assert [r["composer"] for r in joined] == [None, "B"]
        read_catalogue(tmp_path / "by_path.csv").join(records)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "1 row names its item by its path under the 'key' column (e.g. 'folk/reel.mid'), so they "
        "match nothing; name that column 'path'",
        "1 row names its item by its key under the 'path' column (e.g. 'folk/reel'), so they "
        "match nothing; name that column 'key'",
    ]


def test_a_number_column_made_text_by_a_few_cells_is_named(tmp_path, caplog):
    """``c. 1720`` among years makes the column text, and ``--where 'year > 1700'`` is then
    refused as a comparison on text: the cell that did it is named when the file is read."""
    path = tmp_path / "cat.csv"
    rows = ["key,year,title", "a,1700,Air", "b,1710,Bourrée", "c,c. 1720,Gigue", "d,1730,Aria"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="clamp3.index.catalogue"):
        assert read_catalogue(path).columns == {"year": "str", "title": "str"}
    [record] = caplog.records  # a text column (titles) is not suspected
    message = record.getMessage()
    assert "column 'year' is text, not a number, because of 1 cell(s) such as line 4: 'c. 1720'" in message
    path.write_text("key,year:int\na,1700\nc,c. 1720\n", encoding="utf-8")  # declared: refused
    with pytest.raises(InputError, match="line 3, column year"):
        read_catalogue(path)


def test_catalogue_jsonl_by_key_and_its_errors(tmp_path):
    good = tmp_path / "cat.jsonl"
    good.write_text('{"id": "a/x", "year": 1950, "tags": ["x"]}\n\n{"id": "a/y", "year": null}\n')
    catalogue = read_catalogue(good)
    assert catalogue.by == "key" and catalogue.columns == {"year": "int", "tags": "list"}
    assert catalogue.values_for({"key": "a/y"}) == {"year": None, "tags": None}
    spans = tmp_path / "spans.csv"
    spans.write_text('key,note\na,"first line\nsecond line"\n', encoding="utf-8")
    assert read_catalogue(spans).values_for({"key": "a"}) == {"note": "first line\nsecond line"}
    cases = {
        "nojoin.csv": ("title\nx\n", "needs a 'key'"),
        "twice.csv": ("key,year\na,1\na,2\n", "appears twice"),
        "badtype.csv": ("key,year:int\na,19x\n", "line 2, column year"),
        "reserved.csv": ("key,modality\na,audio\n", "built-in metadata name"),
        "badname.csv": ("key,first name\na,b\n", "ASCII letters, digits and _.*e.g. 'first_name'"),
        "accented.csv": ("key,Jahr Ä\na,b\n", "e.g. 'Jahr_A'"),
        "digit.csv": ("key,2nd title\na,b\n", "e.g. '_2nd_title'"),
        "keyword.csv": ("key,Null\na,b\n", "'Null' is a word of the --where grammar"),
        "notjson.jsonl": ("{oops\n", "line 1: not JSON"),
        # a traceback (TypeError in the type inference) before
        "nested.jsonl": ('{"key": "a", "meta": {"b": 1}}\n', 'line 1, column meta: {"b": 1} is nested'),
        "nested_list.jsonl": ('{"key": "a", "t": [["x"]]}\n', "line 1, column t: .* is nested"),
        # the line a row starts on, after a blank line and a cell spanning two lines
        "spans.csv": ('key,note,year:int\n\na,"two\nlines",1\nb,x,19x\n', "line 5, column year"),
        "blank.jsonl": ('{"key": "a"}\n\n{"key": "a"}\n', "line 3: key 'a' appears twice"),
        "cat.txt": ("key\na\n", "a .csv or .jsonl"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            read_catalogue(tmp_path / name)


def _write_folder(root, vectors, shas):
    """(1, D) .npy files and a fresh manifest (the package's writer) with these sha256 values."""
    root.mkdir(exist_ok=True)
    for old in root.glob("manifest*.jsonl"):
        old.unlink()
    records = []
    for i, (vector, sha) in enumerate(zip(vectors, shas)):
        np.save(root / f"item{i:02d}.npy", vector[None, :])
        records.append(manifest_record(f"item{i:02d}.mid", f"item{i:02d}.npy", sha256=sha or "0" * 64))
    write_manifest(root, records)


@pytest.mark.parametrize("backend", ["faiss", pytest.param("milvus", marks=pytest.mark.milvus)])
def test_cli_catalogue_where_and_sync(tmp_path, rng, capsys, backend):
    if backend == "milvus":
        pytest.importorskip("milvus_lite")
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    vectors = rng.standard_normal((24, 8)).astype(np.float32)
    _write_folder(emb, vectors, [f"{i:064x}" for i in range(24)])
    (tmp_path / "cat.csv").write_text(
        "key,year\n" + "".join(f"item{i:02d},{1900 + 10 * i}\n" for i in range(24)) + "ghost,1\nitem99,2\n"
    )
    extra = ["--backend", "milvus", "--uri", str(tmp_path / "lib.db")] if backend == "milvus" else []
    assert (
        main(["index", str(emb), str(idx), "--quiet", "--catalogue", str(tmp_path / "cat.csv"), *extra]) == 0
    )
    assert "  2 catalogue rows matched no item (joined on key; e.g. 'ghost')\n" in capsys.readouterr().err
    meta = json.loads((idx / "meta.json").read_text())
    assert meta["backend"] == backend and meta["columns"] == {"year": "int"}
    if backend == "milvus":
        assert meta["uri"] == str(tmp_path / "lib.db") and meta["collection"] == "idx" and "token" not in meta
    capsys.readouterr()
    query = str(emb / "item03.npy")
    assert main(["search", query, str(idx), "--where", "year >= 2050", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(r["key"] for r in found) == [f"item{i:02d}" for i in range(15, 24)][:10]
    assert all(r["metadata"]["year"] == 1900 + 10 * int(r["key"][4:]) for r in found)
    assert main(["search", query, str(idx), "--where", "year >= 'x'"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "year holds int values" in err and "Traceback" not in err
    # The folder changes: item00 deleted, item05 re-embedded, item24 new; --sync follows it
    # (and reuses the catalogue the index was built with).
    (emb / "item00.npy").unlink()
    vectors[5] = rng.standard_normal(8)
    shas = [f"{i:064x}" for i in range(25)]
    shas[5] = "e" * 64
    _write_folder(emb, np.vstack([vectors, rng.standard_normal((1, 8)).astype(np.float32)]), shas)
    (emb / "item00.npy").unlink()
    assert main(["index", str(emb), str(idx), "--quiet", "--sync"]) == 0
    assert "1 added, 1 replaced, 1 removed, 22 already there" in capsys.readouterr().err
    assert main(["search", query, str(idx), "--where", "year < 1910", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out) == []  # item00 (1900) is gone
    assert printed.err == "no results: no item passes --where 'year < 1910'\n"
    # --overwrite rebuilds where the index was (same backend and collection), here without a catalogue.
    assert main(["index", str(emb), str(idx), "--quiet", "--overwrite"]) == 0
    rebuilt = json.loads((idx / "meta.json").read_text())
    assert rebuilt["backend"] == backend and rebuilt["count"] == 24 and rebuilt["columns"] == {}
    assert rebuilt.get("collection") == meta.get("collection")


def test_cli_milvus_options_need_the_backend(tmp_path, rng, capsys):
    emb = tmp_path / "emb"
    _write_folder(emb, rng.standard_normal((3, 8)).astype(np.float32), [None] * 3)
    assert main(["index", str(emb), str(tmp_path / "idx"), "--uri", "x.db"]) == 2
    assert "need --backend milvus" in capsys.readouterr().err
    assert main(["index", str(emb), str(tmp_path / "idx"), "--backend", "milvus"]) == 2
    assert "needs --uri" in capsys.readouterr().err


@pytest.mark.milvus
@pytest.mark.slow  # one subprocess (torch import + Milvus Lite start)
def test_a_milvus_index_built_by_another_process_opens_and_searches(tmp_path, rng):
    """A fresh process finds the collection released: opening it must load it (and the Lite
    file is free again once the building process has exited)."""
    import subprocess
    import sys

    pytest.importorskip("milvus_lite")
    from clamp3.index import SearchIndex

    emb, idx = tmp_path / "emb", tmp_path / "idx"
    vectors = rng.standard_normal((12, 8)).astype(np.float32)
    _write_folder(emb, vectors, [f"{i:064x}" for i in range(12)])
    build = f"from clamp3.cli.main import main; raise SystemExit(main(['index', {str(emb)!r}, {str(idx)!r}, '--quiet', '--backend', 'milvus', '--uri', {str(tmp_path / 'lib.db')!r}]))"
    done = subprocess.run([sys.executable, "-c", build], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    index = SearchIndex.load(idx)
    assert index.backend == "milvus" and len(index) == 12
    assert [h.key for h in index.search(vectors[4], k=1)[0]] == ["item04"]
    np.testing.assert_allclose(
        index.vector(index.row_of("item04")), vectors[4] / np.linalg.norm(vectors[4]), atol=1e-6
    )
