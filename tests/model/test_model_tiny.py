"""Model core on the tiny preset: batching, padding, save/load, strict keys, official formats."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from clamp3 import Clamp3Model, load_preset
from clamp3.checkpoints import CheckpointError
from clamp3.testing import write_official_checkpoint


@pytest.fixture(scope="module")
def tiny():
    return Clamp3Model.from_preset("tiny", seed=0).eval()


def _text_items(rng, n=6):
    return [[0, *rng.integers(5, 200, size=int(k)).tolist(), 2] for k in rng.integers(1, 80, size=n)]


def _patch_items(rng, n=6):
    items = []
    for k in rng.integers(1, 40, size=n):
        p = rng.integers(0, 128, size=(int(k) + 2, 64))
        p[0], p[-1] = 1, [1] + [2] * 63
        items.append(p)
    return items


def _audio_items(rng, n=6):
    return [rng.standard_normal((int(k), 32)).astype(np.float32) for k in rng.integers(1, 20, size=n)]


ITEMS = {"text": _text_items, "symbolic": _patch_items, "audio": _audio_items}


def _embed(model, modality, items, **kw):
    fn = {"text": model.embed_text_ids, "symbolic": model.embed_patches, "audio": model.embed_audio_features}
    return fn[modality](items, **kw)


@pytest.mark.parametrize("modality", ["text", "symbolic", "audio"])
@pytest.mark.parametrize("pooled", [True, False])
def test_batched_equals_one_at_a_time(tiny, rng, modality, pooled):
    items = ITEMS[modality](rng)
    together = _embed(tiny, modality, items, pooled=pooled, batch_size=4)
    for item, vector in zip(items, together, strict=True):
        (alone,) = _embed(tiny, modality, [item], pooled=pooled, batch_size=1)
        assert vector.shape == alone.shape
        np.testing.assert_allclose(vector, alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modality", ["text", "symbolic", "audio"])
def test_unpooled_rows_count_special_items(tiny, rng, modality):
    items = ITEMS[modality](rng, n=3)
    outs = _embed(tiny, modality, items, pooled=False)
    for item, out in zip(items, outs, strict=True):
        extra = 2 if modality == "audio" else 0
        assert out.shape == (len(item) + extra, 32)


def test_padding_never_changes_a_pooled_vector(tiny, rng):
    ids = torch.tensor([[0, 11, 12, 13, 2]])
    for modality, inputs, pad in [
        ("text", ids, 1),
        ("symbolic", torch.as_tensor(_patch_items(rng, 1)[0][:5]).unsqueeze(0), 0),
        ("audio", torch.randn(1, 5, 32), 0.0),
    ]:
        mask = torch.ones(1, 5, dtype=torch.long)
        base = tiny.get_features(modality, inputs, mask)
        for extra in (1, 3):  # tiny audio has 8 positions
            shape = (1, extra, *inputs.shape[2:])
            padded = torch.cat([inputs, torch.full(shape, pad, dtype=inputs.dtype)], dim=1)
            padded_mask = torch.cat([mask, torch.zeros(1, extra, dtype=torch.long)], dim=1)
            out = tiny.get_features(modality, padded, padded_mask)
            torch.testing.assert_close(out, base, atol=1e-5, rtol=1e-5)


def test_global_vector_is_the_length_weighted_segment_mean(tiny, rng):
    # 40 text tokens with segment length 32: segments [0, 32) weight 32 and [8, 40) weight 8.
    ids = _text_items(np.random.default_rng(3), 1)[0]
    ids = (ids * 10)[:40]
    (vector,) = tiny.embed_text_ids([ids])
    a, b = tiny.embed_text_ids([ids[:32], ids[8:40]])
    np.testing.assert_allclose(vector, (32 * a + 8 * b) / 40, atol=1e-5)


def test_save_load_roundtrip_gives_identical_embeddings(tiny, rng, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = Clamp3Model.from_pretrained(tmp_path / "m")
    assert loaded.config == tiny.config
    for modality, make in ITEMS.items():
        items = make(rng, 3)
        for a, b in zip(_embed(tiny, modality, items), _embed(loaded, modality, items), strict=True):
            np.testing.assert_array_equal(a, b)


def _official_state(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hidden = model.config.text.encoder.hidden_size
    for prefix in ("text_model", "symbolic_model.base", "audio_model"):
        state[f"{prefix}.pooler.dense.weight"] = torch.zeros(hidden, hidden)
        state[f"{prefix}.pooler.dense.bias"] = torch.zeros(hidden)
    return state


def test_official_pth_loads_strictly(tiny, rng, tmp_path):
    path = write_official_checkpoint(tmp_path / "w.pth", _official_state(tiny), optimizer={}, epoch=3)
    loaded = Clamp3Model.from_pretrained(path, config="tiny")
    items = _patch_items(rng, 2)
    np.testing.assert_array_equal(np.stack(loaded.embed_patches(items)), np.stack(tiny.embed_patches(items)))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_checkpoint_with_missing_or_extra_key_fails_naming_it(tiny, tmp_path, change):
    state = _official_state(tiny)
    if change == "missing":
        del state["symbolic_model.base.encoder.layer.1.output.dense.bias"]
        name = "symbolic_model.base.encoder.layer.1.output.dense.bias"
    else:
        state["audio_model.encoder.layer.9.output.dense.bias"] = torch.zeros(32)
        name = "audio_model.encoder.layer.9.output.dense.bias"
    path = write_official_checkpoint(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointError, match=re.escape(name)) as info:
        Clamp3Model.from_pretrained(path, config="tiny")
    assert str(path) in str(info.value)
    assert ("missing keys" if change == "missing" else "unexpected keys") in str(info.value)


@pytest.mark.parametrize("fmt", ["official", "directory"])
def test_wrong_shape_fails_at_load_naming_key_and_shapes(tiny, tmp_path, fmt):
    state = _official_state(tiny)
    state["text_proj.weight"] = torch.zeros(16, 32)
    path = write_official_checkpoint(tmp_path / "shape.pth", state)
    if fmt == "directory":  # a converted directory with the wrong tensor in its safetensors
        from safetensors.torch import save_file

        tiny.save_pretrained(tmp_path / "dir")
        path = tmp_path / "dir" / "model.safetensors"
        save_file(
            {
                k: v.contiguous()
                for k, v in state.items()
                if not k.endswith("pooler.dense.weight") and not k.endswith("pooler.dense.bias")
            },
            str(path),
        )
        path = path.parent
    # Checked before any tensor is read (not at the first embed, and for every tower).
    with pytest.raises(CheckpointError) as info:
        Clamp3Model.from_pretrained(path, config="tiny", modalities=("symbolic",))
    message = str(info.value)
    assert "wrong shapes" in message and "text_proj.weight (16, 32) (expected (32, 32))" in message
    assert str(path) in message


def test_clamp2_and_m3_checkpoints_load_through_the_same_call(tiny, rng, tmp_path):
    state = _official_state(tiny)
    clamp2 = {
        re.sub(r"^symbolic_(model|proj)", r"music_\1", k): v
        for k, v in state.items()
        if not k.startswith("audio_")
    }
    path = write_official_checkpoint(tmp_path / "clamp2.pth", clamp2)
    cfg = load_preset("tiny")
    cfg.audio, cfg.name = None, "tiny-clamp2"
    model2 = Clamp3Model.from_pretrained(path, config=cfg)
    items = _patch_items(rng, 2)
    np.testing.assert_array_equal(np.stack(model2.embed_patches(items)), np.stack(tiny.embed_patches(items)))
    with pytest.raises(ValueError, match="no 'audio' tower"):
        model2.embed_audio_features(_audio_items(rng, 1))

    m3 = {
        k.replace("symbolic_model.", "encoder.", 1): v
        for k, v in state.items()
        if k.startswith("symbolic_model.")
    }
    m3["decoder.base.transformer.wte.weight"] = torch.zeros(128, 32)
    cfg3 = load_preset("tiny")
    cfg3.text = cfg3.audio = None
    cfg3.projection, cfg3.name = False, "tiny-m3"
    model3 = Clamp3Model.from_pretrained(write_official_checkpoint(tmp_path / "m3.pth", m3), config=cfg3)
    short = [items[0][:12]]  # one segment: the global vector is the plain mean of the rows
    (unprojected,) = model3.embed_patches(short)
    (hidden,) = tiny.embed_patches(short, pooled=False)
    np.testing.assert_allclose(unprojected, hidden.mean(0), atol=1e-5)


def test_tag_offline_and_not_cached_says_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"), raising=False)
    with pytest.raises(CheckpointError) as info:
        Clamp3Model.from_pretrained("c2")
    message = str(info.value)
    assert "https://huggingface.co/sander-wood/clamp3/resolve/main/weights_clamp3_c2_" in message
    assert "hf download" in message


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("config.json", lambda b: b"{not json", "not a clamp3 model config"),
        ("config.json", lambda b: b.replace(b"{", b'{"bogus": 1, ', 1), "unknown model config fields"),
        (
            "config.json",
            lambda b: b.replace(b'"num_heads": 4', b'"num_heads": "4"', 1),
            "model config text encoder: num_heads must be an integer, got '4'",
        ),
        (
            "config.json",
            lambda b: b.replace(b'"segment_length": 32', b'"segment_length": 32.0', 1),
            "model config text: segment_length must be an integer, got 32.0",
        ),
        ("model.safetensors", lambda b: b[:1000], "unreadable safetensors file"),
        ("model.safetensors", lambda b: b[: len(b) * 9 // 10], "unreadable safetensors file"),
        ("model.safetensors", lambda b: b"", "unreadable safetensors file"),
    ],
)
def test_a_damaged_model_folder_is_a_checkpoint_error_naming_the_file(tiny, tmp_path, name, damage, reason):
    tiny.save_pretrained(tmp_path / "m")
    target = tmp_path / "m" / name
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(CheckpointError, match=reason) as info:
        Clamp3Model.from_pretrained(tmp_path / "m")
    assert str(info.value).startswith(f"{target}: ")


@pytest.mark.parametrize("data", [b"\xdd" * 5000, b"", b"PK\x03\x04 not really a zip"])
def test_a_damaged_official_file_is_one_line_naming_it(tmp_path, capsys, data):
    """No multi-line torch message, and never its advice to load with ``weights_only=False``."""
    from clamp3.cli.main import main

    path = tmp_path / "weights_clamp3_saas.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError) as err:
        Clamp3Model.from_pretrained(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a readable PyTorch checkpoint (") and "\n" not in message
    assert "weights_only" not in message
    assert main(["convert-checkpoint", str(path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_a_checkpoint_of_another_model_names_the_file_and_a_key(tmp_path):
    path = tmp_path / "classifier.pth"
    torch.save({"model": {"head.weight": torch.zeros(2), "backbone.0.weight": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError) as err:
        Clamp3Model.from_pretrained(path)
    assert str(err.value) == (
        f"{path}: not a CLaMP 3, CLaMP 2 or M3 checkpoint (no symbolic_model.*, music_model.* or "
        "encoder.* keys; it holds e.g. 'backbone.0.weight')"
    )


def test_a_text_file_is_named_neither_zip_nor_pickle(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_text("hi", encoding="utf-8")  # torch's own reason is 'KeyError: 105' (the byte 'i')
    with pytest.raises(CheckpointError, match=r"\(neither a zip archive nor a pickle\)$"):
        Clamp3Model.from_pretrained(path)


def test_the_weights_file_of_a_model_folder_loads_that_folder(tiny, tmp_path):
    folder = tiny.save_pretrained(tmp_path / "m")
    model = Clamp3Model.from_pretrained(folder / "model.safetensors")
    assert model.config.name == "tiny" and model.source_directory == folder  # not the 'saas' preset
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="without its config.json says no architecture") as info:
        Clamp3Model.from_pretrained(lone)
    assert str(info.value).startswith(f"{lone}: ")


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="not a model directory"):
        Clamp3Model.from_pretrained(tmp_path / "nothing-here")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_is_finite(tiny, rng, tmp_path, dtype):
    tiny.save_pretrained(tmp_path / "m")
    model = Clamp3Model.from_pretrained(tmp_path / "m", dtype=dtype)
    for modality, make in ITEMS.items():
        for vector in _embed(model, modality, make(rng, 3)):
            assert vector.dtype == np.float32 and np.isfinite(vector).all()


def test_lazy_towers_follow_device_and_dtype(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "m")
    model = Clamp3Model.from_pretrained(tmp_path / "m")
    model.to(torch.bfloat16)
    model.require("audio")
    assert model.audio_model.embeddings.position_embeddings.weight.dtype == torch.bfloat16
    assert not model.has_tower("text")
