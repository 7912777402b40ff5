"""Catalogue and document reading, passage splitting and BM25 retrieval for ``clamp3 curate``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clamp3.curate.catalogue import read_catalogue
from clamp3.curate.documents import html_to_text, read_documents, split_passages
from clamp3.curate.retrieve import Bm25Retriever, item_query
from clamp3.utils.errors import InputError


def _music(tmp_path, *names):
    (tmp_path / "music").mkdir(exist_ok=True)
    for name in names:
        (tmp_path / "music" / name).write_text("X:1\n", encoding="utf-8")


def test_csv_catalogue_aliases_lists_and_row_errors(tmp_path):
    _music(tmp_path, "a.abc", "a.mtf", "b.abc", "c.mid")
    (tmp_path / "cat.csv").write_text(
        "ID,File,Name,Composer,Year,Album\n"
        "a,music/a.abc;music/a.mtf,Song A,Ann One; Bob Two,1901,\n"
        "a,music/b.abc,Again A,X,1902,\n"  # duplicate id
        "b,music/missing.abc,Song B,Y,1903,\n"  # missing file
        ",music/b.abc,No id,Z,1904,\n"
        "c,music/c.mid,Song C,W,1905,\n"  # not a prepared file
        "d,music/b.abc,,V,1906,\n"  # no title
        "e,music/b.abc,Song E,,1907,Best Of\n",
        encoding="utf-8",
    )
    items, errors = read_catalogue(tmp_path / "cat.csv")
    assert [i.id for i in items] == ["a", "e"]
    a, e = items
    assert a.filepaths == ((tmp_path / "music/a.abc").resolve(), (tmp_path / "music/a.mtf").resolve())
    assert a.artists == ("Ann One", "Bob Two") and a.title == "Song A"
    assert a.metadata == {"year": "1901"}  # empty album column dropped
    assert e.artists == () and e.metadata == {"year": "1907", "album": "Best Of"}
    messages = [str(err) for err in errors]
    assert len(messages) == 5
    assert "line 3" in messages[0] and "duplicate id 'a'" in messages[0]
    assert "line 4" in messages[1] and "file not found: music/missing.abc" in messages[1]
    assert "no id" in messages[2]
    prepare = "prepare it first with `clamp3 convert`"
    assert f"'music/c.mid' is not a prepared music file (.abc/.mtf/.npy); {prepare}" in messages[3]
    assert "no title" in messages[4]
    assert all(str(tmp_path / "cat.csv") in m for m in messages)


def test_a_csv_cell_spanning_lines_keeps_its_line_breaks_and_the_line_numbers(tmp_path):
    """Spreadsheets export notes with line breaks as quoted multi-line cells."""
    _music(tmp_path, "a.abc")
    (tmp_path / "cat.csv").write_text(
        'id,file,title,notes\na,music/a.abc,Song A,"first line\nsecond line"\n,,,\nb,music/a.abc,,x\n',
        encoding="utf-8",
    )
    items, errors = read_catalogue(tmp_path / "cat.csv")
    assert items[0].metadata == {"notes": "first line\nsecond line"}  # was "first linesecond line"
    assert [str(e) for e in errors] == [f"{tmp_path / 'cat.csv'}:line 5: item 'b': no title"]  # not line 4


def test_jsonl_catalogue_lists_and_bad_lines(tmp_path):
    _music(tmp_path, "x.npy")
    rows = [
        {"id": "x", "filepaths": ["music/x.npy"], "title": "Tune", "artists": ["P", "Q"], "genres": ["jig"],
         "live": True},
        "not an object",
        # these became Python reprs in the prompts ("{'a': 1}", "['A', 'B']")
        {"id": "y", "filepaths": ["music/x.npy"], "title": "T", "meta": {"a": 1}},
        {"id": {"a": 1}, "filepaths": ["music/x.npy"], "title": "T"},
        {"id": "z", "filepaths": ["music/x.npy"], "title": ["A", "B"]},
    ]
    text = "\n".join(json.dumps(r) for r in rows) + "\n{broken\n"
    (tmp_path / "cat.jsonl").write_text(text, encoding="utf-8")
    items, errors = read_catalogue(tmp_path / "cat.jsonl")
    assert len(items) == 1 and items[0].artists == ("P", "Q")
    assert items[0].metadata == {"genres": ["jig"], "live": "true"}  # JSON's word, not Python's True
    assert items[0].metadata_lines() == ["title: Tune", "artists: P; Q", "genres: jig", "live: true"]
    assert [e.reason for e in errors] == [
        "not a JSON object",
        "invalid JSON: Expecting property name enclosed in double quotes",
        'meta: {"a": 1} is not a single value',
        'id: {"a": 1} is not a single value',
        'title: ["A", "B"] is not a single value',
    ]
    with pytest.raises(InputError, match="not found"):
        read_catalogue(tmp_path / "nope.csv")


def test_html_to_text_drops_scripts_and_keeps_paragraphs():
    title, text = html_to_text(
        "<html><head><title>A  Page</title><style>p{}</style></head>"
        "<body><h1>Head</h1><script>var x = 1;</script><p>One &amp; two.</p><p>Three</p></body></html>"
    )
    assert title == "A Page"
    assert text == "Head\n\nOne & two.\n\nThree"


def test_split_passages_respects_the_word_limit_and_loses_nothing():
    text = "\n\n".join(" ".join(f"w{p}_{i}" for i in range(n)) + "." for p, n in enumerate([3, 7, 25, 2]))
    passages = split_passages(text, passage_words=10)
    assert all(len(p.split()) <= 10 for p in passages)
    assert " ".join(passages).split() == text.split()
    assert split_passages(text, 1000) == [" ".join(text.split())]


def test_read_documents_from_folder_and_dump(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha Song\n\nAlpha is a song.", encoding="utf-8")
    (docs / "sub" / "b.html").write_text("<title>Beta</title><p>Beta text.</p>", encoding="utf-8")
    (docs / "c.txt").write_bytes(b"caf\xe9: bad utf-8 \xff")  # (FF FE first would mark UTF-16)
    (docs / "ignored.pdf").write_text("x", encoding="utf-8")
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")
    passages, n_docs, errors = read_documents(docs)
    assert n_docs == 2
    assert [(p.key, p.title) for p in passages] == [("a.md#0", "Alpha Song"), ("sub/b.html#0", "Beta")]
    assert len(errors) == 1 and errors[0].path.endswith("c.txt")

    dump = tmp_path / "dump.jsonl"
    dump.write_text(
        '{"id": "w1", "title": "T1", "text": "one two three four"}\n'
        '{"id": "w1", "title": "dup", "text": "x"}\n'
        '{"id": "w2", "title": "T2"}\n'
        '{"title": "T3", "text": "five six"}\n',
        encoding="utf-8",
    )
    passages, n_docs, errors = read_documents(dump, passage_words=2)
    assert [p.key for p in passages] == ["w1#0", "w1#1", "line-4#0"]
    assert [e.path.rsplit(":", 1)[1] for e in errors] == ["line 2", "line 3"]


def test_bm25_ranks_the_matching_passage_first_and_drops_unrelated(tmp_path):
    from curate_support import write_demo_corpus

    catalogue, docs = write_demo_corpus(tmp_path, 6)
    items, _ = read_catalogue(catalogue)
    passages, _, _ = read_documents(docs)
    retriever = Bm25Retriever(passages)
    for index, item in enumerate(items):
        hits = retriever.search(item_query(item), k=3)
        assert hits[0][0].doc_id == f"song{index:03d}.md"
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert retriever.search("zzzz qqqq", k=3) == []
    assert Bm25Retriever([]).search("Song 1", k=3) == []
    assert retriever.search("Song 2 Composer 2", k=3) == Bm25Retriever(passages).search(
        "Song 2 Composer 2", k=3
    )


def test_bm25s_logs_follow_the_application(tmp_path, monkeypatch):
    """bm25s sets its logger to DEBUG on import: its "Building index" line reached every
    terminal, past the WARNING level the commands keep for other packages."""
    import logging

    from curate_support import write_demo_corpus

    passages, _, _ = read_documents(write_demo_corpus(tmp_path, 2)[1])
    root, seen = logging.getLogger(), []
    handler = logging.Handler()
    handler.emit = seen.append  # every record that reaches the root, whatever its level
    monkeypatch.setattr(root, "level", logging.WARNING)
    monkeypatch.setattr(root, "handlers", [handler])
    logging.getLogger("bm25s").setLevel(logging.DEBUG)  # as bm25s leaves it on import
    Bm25Retriever(passages)
    assert not [r for r in seen if r.name.startswith("bm25s")]


def test_an_html_page_in_the_charset_its_meta_tag_declares_is_read(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    page = "<html><head><meta charset='{}'><title>Café Müller</title></head><p>Pièce für Klavier.</p>"
    (docs / "legacy.html").write_bytes(page.format("windows-1252").encode("cp1252"))
    http_equiv = '<meta http-equiv="Content-Type" content="text/html; charset={}">'
    old_style = page.replace("<meta charset='{}'>", http_equiv)
    (docs / "old.htm").write_bytes(old_style.format("ISO-8859-1").encode("latin-1"))
    (docs / "undeclared.html").write_bytes(page.replace("<meta charset='{}'>", "").encode("cp1252"))
    (docs / "bogus.html").write_bytes(page.format("no-such-charset").encode("cp1252"))
    passages, n_docs, errors = read_documents(docs)
    assert n_docs == 2
    expected = {(f"{name}#0", "Café Müller") for name in ("legacy.html", "old.htm")}
    assert {(p.key, p.title) for p in passages} == expected
    assert all(p.text == "Pièce für Klavier." for p in passages)
    reasons = {Path(e.path).name: e.reason for e in errors}
    assert reasons["undeclared.html"].startswith("not UTF-8 text")
    assert "nor the no-such-charset its <meta> declares" in reasons["bogus.html"]
