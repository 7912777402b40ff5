"""``Clamp3Pipeline``: texts and files of every kind, order, normalisation, errors, devices."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from clamp3 import Clamp3Model, Clamp3Pipeline
from clamp3.inputs import modality_of
from clamp3.utils.errors import InputError


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir):
    return Clamp3Pipeline.from_pretrained(tiny_model_dir)


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


def test_the_input_table_classifies_by_extension(files):
    assert modality_of(files / "chorale.abc") == "symbolic"
    assert modality_of(str(files / "perf.mid")) == "symbolic"
    assert modality_of(files / "feat.npy") == "audio"
    assert modality_of("missing.wav") == "audio"
    assert modality_of(files / "desc.txt") == "text"
    with pytest.raises(InputError) as info:
        modality_of("notes.docx")
    assert info.value.path == "notes.docx" and "unsupported file type" in info.value.reason


def test_files_equal_one_by_one_and_are_normalised(pipeline, files):
    paths = [
        files / "chorale.abc",
        str(files / "feat.npy"),
        files / "song.mtf",
        files / "desc.txt",
        files / "sonata.mxl",
        files / "perf.mid",
    ]
    together = pipeline.encode_files(paths, batch_size=3)
    assert together.shape == (len(paths), 32) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    for x, row in zip(paths, together, strict=True):
        np.testing.assert_allclose(pipeline.encode_files([x])[0], row, atol=1e-5)
    raw = pipeline.encode_files(paths[:2], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    texts = ["a melancholy waltz for solo piano", "一首欢快的民歌"]
    both = pipeline.encode_texts(texts)
    np.testing.assert_allclose(both[1], pipeline.encode_texts(texts[1:])[0], atol=1e-5)


def test_encode_matches_the_item_level_api(pipeline, files):
    from clamp3.preprocess import patchify

    model = pipeline.model
    text = (files / "chorale.abc").read_text(encoding="utf-8")
    (expected,) = model.embed_patches([patchify(text)])
    got = pipeline.encode_files([files / "chorale.abc"], normalize=False)[0]
    np.testing.assert_allclose(got, expected, atol=1e-6)
    ids = pipeline.tokenizer.encode("a calm chorale</s>four voices")
    (expected_text,) = model.embed_text_ids([ids])
    np.testing.assert_allclose(
        pipeline.encode_files([files / "desc.txt"], normalize=False)[0], expected_text, atol=1e-6
    )
    features = np.load(files / "feat.npy")[0]
    (expected_audio,) = model.embed_audio_features([features])
    got_audio = pipeline.encode_files([files / "feat.npy"], normalize=False)[0]
    np.testing.assert_allclose(got_audio, expected_audio, atol=1e-6)


def test_text_file_lines_are_deduplicated_in_order(pipeline, tmp_path):
    (tmp_path / "a.txt").write_text("second line\nfirst line\nsecond line\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("first line\nsecond line\n", encoding="utf-8")
    a, b = pipeline.encode_files([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert not np.allclose(a, b)  # order is kept, not re-sorted by a set
    np.testing.assert_allclose(a, pipeline.encode_texts(["second line</s>first line"])[0], atol=1e-6)


def test_bad_files_raise_input_errors_naming_them(pipeline, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("   \n\t\n", encoding="utf-8")
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 7), dtype=np.float32))
    (tmp_path / "x.mid").write_bytes(b"MThd garbage")
    (tmp_path / "x.docx").write_bytes(b"PK")
    (tmp_path / "gone.wav").symlink_to(tmp_path / "moved" / "take1.wav")
    (tmp_path / "folder.abc").mkdir()
    (tmp_path / "music").mkdir()
    for name, reason in [
        ("gone.wav", f"broken symbolic link (to {tmp_path / 'moved' / 'take1.wav'})"),
        ("folder.abc", "is a folder, not a file"),
        ("music", "is a folder, not a file"),  # not 'unsupported file type (none)'
        ("empty.txt", "empty file"),
        ("blank.txt", "empty file (only whitespace)"),
        ("bad.npy", "readable"),
        ("wrong.npy", "shape"),
        ("missing.abc", "no such file"),
        ("x.mid", ""),
        ("x.docx", "unsupported file type"),
    ]:
        with pytest.raises(InputError) as info:
            pipeline.encode_files([tmp_path / name])
        assert info.value.path.endswith(name) and reason in info.value.reason
    # an unknown modality is the caller's mistake, not the first file's (as for Preparer)
    with pytest.raises(ValueError, match="unknown modality 'bogus'") as info:
        pipeline.encode_files([tmp_path / "empty.txt"], modality="bogus")
    assert not isinstance(info.value, InputError)


def test_a_string_naming_an_existing_file_is_text_for_encode_texts(pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ballade.mid").write_bytes(b"MThd\xff\xfe binary")
    (tmp_path / "notes.txt").write_text("a calm chorale\n", encoding="utf-8")
    strings = ["ballade.mid", "notes.txt", str(tmp_path / "notes.txt")]
    got = pipeline.encode_texts(strings)
    model = pipeline.model
    for string, row in zip(strings, got, strict=True):
        (expected,) = model.embed_text_ids([pipeline.tokenizer.encode(string)])
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-5)
    assert not np.allclose(got[1], pipeline.encode_files(["notes.txt"])[0], atol=1e-3)
    with pytest.raises(InputError) as info:  # the same name through encode_files is the file
        pipeline.encode_files(["ballade.mid"])
    assert info.value.path == "ballade.mid"
    with pytest.raises(TypeError):  # one string is not a list of texts (nor of characters)
        pipeline.encode_texts("waltz")
    with pytest.raises(TypeError):
        pipeline.encode_files(tmp_path / "notes.txt")


def test_any_iterable_of_inputs(pipeline, files):
    paths = [files / "chorale.abc", files / "desc.txt"]
    np.testing.assert_allclose(
        pipeline.encode_files(x for x in paths), pipeline.encode_files(paths), atol=1e-6
    )
    texts = ("a melancholy waltz", "a fugue")
    np.testing.assert_allclose(
        pipeline.encode_texts(iter(texts)), pipeline.encode_texts(list(texts)), atol=1e-6
    )


def test_a_progress_bar_changes_nothing_but_stderr(pipeline, capsys):
    texts = ["a melancholy waltz", "a fugue", "a reel"]
    quiet = pipeline.encode_texts(texts)
    assert capsys.readouterr().err == ""
    np.testing.assert_allclose(pipeline.encode_texts(texts, show_progress=True), quiet, atol=1e-6)
    err = capsys.readouterr().err
    assert "encode" in err and "3/3" in err


def test_a_modality_that_the_file_does_not_have_is_an_input_error(pipeline, files):
    assert pipeline.prepare_file(files / "chorale.abc", "symbolic").modality == "symbolic"
    with pytest.raises(InputError) as info:
        pipeline.encode_files([files / "chorale.abc"], modality="audio")
    assert info.value.path.endswith("chorale.abc") and "symbolic" in info.value.reason


def test_mert_feature_shapes(pipeline, tmp_path):
    rows = np.random.default_rng(2).standard_normal((6, 32)).astype(np.float32)
    np.save(tmp_path / "official.npy", rows[None])  # (1, n, 768) as the official extractor writes
    np.save(tmp_path / "plain.npy", rows)  # (n, 768)
    np.save(tmp_path / "layers.npy", np.stack([rows] * 13))  # (13, n, 768): one array per layer
    official, plain = pipeline.encode_files([tmp_path / "official.npy", tmp_path / "plain.npy"])
    np.testing.assert_allclose(official, plain, atol=1e-6)
    with pytest.raises(InputError) as info:
        pipeline.encode_files([tmp_path / "layers.npy"])
    assert info.value.path.endswith("layers.npy") and "(13, 6, 32)" in info.value.reason


def test_a_missing_tower_is_an_input_error_naming_model_and_tower(tmp_path):
    import torch

    from clamp3.config import load_preset

    config = load_preset("tiny")
    config.name, config.audio, config.text = "tiny-symbolic-only", None, None
    torch.manual_seed(0)
    symbolic_only = Clamp3Pipeline(Clamp3Model(config))
    np.save(tmp_path / "feat.npy", np.ones((1, 3, 32), np.float32))
    with pytest.raises(InputError) as info:
        symbolic_only.encode_files([tmp_path / "feat.npy"])
    assert info.value.path.endswith("feat.npy") and "no audio tower" in info.value.reason
    with pytest.raises(InputError) as info:
        symbolic_only.encode_texts(["a waltz"])
    assert info.value.path == "'a waltz'" and "'tiny-symbolic-only' has no text tower" in info.value.reason


class _Frontend:
    """Records where the pipeline moves it."""

    def __init__(self):
        self.devices = []

    def to(self, device):
        self.devices.append(str(device))
        return self


def test_the_pipeline_moves_model_and_audio_frontend_together(tiny_model_dir):
    import torch

    pipeline = Clamp3Pipeline.from_pretrained(tiny_model_dir)
    assert pipeline.audio_frontend is not None  # the tiny model's log-mel front-end, loaded now
    frontend = _Frontend()
    pipeline.audio_frontend = frontend
    assert pipeline.to("cpu") is pipeline and frontend.devices == ["cpu"]
    pipeline.to("meta")  # a device without data: tensors really move (no copy on this machine)
    assert pipeline.model.device == torch.device("meta") and pipeline.device == torch.device("meta")
    pipeline.model.require("text")  # a tower built after the move lands there too
    assert {p.device.type for p in pipeline.model.parameters()} == {"meta"}
    assert frontend.devices == ["cpu", "meta"]


def test_mert_follows_the_pipeline_to_a_device(tiny_mert_dir):
    import torch

    from clamp3.audio import MertExtractor
    from clamp3.config import load_preset

    mert = MertExtractor.from_pretrained(tiny_mert_dir)  # its own copy: moved to meta, it is spent
    pipeline = Clamp3Pipeline(Clamp3Model(load_preset("tiny"), modalities=()), audio_frontend=mert)
    pipeline.to("meta")
    assert {p.device.type for p in mert.model.parameters()} == {"meta"}
    assert mert.device == torch.device("meta") and pipeline.device == torch.device("meta")
