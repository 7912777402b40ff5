"""load_symbolic per extension and config; ABC error cases; ABC -> MusicXML."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest

from clamp3.config import load_preset
from clamp3.preprocess import (
    abc_to_musicxml,
    interleave_abc,
    is_standard_abc,
    load_symbolic,
    midi_to_mtf,
    musicxml_to_abc,
    patchify,
)
from clamp3.utils.errors import InputError


def _copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def test_every_extension(parity_dir, tmp_path):
    prep = parity_dir / "prep"
    expected_abc = np.load(prep / "patches" / "bach_bwv66_6.abc.npy")
    expected_mtf = np.load(prep / "patches" / "m21_test01.mtf.npy")
    mxl = parity_dir / "inputs" / "musicxml" / "bach_bwv66_6.mxl"
    with zipfile.ZipFile(mxl) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".xml") and not n.startswith("META"))
        (tmp_path / "piece.xml").write_bytes(archive.read(member))
    _copy(tmp_path / "piece.xml", tmp_path / "piece.MUSICXML")
    _copy(prep / "abc_interleaved" / "bach_bwv66_6.abc", tmp_path / "interleaved.abc")
    _copy(prep / "abc_standard" / "bach_bwv66_6.abc", tmp_path / "standard.abc")
    _copy(parity_dir / "inputs" / "midi" / "m21_test01.mid", tmp_path / "perf.midi")
    _copy(prep / "mtf" / "m21_test01.mtf", tmp_path / "perf.mtf")

    # named for the other form: a plain score saved as .mxl, a compressed one saved as .xml
    _copy(tmp_path / "piece.xml", tmp_path / "plain.mxl")
    _copy(mxl, tmp_path / "zipped.xml")
    for name in ["piece.xml", "piece.MUSICXML", "interleaved.abc", "standard.abc", "plain.mxl", "zipped.xml"]:
        np.testing.assert_array_equal(load_symbolic(tmp_path / name), expected_abc, err_msg=name)
    np.testing.assert_array_equal(load_symbolic(mxl), expected_abc)
    for name in ["perf.midi", "perf.mtf"]:
        np.testing.assert_array_equal(load_symbolic(tmp_path / name), expected_mtf, err_msg=name)


def test_hand_written_abc_is_taken_as_given(tmp_path):
    text = "X:1\nT:Tune\nM:6/8\nK:D\n|:dAF DFA|d2e fed:|\n"
    (tmp_path / "tune.abc").write_text(text, encoding="utf-8")
    assert not is_standard_abc(text)
    np.testing.assert_array_equal(load_symbolic(tmp_path / "tune.abc"), patchify(text))


def test_clamp2_config_selects_both_variants(parity_dir):
    config = load_preset("clamp2").symbolic
    assert config.strip_default_length is False and config.mtf_drop_sysex is True
    mid = parity_dir / "inputs" / "midi" / "m21_test04.mid"
    np.testing.assert_array_equal(
        load_symbolic(mid, config), patchify(midi_to_mtf(mid, drop_sysex=True), strip_default_length=False)
    )
    xml = parity_dir / "inputs" / "musicxml" / "bach_bwv66_6.mxl"
    got = load_symbolic(xml, config)
    assert got.shape[0] == np.load(parity_dir / "prep" / "patches" / "bach_bwv66_6.abc.npy").shape[0] + 1
    np.testing.assert_array_equal(
        got, patchify(interleave_abc(musicxml_to_abc(xml)), strip_default_length=False)
    )


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("song.wav", b"RIFF", "unsupported extension"),
        ("empty.abc", b"", "empty file"),
        ("latin1.mtf", "ticks_per_beat 96\nkey_signature Ä 0".encode("latin-1"), "not UTF-8"),
        ("empty.mxl", b"", "empty file"),
        ("broken.mxl", b"PK\x03\x04 not really a zip", "not a valid compressed MusicXML"),
        ("junk.mxl", b"neither a zip nor XML", "no zip header"),
        ("text.xml", b"hello, not xml", "not a readable XML file"),
        ("page.xml", b"<html><body/></html>", "not MusicXML"),
        ("nonotes.musicxml", b"<score-partwise><part-list/></score-partwise>", "produced no ABC"),
    ],
)
def test_bad_files_raise_input_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        load_symbolic(path)
    assert info.value.path == str(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_symbolic(tmp_path / "nothing.mxl")


def test_interleave_rejects_unequal_bar_counts_and_empty_pieces(parity_dir):
    standard = (parity_dir / "prep" / "abc_standard" / "bach_bwv66_6.abc").read_text(encoding="utf-8")
    lines = standard.splitlines(keepends=True)
    v2 = lines.index("V:2\n")
    lines[v2 + 1] = lines[v2 + 1].replace("E2 |", "", 1)  # voice 2 loses its pickup bar
    with pytest.raises(InputError, match=r"unequal bar counts \(V:1 10, V:2 9, V:3 10, V:4 10\)") as info:
        interleave_abc("".join(lines), name="piece.abc")
    assert info.value.path == "piece.abc"
    with pytest.raises(InputError, match="no bar contains notes"):
        interleave_abc("L:1/8\nK:C\nV:1 treble\nV:1\nz4 | z4 |]\n")
    with pytest.raises(InputError, match="V:1"):
        interleave_abc("X:1\nK:C\nabc|\n")


def test_interleave_keeps_unaligned_files_like_the_official(parity_dir, caplog):
    standard = (parity_dir / "prep" / "abc_standard" / "haydn_op74no1_mvt3.abc").read_text(encoding="utf-8")
    with caplog.at_level("DEBUG", logger="clamp3.preprocess.abc"):
        interleave_abc(standard, name="haydn")
    assert "unequal bar duration" in caplog.text and "V:4 bar 25" in caplog.text


def test_windows_line_endings_read_like_a_text_file(parity_dir):
    standard = (parity_dir / "prep" / "abc_standard" / "bach_bwv297.abc").read_text(encoding="utf-8")
    expected = (parity_dir / "prep" / "abc_interleaved" / "bach_bwv297.abc").read_text(encoding="utf-8")
    assert interleave_abc(standard.replace("\n", "\r\n")) == expected


@pytest.mark.parametrize(
    ("name", "exact"), [("bach_bwv66_6", True), ("oneills_0003_little_heathy_hill", False)]
)
def test_abc_to_musicxml_round_trip(parity_dir, tmp_path, name, exact):
    interleaved = (parity_dir / "prep" / "abc_interleaved" / f"{name}.abc").read_text(encoding="utf-8")
    xml = abc_to_musicxml(interleaved)
    assert xml.startswith("<?xml") and "<score-partwise" in xml
    (tmp_path / "back.xml").write_text(xml, encoding="utf-8")
    back = interleave_abc(musicxml_to_abc(tmp_path / "back.xml"))
    if exact:
        assert back == interleaved
    else:  # the two converters are not exact inverses (ties, beaming), but every bar survives
        assert len(back.splitlines()) == len(interleaved.splitlines())
    assert abc_to_musicxml(interleaved) == xml  # module state does not leak between calls


def test_abc_to_musicxml_ignores_include_directives(tmp_path):
    secret = tmp_path / "secret.abc"
    secret.write_text("X:1\nT:SECRET\nK:C\nC|\n", encoding="utf-8")
    xml = abc_to_musicxml(f"%%abc-include {secret}\nX:1\nT:Tune\nK:C\nabc|\n")
    assert "SECRET" not in xml and "Tune" in xml
    with pytest.raises(ValueError, match="no MusicXML"):
        abc_to_musicxml("")


TUNE_BOOK = "X:1\nT:One\nM:4/4\nK:C\nCDEF|GABc|\n\nX:2\nT:Two\nK:G\nGABc|d2d2|\n\nX:3\nT:Three\nK:D\nDEFG|\n"


def test_a_tune_book_is_embedded_as_one_item_and_says_so(tmp_path, caplog):
    """The official extractor patches an ``.abc`` as given; a file of several tunes is then one
    item, which a user searching for one tune would not guess: a warning names the count."""
    from clamp3.preprocess.abc import count_tunes

    assert count_tunes(TUNE_BOOK) == 3 and count_tunes("K:C\nCDEF|\n") == 1
    book, single = tmp_path / "book.abc", tmp_path / "single.abc"
    book.write_text(TUNE_BOOK, encoding="utf-8")
    single.write_text(TUNE_BOOK.split("\n\n")[0] + "\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="clamp3.preprocess.load"):
        patches = load_symbolic(book)
        load_symbolic(single)
    [record] = caplog.records
    assert record.getMessage().startswith(f"{book}: holds 3 tunes (X: fields); they are embedded as one item")
    assert len(patches) > len(load_symbolic(single))  # all three tunes are in the one item
