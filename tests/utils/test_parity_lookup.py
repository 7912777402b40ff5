"""``clamp3.testing.find_parity_dir``: the one lookup of the official-code fixtures that the
tests and the benchmark scripts share."""

from __future__ import annotations

import pytest

import clamp3.testing as testing
from clamp3.testing import find_parity_dir


@pytest.fixture
def places(monkeypatch, tmp_path):
    """Both candidate folders moved into tmp_path (created by the test where it wants them)."""
    monkeypatch.delenv("CLAMP3_PARITY_DIR", raising=False)
    beside, workplace = tmp_path / "beside", tmp_path / "workplace"
    monkeypatch.setattr(testing, "BESIDE_CHECKOUT", beside)
    monkeypatch.setattr(testing, "WORKPLACE_PARITY", workplace)
    return beside, workplace


def test_the_environment_setting_wins_even_when_it_names_no_folder(monkeypatch, places, tmp_path):
    for place in places:
        place.mkdir()
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("CLAMP3_PARITY_DIR", str(missing))
    # a wrong setting must fail at the caller, not silently fall back to another copy
    assert find_parity_dir() == missing


def test_the_copy_beside_the_checkout_comes_before_the_workplace_copy(places):
    beside, workplace = places
    workplace.mkdir()
    assert find_parity_dir() == workplace
    beside.mkdir()
    assert find_parity_dir() == beside


def test_with_no_copy_it_names_the_place_beside_the_checkout(places):
    assert find_parity_dir() == places[0]
