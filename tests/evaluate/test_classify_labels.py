"""Label sources: CSV files (single and multi-label), folder names, and matching to item paths."""

from __future__ import annotations

import numpy as np
import pytest

from clamp3.evaluate.labels import (
    folder_label,
    labels_for,
    match_labels,
    multi_label_targets,
    read_label_csv,
    single_label_targets,
)
from clamp3.utils.errors import InputError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_and_several_labels(tmp_path):
    csv = write(tmp_path / "l.csv", "path,label\njazz/a.mid,jazz\n./b.abc,民謡, calm ,\n\n")
    assert read_label_csv(csv) == {"jazz/a.mid": ["jazz"], "b.abc": ["民謡", "calm"]}
    write(csv, "c.mid\n")  # a bare path: no tags (allowed for multi-label, refused later for single-label)
    assert read_label_csv(csv) == {"c.mid": []}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (",jazz\n", "line 1"),
        ("a.mid,x\nb.mid,y\na.mid,z\n", "line 3: 'a.mid' is listed twice"),
        ("", "no rows"),
    ],
)
def test_csv_errors_name_file_and_line(tmp_path, text, message):
    csv = write(tmp_path / "bad.csv", text)
    with pytest.raises(InputError, match=message) as err:
        read_label_csv(csv)
    assert err.value.path == str(csv)


def test_matching_with_and_without_extensions():
    table = {"jazz/a.mid": ["jazz"], "rock/b": ["rock"], "c.abc": ["folk"], "c.mid": ["pop"]}
    paths = ["jazz/a.mid", "jazz/a.npy", "rock/b.wav", "c.abc", "c.mid", "unknown.mid"]
    assert match_labels(paths, table) == [["jazz"], ["jazz"], ["rock"], ["folk"], ["pop"], None]


def test_ambiguous_match_is_an_error():
    with pytest.raises(InputError, match="several rows"):
        match_labels(["c.npy"], {"c.abc": ["folk"], "c.mid": ["pop"]}, source="l.csv")


def test_folder_labels():
    assert folder_label("jazz/sub/a.mid") == "jazz"
    assert labels_for(["x/1.abc", "y/2.abc"], None, True) == [["x"], ["y"]]
    with pytest.raises(InputError, match="class folder"):
        folder_label("top.mid")


def test_targets():
    y, names = single_label_targets([["rock"], ["jazz"], ["rock"]])
    assert names == ["jazz", "rock"] and y.tolist() == [1, 0, 1]
    with pytest.raises(InputError, match="--multi-label"):
        single_label_targets([["rock", "jazz"]])
    with pytest.raises(InputError, match="not among"):
        single_label_targets([["folk"]], names=["jazz", "rock"])
    multi, tags = multi_label_targets([["b", "a"], [], ["c"]])
    assert tags == ["a", "b", "c"]
    np.testing.assert_array_equal(multi, [[1, 1, 0], [0, 0, 0], [0, 0, 1]])
