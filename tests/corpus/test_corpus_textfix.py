"""Code-page repair at the corpus boundary: music21's CP437 Essen files reach titles, texts and
the MusicXML as the characters their authors wrote, and Latin-1 files stay as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from clamp3.corpus.textfix import file_uses_cp437, find_unclean, from_cp437, repair

music21 = pytest.importorskip("music21")


def _essen(name: str) -> str:
    return str(Path(music21.__file__).parent / "corpus" / "essenFolksong" / name)


def test_cp437_characters_come_back_and_latin1_stays():
    assert repair("gr\x81ne Wies', Stra\xe1burg", cp437=True) == "grüne Wies', Straßburg"
    assert repair("Rádái na scadán", cp437=False) == "Rádái na scadán"
    assert from_cp437("\x84\x94\x8e\x99\x9a") == "äöÄÖÜ"
    assert repair("a\x00b\ufffdc\x07", cp437=False) == "abc"  # leftovers never pass


def test_the_code_page_is_decided_per_file():
    assert file_uses_cp437(_essen("lot.abc"))
    assert not file_uses_cp437(_essen("irl.abc"))
    assert not file_uses_cp437("/no/such/file.abc")


def test_a_cp437_piece_gives_clean_facts_texts_and_musicxml(tmp_path):
    from clamp3.corpus.piece import _describe, _parse
    from clamp3.corpus.render import write_musicxml
    from clamp3.corpus.select import PieceRef
    from clamp3.corpus.texts import all_texts

    ref = PieceRef("lot-319", "essenFolksong/lot.abc", 319, "essen", "essen:lot-319")
    score = _parse(ref)
    facts = _describe(score, ref)
    assert "grüne" in facts["title"]
    texts = all_texts(facts)
    assert len(texts) == 5
    assert find_unclean(texts) == []
    assert all("grüne" in t["title"] for t in texts.values())
    write_musicxml(score, tmp_path / "score.musicxml")
    xml = (tmp_path / "score.musicxml").read_text(encoding="utf-8")
    assert "grüne Wies" in xml and "\x81" not in xml


def test_find_unclean_names_where_the_character_is():
    lines = find_unclean({"texts": {"de": {"title": "gr\x81ne"}}, "ok": ["fine"]})
    assert lines == ["texts.de.title: 'gr\\x81ne'"]
