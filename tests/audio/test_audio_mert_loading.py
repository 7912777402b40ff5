"""MertExtractor.from_pretrained: local folders (bin / safetensors, both weight-norm spellings),
strict keys, and the offline message for an uncached hub model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MERT_CONFIG, tiny_mert_keys, write_mert_folder

from clamp3.audio import MertExtractor
from clamp3.checkpoints import CheckpointError


def _wave() -> np.ndarray:
    return np.sin(np.arange(30000) * 0.05).astype(np.float32)


def test_legacy_and_parametrized_names_load_the_same_weights(tiny_mert_dir, tmp_path):
    legacy = MertExtractor.from_pretrained(tiny_mert_dir)
    modern_dir = write_mert_folder(
        tmp_path / "modern", TINY_MERT_CONFIG, tiny_mert_keys(), legacy_names=False
    )
    modern = MertExtractor.from_pretrained(modern_dir)
    conv = legacy.model.encoder.pos_conv_embed.conv
    stored = torch.load(tiny_mert_dir / "pytorch_model.bin", weights_only=True)
    g = stored["encoder.pos_conv_embed.conv.weight_g"]
    v = stored["encoder.pos_conv_embed.conv.weight_v"]
    # Effective kernel = g * v / ||v|| with the norm over dims 0 and 1 per kernel position.
    expected = g * v / v.norm(dim=(0, 1), keepdim=True)
    torch.testing.assert_close(conv.weight, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(
        legacy.features_from_waveform(_wave()), modern.features_from_waveform(_wave())
    )


def test_safetensors_folder(tiny_mert_dir, tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "st"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_mert_dir / "config.json").read_text())
    state = torch.load(tiny_mert_dir / "pytorch_model.bin", weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    a = MertExtractor.from_pretrained(folder).features_from_waveform(_wave())
    b = MertExtractor.from_pretrained(tiny_mert_dir).features_from_waveform(_wave())
    np.testing.assert_array_equal(a, b)


def test_legacy_serialisation_loads_and_damaged_weights_are_one_line_errors(tiny_mert_dir, tmp_path):
    """A pre-1.6 (non-zip) ``pytorch_model.bin`` cannot be memory-mapped: it is read whole.
    A damaged weights file, either format, is a ``CheckpointError`` naming it in one line,
    never torch's advice to load it with ``weights_only=False`` (which would run its code)."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_mert_dir / "config.json").read_text())
    state = torch.load(tiny_mert_dir / "pytorch_model.bin", weights_only=True)
    torch.save(state, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    a = MertExtractor.from_pretrained(folder).features_from_waveform(_wave())
    b = MertExtractor.from_pretrained(tiny_mert_dir).features_from_waveform(_wave())
    np.testing.assert_array_equal(a, b)
    for name, data in (("pytorch_model.bin", b"\xdd" * 4000), ("model.safetensors", b"\x10" * 64)):
        damaged = tmp_path / f"damaged-{name}"
        damaged.mkdir()
        (damaged / "config.json").write_text((tiny_mert_dir / "config.json").read_text())
        (damaged / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            MertExtractor.from_pretrained(damaged)
        message = str(err.value)
        assert message.startswith(f"{damaged / name}: ") and "\n" not in message
        assert "weights_only" not in message

def _edited(tiny_mert_dir, tmp_path, edit) -> MertExtractor:
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_mert_dir / "config.json").read_text())
    state = torch.load(tiny_mert_dir / "pytorch_model.bin", weights_only=True)
    edit(state)
    torch.save(state, folder / "pytorch_model.bin")
    return MertExtractor.from_pretrained(folder)


def test_missing_key_is_named(tiny_mert_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"missing key 'encoder\.layers\.1\.final_layer_norm\.bias'"):
        _edited(tiny_mert_dir, tmp_path, lambda s: s.pop("encoder.layers.1.final_layer_norm.bias"))


def test_unexpected_key_is_named(tiny_mert_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"unexpected key 'decoder\.weight'"):
        _edited(tiny_mert_dir, tmp_path, lambda s: s.update({"decoder.weight": torch.zeros(2)}))


def test_wrong_shape_and_duplicate_weight_norm_are_named(tiny_mert_dir, tmp_path):
    def edit(state):
        state["masked_spec_embed"] = torch.zeros(3)
        state["encoder.pos_conv_embed.conv.parametrizations.weight.original0"] = state[
            "encoder.pos_conv_embed.conv.weight_g"
        ]

    with pytest.raises(CheckpointError) as err:
        _edited(tiny_mert_dir, tmp_path, edit)
    assert "'masked_spec_embed' has shape (3,)" in str(err.value)
    assert "both 'encoder.pos_conv_embed.conv.weight_g' and" in str(err.value)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_MERT_CONFIG))
    with pytest.raises(
        CheckpointError, match=r"needs config.json and one of model.safetensors, pytorch_model.bin"
    ):
        MertExtractor.from_pretrained(tmp_path)


def test_a_missing_folder_is_not_taken_for_a_hub_repository(tmp_path):
    """No hub could hold an absolute path: the error says so, not "hf download /abs/path"."""
    from clamp3.hub import is_repo_id

    missing = tmp_path / "no_such_mert"
    with pytest.raises(CheckpointError, match="no such folder") as err:
        MertExtractor.from_pretrained(missing)
    assert str(missing) in str(err.value) and "hf download" not in str(err.value)
    assert is_repo_id("m-a-p/MERT-v1-95M") and is_repo_id("mert")
    assert not any(map(is_repo_id, (str(missing), "./mert", "a/b/c", "..")))


def test_cqt_variant_is_refused(tmp_path):
    cfg = dict(TINY_MERT_CONFIG, feature_extractor_cqt=True)
    folder = write_mert_folder(tmp_path / "cqt", cfg, tiny_mert_keys())
    with pytest.raises(CheckpointError, match="feature_extractor_cqt"):
        MertExtractor.from_pretrained(folder)


def test_uncached_hub_model_offline_says_what_to_fetch(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError) as err:
        MertExtractor.from_pretrained("m-a-p/MERT-v1-95M")
    message = str(err.value)
    assert "https://huggingface.co/m-a-p/MERT-v1-95M" in message
    assert "hf download m-a-p/MERT-v1-95M config.json pytorch_model.bin" in message and "mert/" in message
