"""Every parity input gives exactly the official standard ABC, interleaved ABC, MTF and patches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PARITY

from clamp3.preprocess import interleave_abc, load_symbolic, midi_to_mtf, musicxml_to_abc, patchify

MANIFEST = json.loads((PARITY / "prep" / "manifest.json").read_text(encoding="utf-8"))
XML = MANIFEST["musicxml"]
MIDI = MANIFEST["midi"]


def _text(parity_dir, rel: str) -> str:
    # newline="" keeps the bytes as stored: the comparison is exact, not up to line endings
    with open(parity_dir / rel, encoding="utf-8", newline="") as handle:
        return handle.read()


def test_manifest_covers_every_input(parity_dir):
    listed = {item["input"] for item in XML + MIDI}
    on_disk = {str(p.relative_to(parity_dir)) for p in (parity_dir / "inputs").rglob("*") if p.is_file()}
    assert on_disk == listed
    assert len(XML) == 9 and len(MIDI) == 8


@pytest.mark.parametrize("item", XML, ids=[i["name"] for i in XML])
def test_musicxml_to_abc_and_interleave(parity_dir, item):
    standard = musicxml_to_abc(parity_dir / item["input"])
    assert standard == _text(parity_dir, item["abc_standard"])
    interleaved = interleave_abc(standard)
    assert interleaved == _text(parity_dir, item["abc_interleaved"])


@pytest.mark.parametrize("item", MIDI, ids=[i["name"] for i in MIDI])
def test_midi_to_mtf(parity_dir, item):
    assert midi_to_mtf(parity_dir / item["input"]) == _text(parity_dir, item["mtf"])


@pytest.mark.parametrize("item", XML + MIDI, ids=[i["name"] for i in XML + MIDI])
def test_patchify_matches_official_patches(parity_dir, item):
    text_key = "abc_interleaved" if "abc_interleaved" in item else "mtf"
    expected = np.load(parity_dir / item["patches"])
    got = patchify(_text(parity_dir, item[text_key]))
    assert got.dtype == expected.dtype == np.int32
    assert got.shape == expected.shape == (item["n_patches"], 64)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("item", XML + MIDI, ids=[i["name"] for i in XML + MIDI])
def test_load_symbolic_from_raw_file(parity_dir, item):
    np.testing.assert_array_equal(
        load_symbolic(parity_dir / item["input"]), np.load(parity_dir / item["patches"])
    )


def test_repeated_conversions_in_one_process_are_identical(parity_dir):
    """xml2abc is a script with module state; calls in any order must not influence each other."""
    order = [XML[4], XML[0], XML[8], XML[4], XML[0]]
    outputs = [musicxml_to_abc(parity_dir / item["input"]) for item in order]
    assert outputs[0] == outputs[3] and outputs[1] == outputs[4]
    for item, out in zip(order, outputs):
        assert out == _text(parity_dir, item["abc_standard"])
