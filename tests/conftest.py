"""Shared fixtures. Full-size deterministic weights are generated once per test session into a
temporary directory (about 1.8 GB for CLaMP 3) and shared by every parity test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

PARITY = Path(os.environ.get("CLAMP3_PARITY_DIR", Path(__file__).resolve().parents[2] / "shared" / "parity"))

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"parity fixtures not found at {PARITY} (set CLAMP3_PARITY_DIR)")
    return PARITY


@pytest.fixture(scope="session")
def parity_checkpoint(parity_dir, tmp_path_factory) -> Path:
    """The CLaMP 3 recipe weights as an official-format ``.pth`` (``{"model": ..., "epoch": 0}``)."""
    from clamp3.testing import deterministic_state_dict, read_key_list, write_official_checkpoint

    state = deterministic_state_dict(read_key_list(parity_dir / "keys" / "clamp3_model.json"))
    path = tmp_path_factory.mktemp("parity_weights") / "weights_clamp3_saas_parity.pth"
    write_official_checkpoint(path, state)
    return path


@pytest.fixture(scope="session")
def parity_model(parity_checkpoint):
    from clamp3 import Clamp3Model

    return Clamp3Model.from_pretrained(parity_checkpoint)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A small Unigram tokenizer with XLM-R special ids, trained in a second on a few sentences."""
    from clamp3.tokenizer import train_tokenizer

    sentences = [
        "a melancholy waltz for solo piano",
        "ein fröhliches Volkslied in G-Dur",
        "une fugue pour orgue en ré mineur",
        "una canción de cuna tranquila",
        "一首欢快的民歌",
        "string quartet in four movements, slow second movement",
        "Bach chorale harmonisation for four voices",
    ] * 20
    return train_tokenizer(sentences, vocab_size=200)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A saved tiny-preset model (seeded random weights + tokenizer) in a directory."""
    from clamp3 import Clamp3Model

    model = Clamp3Model.from_preset("tiny", seed=0)
    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tiny_tokenizer.save(out)
    return out


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
