"""The offline log-mel front-end and load_frontend (the factory the model's raw-file path uses)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from clamp3.audio import LogMelFrontend, MertExtractor, load_frontend
from clamp3.audio.logmel import mel_filterbank
from clamp3.config import AudioTowerConfig, load_preset
from clamp3.utils.errors import InputError


def _chirp(seconds: float, f0: float = 200.0) -> np.ndarray:
    t = np.arange(int(seconds * 24000)) / 24000
    return (0.3 * np.sin(2 * np.pi * (f0 + 100 * t) * t)).astype(np.float32)


def test_logmel_rows_follow_the_official_windows():
    frontend = LogMelFrontend(32)
    rows = frontend.features_from_waveform(_chirp(11.2))  # 2 full windows + 1.2 s
    assert rows.shape == (3, 32) and rows.dtype == np.float32 and np.isfinite(rows).all()
    assert frontend.features_from_waveform(_chirp(10.9)).shape == (2, 32)  # 0.9-s remainder dropped


def test_logmel_is_gain_invariant_and_tells_sounds_apart():
    # Whole-track normalisation makes the rows independent of the recording level.
    frontend = LogMelFrontend(16)
    quiet, loud = (
        frontend.features_from_waveform(_chirp(6) * 0.05),
        frontend.features_from_waveform(_chirp(6)),
    )
    np.testing.assert_allclose(quiet, loud, atol=1e-3)
    other = frontend.features_from_waveform(_chirp(6, f0=2000.0))
    assert np.abs(other - loud).max() > 0.5


def test_logmel_bands_peak_where_the_tone_is():
    t = np.arange(48000) / 24000
    low = LogMelFrontend(32).features_from_waveform(np.sin(2 * np.pi * 150 * t).astype(np.float32))
    high = LogMelFrontend(32).features_from_waveform(np.sin(2 * np.pi * 6000 * t).astype(np.float32))
    assert np.argmax(low[0, :16]) < np.argmax(high[0, :16])


def test_mel_filterbank_has_no_empty_band():
    for n_mels in (16, 64, 128):
        fb = mel_filterbank(n_mels)
        assert fb.shape == (513, n_mels) and (fb.sum(dim=0) > 0).all()


def test_logmel_feature_dim_is_checked():
    with pytest.raises(ValueError, match="even"):
        LogMelFrontend(31)


def test_logmel_file_errors_name_the_file(tmp_path):
    path = tmp_path / "tiny.ogg"
    sf.write(path, _chirp(0.5), 24000, format="OGG")
    with pytest.raises(InputError, match="too short") as err:
        LogMelFrontend(32).features_from_file(path)
    assert err.value.path == str(path)


def test_load_frontend_for_the_tiny_preset_is_logmel():
    frontend = load_frontend(load_preset("tiny").audio)
    assert isinstance(frontend, LogMelFrontend) and frontend.feature_dim == 32


def test_load_frontend_uses_the_mert_folder_of_a_model_dir(tiny_mert_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_mert_dir, tmp_path / "mert")
    frontend = load_frontend(AudioTowerConfig(feature_dim=16), model_dir=tmp_path)
    assert isinstance(frontend, MertExtractor) and frontend.feature_dim == 16
    with pytest.raises(ValueError, match="MERT gives 16 features, the audio tower expects 768"):
        load_frontend(AudioTowerConfig(), model_dir=tmp_path)


def test_load_frontend_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown audio front-end 'wav2vec'"):
        load_frontend(AudioTowerConfig(frontend="wav2vec"))
