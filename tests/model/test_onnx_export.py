"""ONNX export and the ONNX Runtime backend on the tiny preset: torch equality (fp32), int8 and
fp16 closeness, boolean masks, external data, and refusal of corrupted or mismatching exports."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from clamp3.onnx.export import ExportMismatch, export_onnx  # noqa: E402
from clamp3.onnx.runtime import OnnxModel  # noqa: E402
from clamp3.utils.errors import CheckpointError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_torch(tiny_model_dir):
    from clamp3 import Clamp3Model

    return Clamp3Model.from_pretrained(tiny_model_dir, modalities=None)


@pytest.fixture(scope="module")
def exports(tiny_model_dir, tmp_path_factory):
    """fp32, int8 and fp16 exports of the tiny model (all towers)."""
    root = tmp_path_factory.mktemp("onnx")
    return {
        p: (export_onnx(tiny_model_dir, root / p, precision=p), root / p) for p in ("fp32", "int8", "fp16")
    }


def _items(rng, model):
    """Items of every modality crossing segment boundaries (tiny: 32 tokens, 16 patches, 8 rows)."""
    cfg = model.config
    texts = [[0, *rng.integers(3, cfg.text.vocab_size, n).tolist(), 2] for n in (1, 30, 31, 70)]
    patches = [rng.integers(0, 128, (n, 64)) for n in (2, 16, 17, 40)]
    audio = [rng.standard_normal((n, cfg.audio.feature_dim)).astype(np.float32) for n in (1, 6, 7, 20)]
    return {"text": texts, "symbolic": patches, "audio": audio}


def _embed(model, modality, items, pooled=True):
    fn = {"text": model.embed_text_ids, "symbolic": model.embed_patches, "audio": model.embed_audio_features}
    return fn[modality](items, pooled=pooled, batch_size=3)


def _cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_fp32_export_equals_torch_global_segments_and_unpooled(exports, tiny_torch, rng):
    onnx_model = OnnxModel.from_pretrained(exports["fp32"][1])
    for modality, items in _items(rng, tiny_torch).items():
        for pooled in (True, False):
            want = _embed(tiny_torch, modality, items, pooled)
            got = _embed(onnx_model, modality, items, pooled)
            for w, g in zip(want, got, strict=True):
                assert g.dtype == np.float32 and g.shape == w.shape
                np.testing.assert_allclose(g, w, atol=1e-4, rtol=1e-4, err_msg=f"{modality} pooled={pooled}")


def test_int8_and_fp16_are_finite_and_close(exports, tiny_torch, rng):
    items = _items(rng, tiny_torch)
    for precision in ("int8", "fp16"):
        model = OnnxModel.from_pretrained(exports[precision][1])
        assert model.precision == precision
        for modality, batch in items.items():
            for w, g in zip(_embed(tiny_torch, modality, batch), _embed(model, modality, batch), strict=True):
                assert np.isfinite(g).all()
                assert _cosine(w, g) >= 0.99, (precision, modality)


def test_manifest_records_the_checks_and_graphs_use_boolean_masks(exports):
    import onnx
    from onnx import numpy_helper

    manifest, root = exports["fp32"]
    assert manifest.opset == 18 and set(manifest.towers) == {"text", "symbolic", "audio"}
    assert all(entry.check["max_abs_diff"] < 1e-4 for entry in manifest.towers.values())
    for precision in ("fp32", "fp16"):
        graph = onnx.load(exports[precision][1] / "text.onnx").graph
        mask = next(i for i in graph.input if i.name == "attention_mask")
        assert mask.type.tensor_type.elem_type == onnx.TensorProto.BOOL
        for init in graph.initializer:  # no additive mask filled with a dtype's minimum
            values = numpy_helper.to_array(init)
            if values.dtype.kind == "f" and values.size:
                finite = values[np.isfinite(values)]
                assert not (finite <= -6e4).any(), (precision, init.name)
    int8 = onnx.load(exports["int8"][1] / "text.onnx").graph
    quantized = {
        i.name for i in int8.initializer if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    }
    assert any("word_embeddings" in name for name in quantized)  # the token table is int8
    assert any(n.op_type == "MatMulInteger" for n in int8.node)


def test_the_pipeline_loads_an_export_and_encodes_as_torch(exports, tiny_torch, tmp_path):
    from clamp3 import Clamp3Pipeline

    root = exports["fp32"][1]
    assert (root / "tokenizer.json").is_file() and (root / "config.json").is_file()
    pipeline = Clamp3Pipeline.from_pretrained(root)  # the same entry point as for torch weights
    assert isinstance(pipeline.model, OnnxModel)
    texts = ["a melancholy waltz for solo piano", "一首欢快的民歌"]
    want = Clamp3Pipeline(tiny_torch).encode_texts(texts)
    np.testing.assert_allclose(pipeline.encode_texts(texts), want, atol=1e-5)
    features = tmp_path / "take.npy"
    np.save(features, np.random.default_rng(1).standard_normal((1, 9, 32)).astype(np.float32))
    np.testing.assert_allclose(
        pipeline.encode_files([features]), Clamp3Pipeline(tiny_torch).encode_files([features]), atol=1e-5
    )
    with pytest.raises(CheckpointError, match="an ONNX export"):
        type(tiny_torch).from_pretrained(root)  # the torch model names what the folder is
    for backend in (pipeline, Clamp3Pipeline(tiny_torch)):  # one check of batch_size for both
        for bad in (0, -2, 2.5, True):
            with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad!r}"):
                backend.encode_texts(texts, batch_size=bad)
    assert pipeline.model.embed_text_ids([[0, 5, 2]], batch_size=np.int64(1))[0].shape == (32,)


def test_corrupted_or_mismatching_files_are_refused_naming_the_file(exports, tmp_path):
    src = exports["fp32"][1]
    truncated = tmp_path / "truncated"
    shutil.copytree(src, truncated)
    graph = truncated / "text.onnx"
    graph.write_bytes(graph.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=str(graph)):
        OnnxModel.from_pretrained(truncated)
    flipped = tmp_path / "flipped"
    shutil.copytree(src, flipped)
    data = bytearray((flipped / "audio.onnx").read_bytes())
    data[-64:] = bytes(64)  # same size, other content
    (flipped / "audio.onnx").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="audio.onnx.*corrupted"):
        OnnxModel.from_pretrained(flipped)
    swapped = tmp_path / "swapped"
    shutil.copytree(src, swapped)
    shutil.copyfile(src / "symbolic.onnx", swapped / "text.onnx")  # a graph of another tower
    import json

    manifest = json.loads((swapped / "onnx.json").read_text())
    manifest["towers"]["text"]["files"] = manifest["towers"]["symbolic"]["files"]
    manifest["towers"]["text"]["files"] = {
        "text.onnx": manifest["towers"]["symbolic"]["files"]["symbolic.onnx"]
    }
    (swapped / "onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="text.onnx.*not a clamp3 text graph"):
        OnnxModel.from_pretrained(swapped).embed_text_ids([[0, 5, 2]])
    config = tmp_path / "config"
    shutil.copytree(src, config)
    (config / "config.json").write_text((config / "config.json").read_text().replace('"tiny"', '"other"'))
    with pytest.raises(CheckpointError, match="config.json"):
        OnnxModel.from_pretrained(config)


def test_a_graph_that_disagrees_with_torch_is_an_error_and_leaves_nothing(
    tiny_model_dir, tmp_path, monkeypatch
):
    import clamp3.onnx.export as export

    real = export.torch_outputs

    def shifted(*args):
        embedding, hidden = real(*args)
        return embedding + 1e-2, hidden

    monkeypatch.setattr(export, "torch_outputs", shifted)
    out = tmp_path / "bad"
    with pytest.raises(ExportMismatch, match="audio.onnx.*disagrees with torch"):
        export_onnx(tiny_model_dir, out, towers=["audio"])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_weights_are_external_data(tiny_model_dir, tiny_torch, tmp_path, rng):
    # Weights beside the graph, so ONNX Runtime memory-maps them (peak RSS; docs/onnx.md).
    manifest = export_onnx(tiny_model_dir, tmp_path / "ext", towers=["symbolic"], precision="int8")
    assert set(manifest.towers["symbolic"].files) == {"symbolic.onnx", "symbolic.onnx.data"}
    data = tmp_path / "ext" / "symbolic.onnx.data"
    assert data.stat().st_size > (tmp_path / "ext" / "symbolic.onnx").stat().st_size
    assert data.stat().st_mode & 0o044 == 0o044 & ~_umask()  # readable as the graph is
    model = OnnxModel.from_pretrained(tmp_path / "ext")
    patches = [rng.integers(0, 128, (20, 64))]
    assert _cosine(model.embed_patches(patches)[0], tiny_torch.embed_patches(patches)[0]) >= 0.99
    with pytest.raises(CheckpointError, match="text tower was not exported"):
        model.embed_text_ids([[0, 4, 2]])


def test_mert_front_end_export_equals_torch(tiny_model_dir, tiny_mert, tmp_path):
    from clamp3 import Clamp3Model, Clamp3Pipeline
    from clamp3.onnx.graphs import mert_windows

    # A MERT-v1-95M-shaped network at test size as the pipeline's front-end.
    pipeline = Clamp3Pipeline(Clamp3Model.from_pretrained(tiny_model_dir), audio_frontend=tiny_mert)
    manifest = export_onnx(pipeline, tmp_path / "mert", towers=["mert"])
    assert manifest.towers["mert"].check["max_abs_diff"] < 1e-4
    frontend = Clamp3Pipeline.from_pretrained(tmp_path / "mert").audio_frontend
    for windows in [*mert_windows(seed=5), np.zeros((1, 24_000), np.float32)]:
        np.testing.assert_allclose(
            frontend.encode_windows(windows), tiny_mert.encode_windows(windows), atol=1e-4
        )
    wave = np.sin(np.arange(24_000 * 7) / 30.0).astype(np.float32)  # 7 s: a full and a short window
    np.testing.assert_allclose(
        frontend.features_from_waveform(wave), tiny_mert.features_from_waveform(wave), atol=1e-4, rtol=1e-4
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_one_shot_pipeline_skips_prepacking_and_gives_the_same_vectors(exports, tiny_torch):
    """``clamp3 search`` loads for one query: the sessions open unpacked (faster to open, slower
    to run) and the vectors stay torch's."""
    from clamp3 import Clamp3Pipeline
    from clamp3.loading import load_pipeline

    texts = ["a melancholy waltz for solo piano", "一首欢快的民歌"]
    want = Clamp3Pipeline(tiny_torch).encode_texts(texts)
    for precision in ("fp32", "int8"):
        root = exports[precision][1]
        shot, warm = load_pipeline(root, one_shot=True), load_pipeline(root)
        assert shot.model.one_shot and not warm.model.one_shot
        got, packed = shot.encode_texts(texts), warm.encode_texts(texts)
        options = {name: p.model.require("text")._session.get_session_options() for name, p in
                   (("shot", shot), ("warm", warm))}
        assert options["shot"].get_session_config_entry("session.disable_prepacking") == "1"
        with pytest.raises(RuntimeError, match="does not have"):  # never set: ORT's default, prepacked
            options["warm"].get_session_config_entry("session.disable_prepacking")
        tolerance = 1e-4 if precision == "fp32" else 2e-2
        np.testing.assert_allclose(got, want, atol=tolerance)
        np.testing.assert_allclose(got, packed, atol=1e-4 if precision == "fp32" else 1e-2)
