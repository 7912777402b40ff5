"""``Clamp3Model.encode``: raw inputs of every kind, order, normalisation, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from clamp3 import Clamp3Model
from clamp3.encode import detect_modality
from clamp3.utils.errors import InputError


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return Clamp3Model.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def files(tmp_path_factory, parity_dir):
    root = tmp_path_factory.mktemp("encode_inputs")
    shutil.copy(parity_dir / "prep/abc_interleaved/bach_bwv66_6.abc", root / "chorale.abc")
    shutil.copy(parity_dir / "prep/mtf/m21_test01.mtf", root / "song.mtf")
    shutil.copy(parity_dir / "inputs/musicxml/mozart_k545_mvt1_exposition.mxl", root / "sonata.mxl")
    shutil.copy(parity_dir / "inputs/midi/m21_test08.mid", root / "perf.mid")
    (root / "desc.txt").write_text("a calm chorale\nfour voices\na calm chorale\n\n", encoding="utf-8")
    rng = np.random.default_rng(1)
    np.save(root / "feat.npy", rng.standard_normal((1, 11, 32)).astype(np.float32))
    return root


def test_detect_modality(files):
    assert detect_modality("ein fröhliches Volkslied") == "text"
    assert detect_modality(files / "chorale.abc") == "symbolic"
    assert detect_modality(str(files / "perf.mid")) == "symbolic"
    assert detect_modality(files / "feat.npy") == "audio"
    assert detect_modality("missing.wav") == "audio"  # looks like a file: reported, not embedded as text
    assert detect_modality(files / "desc.txt") == "text"


def test_mixed_list_equals_one_by_one_and_is_normalised(model, files):
    inputs = [
        "a melancholy waltz for solo piano",
        files / "chorale.abc",
        str(files / "feat.npy"),
        files / "song.mtf",
        "一首欢快的民歌",
        files / "desc.txt",
        files / "sonata.mxl",
        files / "perf.mid",
    ]
    together = model.encode(inputs, batch_size=3)
    assert together.shape == (len(inputs), 32) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for x, row in zip(inputs, together, strict=True):
        np.testing.assert_allclose(model.encode([x])[0], row, atol=1e-5)
    raw = model.encode(inputs[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_encode_matches_the_item_level_api(model, files):
    from clamp3.preprocess import patchify

    text = (files / "chorale.abc").read_text(encoding="utf-8")
    (expected,) = model.embed_patches([patchify(text)])
    got = model.encode([files / "chorale.abc"], normalize=False)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    ids = model.tokenizer.encode("a calm chorale</s>four voices")
    (expected_text,) = model.embed_text_ids([ids])
    np.testing.assert_allclose(
        model.encode([files / "desc.txt"], normalize=False)[0], expected_text, atol=1e-6
    )


def test_text_file_lines_are_deduplicated_in_order(model, tmp_path):
    (tmp_path / "a.txt").write_text("second line\nfirst line\nsecond line\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    a, b = model.encode([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert not np.allclose(a, b)  # order is kept, not re-sorted by a set
    again = model.encode([tmp_path / "a.txt"])[0]
    np.testing.assert_allclose(a, again, atol=1e-6)


def test_bad_inputs_name_the_file(model, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 7), dtype=np.float32))
    (tmp_path / "x.mid").write_bytes(b"MThd garbage")
    for name, reason in [
        ("empty.txt", "empty"),
        ("bad.npy", "readable"),
        ("wrong.npy", "shape"),
        ("missing.abc", "no such file"),
        ("x.mid", ""),
    ]:
        with pytest.raises(InputError) as info:
            model.encode([tmp_path / name])
        assert name in str(info.value) and reason in str(info.value)
    (tmp_path / "x.docx").write_bytes(b"PK")
    with pytest.raises(InputError, match="x.docx: unsupported file type"):
        model.encode([tmp_path / "x.docx"])


def _as_text(model, text: str) -> np.ndarray:
    (vector,) = model.embed_text_ids([model.tokenizer.encode(text)])
    return vector / np.linalg.norm(vector)


def test_forced_text_embeds_the_string_unless_it_is_a_path_object_or_an_existing_txt(
    model, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ballade.mid").write_bytes(b"MThd\xff\xfe binary")
    (tmp_path / "notes.txt").write_text("a calm chorale\n", encoding="utf-8")
    got = model.encode(["ballade.mid", "missing.txt", "notes.txt", tmp_path / "notes.txt"], modality="text")
    np.testing.assert_allclose(got[0], _as_text(model, "ballade.mid"), atol=1e-5)
    np.testing.assert_allclose(got[1], _as_text(model, "missing.txt"), atol=1e-5)
    np.testing.assert_allclose(got[2], _as_text(model, "a calm chorale"), atol=1e-5)
    np.testing.assert_allclose(got[3], got[2], atol=1e-6)
    with pytest.raises(InputError, match="not UTF-8"):  # a path object is read, even forced to text
        model.encode([tmp_path / "ballade.mid"], modality="text")


def test_an_extensionless_file_does_not_shadow_a_text_query(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "waltz").write_bytes(b"\x00\x01 binary")
    assert detect_modality("waltz") == "text"
    np.testing.assert_allclose(model.encode("waltz")[0], _as_text(model, "waltz"), atol=1e-5)


def test_any_iterable_of_inputs(model, files):
    inputs = ["a melancholy waltz", files / "chorale.abc", files / "desc.txt"]
    np.testing.assert_allclose(model.encode(x for x in inputs), model.encode(inputs), atol=1e-6)
    np.testing.assert_allclose(model.encode(tuple(inputs)), model.encode(inputs), atol=1e-6)


def test_mert_feature_shapes(model, tmp_path):
    rows = np.random.default_rng(2).standard_normal((6, 32)).astype(np.float32)
    np.save(tmp_path / "official.npy", rows[None])  # (1, n, 768) as the official extractor writes
    np.save(tmp_path / "plain.npy", rows)  # (n, 768)
    np.save(tmp_path / "layers.npy", np.stack([rows] * 13))  # (13, n, 768): one array per layer
    official, plain = model.encode([tmp_path / "official.npy", tmp_path / "plain.npy"])
    np.testing.assert_allclose(official, plain, atol=1e-6)
    with pytest.raises(InputError, match=r"layers.npy: expected audio features .* got \(13, 6, 32\)"):
        model.encode([tmp_path / "layers.npy"])


def test_a_missing_tower_is_an_input_error_naming_model_and_tower(tmp_path):
    import torch

    from clamp3.config import load_preset

    config = load_preset("tiny")
    config.name, config.audio, config.text = "tiny-symbolic-only", None, None
    torch.manual_seed(0)
    symbolic_only = Clamp3Model(config)
    np.save(tmp_path / "feat.npy", np.ones((1, 3, 32), np.float32))
    with pytest.raises(InputError, match="feat.npy: model 'tiny-symbolic-only' has no audio tower"):
        symbolic_only.encode([tmp_path / "feat.npy"])
    with pytest.raises(InputError, match="'a waltz': model 'tiny-symbolic-only' has no text tower"):
        symbolic_only.encode(["a waltz"])
