"""Batched extraction equals the official one-window-at-a-time loop (tiny MERT-shaped model)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import soundfile as sf
import torch

from clamp3.audio import MertExtractor, load_audio
from clamp3.audio.windows import prepare_track


def _official_loop(extractor: MertExtractor, wave: np.ndarray) -> np.ndarray:
    """The official per-window loop: one forward per window, 13 time means, layer mean."""
    track = prepare_track(wave)
    rows = []
    with torch.inference_mode():
        for i in range(len(track.bounds)):
            x = torch.from_numpy(track.window(i))[None]
            hidden = extractor.model(x, output_hidden_states=True).hidden_states
            rows.append(torch.stack([h.mean(dim=1) for h in hidden]))  # (K, 1, D)
    return torch.cat(rows, dim=1).mean(dim=0).numpy()


def _wave(seconds: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * 24000)) / 24000
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_batched_waveform_equals_one_window_at_a_time(tiny_mert, batch_size):
    wave = _wave(17.3, 0)  # 3 full windows + a 2.3-s last window
    extractor = MertExtractor(tiny_mert.model, batch_size=batch_size)
    rows = extractor.features_from_waveform(wave)
    assert rows.shape == (4, 16) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, _official_loop(tiny_mert, wave), rtol=1e-5, atol=1e-6)


def test_layer_features_mean_to_rows(tiny_mert):
    wave = _wave(6.0, 1)
    layers = tiny_mert.layer_features_from_waveform(wave)
    assert layers.shape == (3, 2, 16)  # 2 layers + the encoder input
    np.testing.assert_allclose(layers.mean(axis=0), tiny_mert.features_from_waveform(wave), atol=1e-7)


def _write_files(folder, specs):
    paths = []
    for name, seconds, sr, channels in specs:
        path = folder / name
        t = np.arange(int(seconds * sr)) / sr
        x = np.stack([np.sin(2 * np.pi * (200 + 50 * c) * t) * 0.3 for c in range(channels)], axis=1)
        sf.write(path, x.astype(np.float32), sr)
        paths.append(path)
    return paths


def test_features_from_files_equals_per_file_and_keeps_order(tiny_mert, tmp_path):
    specs = [
        ("a.wav", 7.3, 44100, 2),
        ("b.flac", 3.7, 16000, 1),
        ("c.wav", 5.0, 48000, 1),
        ("d.wav", 7.3, 22050, 2),  # last window 2.3 s, same length as a.wav's: batched together
        ("e.wav", 5.5, 24000, 1),  # 0.5-s remainder dropped
    ]
    paths = _write_files(tmp_path, specs)
    short = tmp_path / "short.wav"
    sf.write(short, np.ones(20000, np.float32) * 0.1, 24000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000, np.float32), 24000)
    order = [paths[0], short, paths[1], paths[2], silent, paths[3], paths[4]]
    results = list(tiny_mert.features_from_files(order))
    assert [r.path for r in results] == [str(p) for p in order]
    assert "too short" in results[1].error.reason and "silent" in results[4].error.reason
    assert [r.features.shape[0] for r in results if r.error is None] == [2, 1, 1, 2, 1]
    for result in results:
        if result.error is None:  # the official loop on the same decoded waveform
            expected = _official_loop(tiny_mert, load_audio(result.path))
            np.testing.assert_allclose(result.features, expected, rtol=1e-5, atol=1e-6)


def test_many_files_run_in_few_forward_passes(tiny_mert, tmp_path):
    paths = _write_files(tmp_path, [(f"f{i}.wav", 5.0, 24000, 1) for i in range(7)])
    calls = []
    extractor = MertExtractor(tiny_mert.model, batch_size=4)
    original = extractor.encode_windows
    extractor.encode_windows = lambda w: calls.append(len(w)) or original(w)
    results = list(extractor.features_from_files(paths))
    assert all(r.error is None for r in results)
    assert calls == [4, 3]  # windows of different files share forward passes


def test_waiting_windows_are_bounded(tiny_mert, tmp_path):
    # Every file's only window has its own length: nothing can be batched, and the queue must not
    # keep all of them until the end.
    paths = _write_files(tmp_path, [(f"f{i}.wav", 1.5 + 0.1 * i, 24000, 1) for i in range(7)])
    seen = []
    extractor = MertExtractor(tiny_mert.model, batch_size=2)
    original = extractor.encode_windows
    extractor.encode_windows = lambda w: seen.append(w.shape[1]) or original(w)
    done_before_end = 0
    for i, result in enumerate(extractor.features_from_files(paths)):
        assert result.error is None
        done_before_end += len(seen) >= i + 1 and len(seen) < 7
    assert len(seen) == 7 and done_before_end >= 3


def test_half_precision_option_runs_and_stays_close(tiny_mert):
    wave = _wave(6.0, 2)
    bf16 = MertExtractor(copy.deepcopy(tiny_mert.model), dtype="bf16")  # the module is cast in place
    rows = bf16.features_from_waveform(wave)
    assert rows.dtype == np.float32
    assert np.abs(rows - tiny_mert.features_from_waveform(wave)).max() < 0.1
    assert next(tiny_mert.model.parameters()).dtype == torch.float32


def test_the_device_follows_the_one_rule_of_every_command(tiny_mert, tiny_mert_dir, tmp_path, capsys):
    """extract-audio (device "auto"): the GPU when there is one (it was always the CPU); the
    library's default is the CPU, as for Clamp3Model; a device this machine lacks is one line
    naming it (extract-audio printed torch's traceback)."""
    from clamp3.cli.main import main
    from clamp3.utils.errors import UsageError

    assert MertExtractor(copy.deepcopy(tiny_mert.model)).device.type == "cpu"
    auto = MertExtractor(copy.deepcopy(tiny_mert.model), device="auto").device.type
    assert auto == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="device gpu0: not a device name"):
        MertExtractor(copy.deepcopy(tiny_mert.model), device="gpu0")
    if not torch.cuda.is_available():
        argv = ["extract-audio", str(tmp_path), str(tmp_path / "out"), "--model", str(tiny_mert_dir)]
        assert main([*argv, "--device", "cuda", "--no-progress"]) == 2
        assert capsys.readouterr().err.startswith("error: device cuda: CUDA is not available here")
