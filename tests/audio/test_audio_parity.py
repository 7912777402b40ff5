"""MERT features against the official extractor's outputs (shared/parity/mert), with the
deterministic MERT-v1-95M weights: 24 kHz waveform, per-layer time means, final rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clamp3.audio import load_audio, window_bounds

pytestmark = pytest.mark.parity


def _cases(parity_dir):
    manifest = json.loads((parity_dir / "mert" / "manifest.json").read_text())
    return {f["name"]: f for f in manifest["files"]}


NAMES = ["sines_44k1_stereo_12s3", "sines_16k_mono_3s7"]


def _expected(parity_dir, name, kind=""):
    return np.load(parity_dir / "mert" / "expected" / f"{name}{kind}.npy")


@pytest.mark.parametrize("name", NAMES)
def test_load_audio_matches_official_resampled_waveform(parity_dir, name):
    wave = load_audio(parity_dir / "mert" / "inputs" / f"{name}.wav")
    expected = _expected(parity_dir, name, ".resampled24k")[0]
    assert wave.dtype == np.float32 and wave.shape == expected.shape
    np.testing.assert_allclose(wave, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_windows_match_manifest(parity_dir, name):
    case = _cases(parity_dir)[name]
    bounds = window_bounds(case["resampled_shape"][1])
    assert [b - a for a, b in bounds] == case["window_lengths_samples"]


@pytest.mark.parametrize("name", NAMES)
def test_features_from_waveform_match_official(parity_dir, mert_parity_extractor, name):
    wave = _expected(parity_dir, name, ".resampled24k")
    rows = mert_parity_extractor.features_from_waveform(wave)
    expected = _expected(parity_dir, name)[0]
    assert rows.dtype == np.float32 and rows.shape == expected.shape
    np.testing.assert_allclose(rows, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_per_layer_features_match_official(parity_dir, mert_parity_extractor, name):
    wave = _expected(parity_dir, name, ".resampled24k")[0]
    layers = mert_parity_extractor.layer_features_from_waveform(wave)
    expected = _expected(parity_dir, name, ".per_layer")
    assert layers.shape == expected.shape == (13, expected.shape[1], 768)
    np.testing.assert_allclose(layers, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_features_from_file_match_official(parity_dir, mert_parity_extractor, name):
    rows = mert_parity_extractor.features_from_file(parity_dir / "mert" / "inputs" / f"{name}.wav")
    np.testing.assert_allclose(rows, _expected(parity_dir, name)[0], rtol=0, atol=1e-3)
