"""Choosing pieces from music21's corpus: deterministic, prefix-stable, varied, safe ids."""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("music21")

from clamp3.corpus.assemble import split_of  # noqa: E402
from clamp3.corpus.select import list_candidates, scan_abc_tunes, select_pieces  # noqa: E402


@pytest.fixture(scope="module")
def selection():
    return select_pieces(300)


def test_selection_is_deterministic_and_prefix_stable(selection):
    assert select_pieces(300) == selection
    assert select_pieces(40) == selection[:40]


def test_ids_are_unique_file_names_without_dots(selection):
    ids = [ref.id for ref in selection]
    assert len(set(ids)) == len(ids)
    assert all("." not in i and "/" not in i and " " not in i for i in ids)


def test_a_prefix_mixes_the_collections(selection):
    counts = Counter(ref.collection for ref in selection[:100])
    assert {"bach", "essen", "oneills", "ryans", "palestrina", "quartets"} <= set(counts)
    assert max(counts.values()) <= 30  # no collection swamps the prefix


def test_candidates_cover_thousands_of_pieces():
    refs = list_candidates()
    assert len(refs) > 10_000
    assert all(ref.number is not None for ref in refs if ref.source.endswith(".abc"))


def test_scan_abc_skips_voiced_and_duplicated_tunes(tmp_path):
    book = tmp_path / "book.abc"
    book.write_text(
        "X:1\nT:First\nK:G\nGABc|\n\nX:2\nT:Two voices\nV:1\nK:D\nV:1\nDEF|\nV:2\nA,B,C|\n\n"
        "X:3\nT:Third\nT:Alternative title\nK:A\nABc|\n\nX:1\nT:Duplicate number\nK:C\nCDE|\n",
        encoding="latin-1",
    )
    assert scan_abc_tunes(book) == [(1, "First"), (3, "Third")]


def test_split_depends_only_on_the_group():
    groups = [f"essen:tune {i}" for i in range(2000)]
    splits = [split_of(g) for g in groups]
    assert splits == [split_of(g) for g in groups]
    shares = Counter(splits)
    assert 0.75 < shares["train"] / 2000 < 0.85
    assert 0.07 < shares["test"] / 2000 < 0.13 and 0.07 < shares["validation"] / 2000 < 0.13
