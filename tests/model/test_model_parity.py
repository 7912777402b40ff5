"""Parity with the official extractor (shared/parity): global, per-segment and unpooled outputs
of the deterministic-weight CLaMP 3 checkpoint loaded from an official-format ``.pth``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clamp3.embedding import prepare_audio, prepare_patches, prepare_text, run_segments
from clamp3.segments import segment_item

pytestmark = pytest.mark.parity


def _entries(parity_dir):
    return json.loads((parity_dir / "model" / "manifest.json").read_text())


def _item(parity_dir, entry):
    """The prepared item tensor exactly as the official script builds it."""
    if entry["modality"] == "symbolic":
        return prepare_patches(np.load(parity_dir / entry["patches"]))
    if entry["modality"] == "text":
        return prepare_text(json.loads((parity_dir / entry["input"]).read_text()))
    return prepare_audio(np.load(parity_dir / entry["input"]))


def _embed(model, modality, items, pooled=True):
    if modality == "text":
        return model.embed_text_ids([i.tolist() for i in items], pooled=pooled)
    if modality == "symbolic":
        return model.embed_patches([i.numpy() for i in items], pooled=pooled)
    return model.embed_audio_features([i.numpy()[1:-1] for i in items], pooled=pooled)


def test_global_embeddings_match_official(parity_model, parity_dir):
    entries = _entries(parity_dir)
    assert len(entries) >= 20
    for modality in ("text", "symbolic", "audio"):
        group = [e for e in entries if e["modality"] == modality]
        # All items of a modality in one call: batching with dynamic padding must not matter.
        got = _embed(parity_model, modality, [_item(parity_dir, e) for e in group])
        for entry, vector in zip(group, got, strict=True):
            expected = np.load(parity_dir / entry["expected_global"])
            assert expected.shape == (1, 768)
            assert vector.dtype == np.float32 and vector.shape == (768,)
            np.testing.assert_allclose(vector, expected[0], atol=1e-4, rtol=1e-4, err_msg=entry["name"])


def test_segment_bounds_and_vectors_match_official(parity_model, parity_dir):
    for entry in _entries(parity_dir):
        item = _item(parity_dir, entry)
        assert item.shape[0] == entry["n_items"], entry["name"]
        segments = segment_item(item.shape[0], entry["segment_length"])
        assert [[s.start, s.end] for s in segments] == entry["segments"], entry["name"]
        assert [s.weight for s in segments] == entry["segment_weights"], entry["name"]
        got = run_segments(
            parity_model, entry["modality"], [item[s.start : s.end] for s in segments], True, 8
        )
        expected = np.load(parity_dir / entry["expected_segments"])
        np.testing.assert_allclose(np.stack(got), expected, atol=1e-4, rtol=1e-4, err_msg=entry["name"])


def test_unpooled_outputs_match_official(parity_model, parity_dir):
    entries = {e["name"]: e for e in _entries(parity_dir)}
    files = sorted((parity_dir / "model" / "expected" / "unpooled").glob("*.npy"))
    assert len(files) == 3
    for path in files:
        entry = entries[path.stem]
        expected = np.load(path)
        (got,) = _embed(parity_model, entry["modality"], [_item(parity_dir, entry)], pooled=False)
        assert got.shape == expected.shape[1:] == (entry["n_items"], 768)
        np.testing.assert_allclose(got, expected[0], atol=2e-4, rtol=1e-4, err_msg=path.stem)


def test_converted_directory_gives_the_same_embeddings(parity_model, parity_checkpoint, parity_dir, tmp_path):
    from clamp3 import Clamp3Model
    from clamp3.cli.main import main

    assert main(["convert-checkpoint", str(parity_checkpoint), str(tmp_path / "saas")]) == 0
    converted = Clamp3Model.from_pretrained(tmp_path / "saas")
    entries = [e for e in _entries(parity_dir) if e["name"] in ("text_len129", "m21_test19", "audio_n5")]
    for entry in entries:
        item = _item(parity_dir, entry)
        (a,) = _embed(converted, entry["modality"], [item])
        expected = np.load(parity_dir / entry["expected_global"])[0]
        np.testing.assert_allclose(a, expected, atol=1e-4, rtol=1e-4)
    assert converted.config.name == "saas"


def test_text_only_job_materialises_only_the_text_tower(parity_checkpoint, parity_dir):
    from clamp3 import Clamp3Model

    model = Clamp3Model.from_pretrained(parity_checkpoint)
    entry = next(e for e in _entries(parity_dir) if e["name"] == "text_len10")
    model.embed_text_ids([json.loads((parity_dir / entry["input"]).read_text())])
    assert model.has_tower("text")
    assert not model.has_tower("symbolic") and not model.has_tower("audio")
    n_params = sum(p.numel() for p in model.parameters())
    # text_model holds 278,043,648 officially, pooler (590,592) included; ours has no pooler but
    # has text_proj (590,592), so the total is the same number.
    assert n_params == 278_043_648
    assert all(p.device.type != "meta" for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_outputs_are_finite_and_close(parity_checkpoint, parity_dir, dtype):
    from clamp3 import Clamp3Model

    model = Clamp3Model.from_pretrained(parity_checkpoint, dtype=dtype)
    entries = {e["name"]: e for e in _entries(parity_dir)}
    for name in ("text_len129", "bach_bwv66_6", "audio_n5"):
        entry = entries[name]
        (vector,) = _embed(model, entry["modality"], [_item(parity_dir, entry)])
        expected = np.load(parity_dir / entry["expected_global"])[0]
        assert np.isfinite(vector).all(), name
        cosine = float(vector @ expected / np.linalg.norm(vector) / np.linalg.norm(expected))
        assert cosine > 0.99, (name, cosine)
