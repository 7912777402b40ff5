"""One hub fetch: cache first, one probe, one offline error; where a tokenizer is looked for."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from clamp3 import Clamp3Model, Clamp3Pipeline
from clamp3.tokenizer import TOKENIZER_FILE, TokenizerNotFound


@pytest.fixture()
def offline(monkeypatch, tmp_path):
    """No network and an empty cache; counts the cache look-ups of clamp3.hub."""
    from huggingface_hub import constants

    import clamp3.hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(clamp3.hub, "hub_unreachable", lambda *a, **k: pytest.fail("probed while offline"))
    calls = []
    real = clamp3.hub.cached
    monkeypatch.setattr(
        clamp3.hub, "cached", lambda repo, name: calls.append((repo, name)) or real(repo, name)
    )
    return calls


def _official_tiny(directory, seed: int = 0):
    """A tiny model saved as an official-format .pth in ``directory``."""
    import torch

    from clamp3.testing import write_official_checkpoint

    torch.manual_seed(seed)
    state = Clamp3Model.from_preset("tiny").state_dict()
    directory.mkdir(parents=True, exist_ok=True)
    return write_official_checkpoint(directory / "weights_clamp3_tiny.pth", state)


def _hub_tokenizer_config(name: str = "no-such-org/no-such-tokenizer"):
    from clamp3.config import load_preset

    config = load_preset("tiny")
    config.text.tokenizer = name
    return config


def test_a_folder_of_texts_without_a_tokenizer_fails_once_and_fast(tmp_path, offline):
    from clamp3.embed_folder import embed_folder

    src = tmp_path / "texts"
    src.mkdir()
    for i in range(38):
        (src / f"t{i:02d}.txt").write_text(f"a calm chorale number {i}\n", encoding="utf-8")
    model = Clamp3Model.from_pretrained(_official_tiny(tmp_path / "weights"), config=_hub_tokenizer_config())
    start = time.perf_counter()
    with pytest.raises(TokenizerNotFound) as info:
        embed_folder(model, src, tmp_path / "out", show_progress=False)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "no-such-org/no-such-tokenizer" in message and TOKENIZER_FILE in message
    assert f"hf download no-such-org/no-such-tokenizer {TOKENIZER_FILE}" in message
    assert offline == [("no-such-org/no-such-tokenizer", TOKENIZER_FILE)]  # looked up once, not per file
    assert not list((tmp_path / "out").glob("*.npy"))


def _model_copy(tiny_model_dir, tmp_path):
    import shutil

    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def _embed_texts(tmp_path, model_dir, capsys) -> tuple[int, str]:
    """``clamp3 embed`` of five small ``.txt`` files into ``tmp_path/out`` -> (exit status, stderr)."""
    from clamp3.cli.main import main

    src = tmp_path / "texts"
    src.mkdir()
    for i in range(5):
        (src / f"t{i}.txt").write_text(f"a waltz {i}\n", encoding="utf-8")
    status = main(["embed", str(src), str(tmp_path / "out"), "--model", str(model_dir), "--no-progress"])
    return status, capsys.readouterr().err


def test_the_cli_reports_a_missing_tokenizer_in_one_line(tmp_path, offline, capsys, tiny_model_dir):
    model_dir = _model_copy(tiny_model_dir, tmp_path)
    (model_dir / TOKENIZER_FILE).unlink()
    _hub_tokenizer_config().save(model_dir / "config.json")
    status, err = _embed_texts(tmp_path, model_dir, capsys)
    assert status == 2 and err.startswith("error: the text tokenizer") and err.count("\n") == 1, err
    assert len(offline) == 1


def test_a_corrupt_tokenizer_stops_embed_once_in_one_line(tmp_path, capsys, tiny_model_dir):
    """A broken tokenizer.json is the model's fault, not each text's: one line naming it, exit 2."""
    model_dir = _model_copy(tiny_model_dir, tmp_path)
    (model_dir / TOKENIZER_FILE).write_text('{"model": {"type": "Unigram", "vocab": [', encoding="utf-8")
    status, err = _embed_texts(tmp_path, model_dir, capsys)
    out = tmp_path / "out"
    assert status == 2 and err.startswith(f"error: {model_dir / TOKENIZER_FILE}: not a usable") and err.count("\n") == 1, err
    errors = out / "errors.jsonl"
    assert not list(out.glob("*.npy")) and (not errors.is_file() or not errors.read_text().strip())


def test_another_models_tokenizer_is_refused_once_in_one_line(tmp_path, capsys, tiny_model_dir):
    """A tokenizer whose ids pass the text tower's vocabulary (1000 in the tiny preset) is named
    when it loads; each text failed with torch's 'index out of range in self' before."""
    import random
    import string

    from clamp3.tokenizer import train_tokenizer

    model_dir = _model_copy(tiny_model_dir, tmp_path)
    words = random.Random(1)
    sentences = [
        " ".join("".join(words.choice(string.ascii_lowercase) for _ in range(7)) for _ in range(12))
        for _ in range(2000)
    ]
    big = train_tokenizer(sentences, vocab_size=1500)
    assert big.vocab_size > Clamp3Model.from_pretrained(model_dir).config.tower("text").vocab_size
    big.save(model_dir)
    status, err = _embed_texts(tmp_path, model_dir, capsys)
    assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: {model_dir / TOKENIZER_FILE}: gives ids up to")
    assert "this is another model's tokenizer" in err


def test_token_and_patch_ids_are_checked_against_what_the_towers_hold(tiny_model_dir):
    model = Clamp3Model.from_pretrained(tiny_model_dir)
    vocab = model.config.tower("text").vocab_size
    for ids, named in (([0, vocab, 2], f"got {vocab}"), ([0, -3, 2], "got -3"), ([0, 5.5, 2], "integers")):
        with pytest.raises(ValueError, match=named):
            model.embed_text_ids([ids])
    with pytest.raises(ValueError, match="patch ids must be integers"):
        model.embed_patches([np.full((3, 64), 1.5)])
    assert model.embed_text_ids([[0.0, 5.0, 2.0]])[0].shape == (32,)  # whole numbers in floats pass


def test_the_tokenizer_beside_an_official_checkpoint_is_found(tmp_path, tiny_tokenizer):
    pth = _official_tiny(tmp_path / "weights")
    tiny_tokenizer.save(pth.parent)  # where the offline error advises putting it
    model = Clamp3Model.from_pretrained(pth, config="tiny")
    assert model.asset_directory == pth.parent and model.source_directory is None
    pipeline = Clamp3Pipeline(model)
    assert pipeline.tokenizer.encode("a waltz") == tiny_tokenizer.encode("a waltz")
    (vector,) = pipeline.encode_texts(["a waltz"])
    assert vector.shape == (32,) and np.isfinite(vector).all()
    out = model.save_pretrained(tmp_path / "converted")  # the tokenizer travels with the weights
    assert (out / TOKENIZER_FILE).read_text() == (pth.parent / TOKENIZER_FILE).read_text()


def test_the_local_tokenizer_error_names_the_checkpoint_folder(tmp_path):
    pth = _official_tiny(tmp_path / "weights")
    pipeline = Clamp3Pipeline(Clamp3Model.from_pretrained(pth, config="tiny"))
    with pytest.raises(TokenizerNotFound, match=str(pth.parent)):
        pipeline.encode_texts(["a waltz"])
    with pytest.raises(TokenizerNotFound):  # remembered: the same error again, no new search
        _ = pipeline.tokenizer


def test_official_weights_and_mert_share_the_offline_message(offline):
    from clamp3.audio.mert import resolve_mert_files
    from clamp3.checkpoints import download_official
    from clamp3.utils.errors import CheckpointError

    with pytest.raises(CheckpointError) as weights:
        download_official("c2")
    with pytest.raises(CheckpointError) as mert:
        resolve_mert_files("m-a-p/MERT-v1-95M")
    for message, repo in ((str(weights.value), "sander-wood/clamp3"), (str(mert.value), "m-a-p/MERT-v1-95M")):
        assert "is not in the Hugging Face cache" in message and "HF_HUB_OFFLINE is set" in message
        assert f"hf download {repo} " in message and f"https://huggingface.co/{repo}/resolve/main/" in message
