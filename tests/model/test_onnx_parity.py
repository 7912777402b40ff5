"""The ONNX Runtime backend against the official outputs (shared/parity) on the full-size
deterministic weights: fp32 within 1e-4 for every global and per-segment vector, int8 within
cosine 0.99 of fp32 on every vector, fp16 finite on every input.

The fp32 graphs are exported once from the session's parity model; int8 and fp16 are derived
from them (each graph still checked against torch at export)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from clamp3.onnx.export import derive_export, export_onnx  # noqa: E402
from clamp3.onnx.runtime import OnnxModel, audio_array, patch_array, text_array  # noqa: E402
from clamp3.segments import pool_segments, segment_item  # noqa: E402

pytestmark = pytest.mark.parity


@pytest.fixture(scope="module")
def onnx_dirs(parity_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_parity")
    export_onnx(parity_model, root / "fp32")
    for precision in ("int8", "fp16"):
        derive_export(parity_model, root / "fp32", root / precision, precision)
    return {p: root / p for p in ("fp32", "int8", "fp16")}


def _entries(parity_dir):
    return json.loads((parity_dir / "model" / "manifest.json").read_text())


def _item(parity_dir, entry):
    """The prepared item as the official script builds it (numpy, as the ONNX runtime takes it)."""
    if entry["modality"] == "symbolic":
        return patch_array(np.load(parity_dir / entry["patches"]))
    if entry["modality"] == "text":
        return text_array(json.loads((parity_dir / entry["input"]).read_text()))
    return audio_array(np.load(parity_dir / entry["input"]))


def _segments(model, parity_dir):
    """name -> per-segment vectors (S, 768) of every parity entry, all segments of a modality
    in one call (batched longest first with padding, which must not matter)."""
    out = {}
    for modality in ("text", "symbolic", "audio"):
        group = [e for e in _entries(parity_dir) if e["modality"] == modality]
        pieces, owners = [], []
        for entry in group:
            item = _item(parity_dir, entry)
            for s in segment_item(len(item), entry["segment_length"]):
                pieces.append(item[s.start : s.end])
                owners.append(entry["name"])
        vectors = model.run_segments(modality, pieces, True, 8)
        for entry in group:
            out[entry["name"]] = np.stack([v for v, o in zip(vectors, owners) if o == entry["name"]])
    return out


def _vectors(model, parity_dir):
    """name -> (global (768,), segments (S, 768)): the global vectors through ``embed_items``
    (segmentation and length-weighted pooling of the runtime), the segments run on their own."""
    segments = _segments(model, parity_dir)
    out = {}
    for modality in ("text", "symbolic", "audio"):
        group = [e for e in _entries(parity_dir) if e["modality"] == modality]
        items = [_item(parity_dir, e) for e in group]
        for entry, vector in zip(group, model.embed_items(modality, items), strict=True):
            out[entry["name"]] = (vector, segments[entry["name"]])
    return out


def _pooled(model, parity_dir):
    """name -> (global, segments) with the global vector pooled from the segments exactly as
    the runtime pools them (:func:`clamp3.segments.pool_segments`): one pass of the towers."""
    out = {}
    segments = _segments(model, parity_dir)
    for entry in _entries(parity_dir):
        plan = segment_item(entry["n_items"], entry["segment_length"])
        out[entry["name"]] = (pool_segments(segments[entry["name"]], plan), segments[entry["name"]])
    return out


@pytest.fixture(scope="module")
def fp32_vectors(onnx_dirs, parity_dir):
    return _vectors(OnnxModel.from_pretrained(onnx_dirs["fp32"]), parity_dir)


def test_fp32_onnx_matches_official_global_and_segments(fp32_vectors, parity_dir):
    entries = _entries(parity_dir)
    assert len(fp32_vectors) == len(entries) >= 20
    for entry in entries:
        vector, segments = fp32_vectors[entry["name"]]
        expected = np.load(parity_dir / entry["expected_global"])[0]
        np.testing.assert_allclose(vector, expected, atol=1e-4, rtol=1e-4, err_msg=entry["name"])
        expected_segments = np.load(parity_dir / entry["expected_segments"])
        np.testing.assert_allclose(segments, expected_segments, atol=1e-4, rtol=1e-4, err_msg=entry["name"])


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_is_within_cosine_099_of_fp32_on_every_vector(onnx_dirs, fp32_vectors, parity_dir):
    int8 = _pooled(OnnxModel.from_pretrained(onnx_dirs["int8"]), parity_dir)
    worst = 1.0
    for name, (vector, segments) in int8.items():
        ref_vector, ref_segments = fp32_vectors[name]
        cosines = np.concatenate([_cosines(vector, ref_vector), _cosines(segments, ref_segments)])
        worst = min(worst, float(cosines.min()))
        assert (cosines >= 0.99).all(), (name, cosines.min())
    print(f"int8 vs fp32: minimum cosine {worst:.5f}")


def test_fp16_is_finite_on_every_parity_input(onnx_dirs, fp32_vectors, parity_dir):
    fp16 = _pooled(OnnxModel.from_pretrained(onnx_dirs["fp16"]), parity_dir)
    for name, (vector, segments) in fp16.items():
        assert np.isfinite(vector).all() and np.isfinite(segments).all(), name
        assert _cosines(vector, fp32_vectors[name][0])[0] >= 0.99, name
