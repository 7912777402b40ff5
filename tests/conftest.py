"""Shared fixtures. Full-size deterministic weights are generated once per test session into a
temporary directory (about 1.8 GB for CLaMP 3) and shared by every parity test."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clamp3.testing import find_parity_dir

PARITY = find_parity_dir()

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _restore_log_levels():
    """A CLI run (``main([...])``, e.g. with ``--quiet``) sets the root and clamp3 log levels;
    every test starts from the levels the session had."""
    loggers = [logging.getLogger(name) for name in ("", "clamp3")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


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


# ----------------------------------------------------------------------------- audio (issue 5)
TINY_MERT_CONFIG = {
    # MERT-v1-95M's structure (same conv kernels and strides: 75 frames/s at 24 kHz, GroupNorm
    # first conv, post-LayerNorm encoder) at a size that runs in milliseconds.
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "conv_dim": [8, 8, 8, 8, 8, 8, 8],
    "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2],
    "conv_bias": False,
    "feat_extract_norm": "group",
    "feat_proj_layer_norm": True,
    "do_stable_layer_norm": False,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "feat_extract_activation": "gelu",
    "mask_time_prob": 0.05,
    "model_type": "mert_model",
    "architectures": ["MERTModel"],
    "sample_rate": 24000,
}


def write_mert_folder(out: Path, config: dict, state_keys, legacy_names: bool = True) -> Path:
    """A MERT folder in the hub layout (config.json + pytorch_model.bin) with recipe weights.

    ``state_keys`` is ``[(key, shape), ...]`` under the checkpoint names (``weight_g``/``weight_v``);
    ``legacy_names=False`` stores the weight norm under the parametrization names instead.
    """
    import json

    from clamp3.testing import deterministic_state_dict

    state = deterministic_state_dict(state_keys)
    if not legacy_names:
        state = {
            k.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace(
                "conv.weight_v", "conv.parametrizations.weight.original1"
            ): v
            for k, v in state.items()
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    torch.save(state, out / "pytorch_model.bin")
    return out


def tiny_mert_keys() -> list[tuple[str, list[int]]]:
    """Checkpoint key names and shapes of TINY_MERT_CONFIG (legacy weight-norm names)."""
    from clamp3.audio.mert import build_mert_model

    model = build_mert_model(dict(TINY_MERT_CONFIG))
    keys = []
    for k, v in model.state_dict().items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        keys.append((k.replace("parametrizations.weight.original1", "weight_v"), list(v.shape)))
    return keys


@pytest.fixture(scope="session")
def mert_parity_dir(parity_dir, tmp_path_factory) -> Path:
    """MERT-v1-95M config + recipe weights (checkpoint key names), as the parity set was made."""
    import json

    from clamp3.testing import read_key_list

    config = json.loads((parity_dir / "keys" / "mert_v1_95m_config.json").read_text())
    keys = read_key_list(parity_dir / "keys" / "mert_v1_95m_checkpoint.json")
    return write_mert_folder(tmp_path_factory.mktemp("mert_parity"), config, keys)


@pytest.fixture(scope="session")
def mert_parity_extractor(mert_parity_dir):
    from clamp3.audio import MertExtractor

    return MertExtractor.from_pretrained(mert_parity_dir)


@pytest.fixture(scope="session")
def tiny_mert_dir(tmp_path_factory) -> Path:
    return write_mert_folder(tmp_path_factory.mktemp("tiny_mert"), TINY_MERT_CONFIG, tiny_mert_keys())


@pytest.fixture(scope="session")
def tiny_mert(tiny_mert_dir):
    from clamp3.audio import MertExtractor

    return MertExtractor.from_pretrained(tiny_mert_dir, batch_size=3)


@pytest.fixture()
def one_thread():
    """torch on one thread for the test (train tests: tiny models train several times faster
    on one thread than on two busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_tokenizer):
    """16 aligned items (ABC + audio features + text) and the tiny tokenizer, in one folder."""
    from clamp3.train.toy import write_toy_pairs

    root = tmp_path_factory.mktemp("toy")
    write_toy_pairs(root, n=16, feature_dim=32)
    tiny_tokenizer.save(root)
    return root


# ----------------------------------------------------------------------------- images (issue 20)
CAPTION_WORDS = [
    "a",
    "an",
    "the",
    "sheet",
    "music",
    "score",
    "page",
    "of",
    "piano",
    "violin",
    "notes",
    "with",
    "black",
    "white",
    "old",
    "printed",
    "handwritten",
    "hand",
    "holding",
    "photo",
    "close",
    "up",
    "book",
    "on",
    "table",
]


def write_tiny_blip(out: Path, seed: int = 0) -> Path:
    """A randomly initialised BLIP captioner (the official classes at toy size) saved as a hub
    folder: config, weights, a 32 x 32 PIL image processor and a WordPiece tokenizer built
    from ``CAPTION_WORDS``. No download; it captions an image in milliseconds, and different
    images get different captions."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor, PreTrainedTokenizerFast

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import BlipImageProcessor as ImageProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {token: i for i, token in enumerate(specials + list(CAPTION_WORDS))}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[DEC]",
    )
    ids = {"bos_token_id": 5, "pad_token_id": 0, "sep_token_id": 3, "eos_token_id": 3}
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
            **ids,
        ),
        vision_config=dict(
            hidden_size=32,
            image_size=32,
            patch_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
        ),
        projection_dim=32,
    )
    model = BlipForConditionalGeneration(config).eval()
    torch.manual_seed(seed)
    with torch.no_grad():  # at the default std 0.02 every image gets the same caption
        for weight in model.parameters():
            if weight.dim() >= 2:
                weight.normal_(0.0, 0.2)
        # No special token is ever generated: captions are 20 words, never empty.
        model.text_decoder.cls.predictions.bias[: len(specials)] = -1e4
    processor = BlipProcessor(
        image_processor=ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    return write_tiny_blip(tmp_path_factory.mktemp("tiny_blip"))


def write_image(path: Path, seed: int, size: tuple[int, int] = (48, 40), fmt: str | None = None) -> Path:
    """A random-noise RGB image (width, height) in the format of ``path``'s extension."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_images(folder: Path) -> list[Path]:
    """Four small noise images, one of each accepted extension, two in a sub-folder."""
    return [
        write_image(folder / "scan.png", seed=1),
        write_image(folder / "photos" / "page.jpg", seed=2),
        write_image(folder / "photos" / "cover.jpeg", seed=3, size=(30, 60)),
        write_image(folder / "web.webp", seed=4),
    ]


@pytest.fixture(scope="session")
def image_pipeline(tiny_model_dir, tiny_blip_dir):
    """The tiny model in a pipeline whose captioner is the tiny BLIP (loaded on first image)."""
    from clamp3 import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

    return Clamp3Pipeline(Clamp3Model.from_pretrained(tiny_model_dir), captioner=tiny_blip_dir)


@pytest.fixture(scope="session")
def image_index(tmp_path_factory, tiny_model_dir, tiny_blip_dir) -> tuple[Path, Path]:
    """Two texts and the four images of ``make_images``, embedded (images as their captions,
    through ``clamp3 embed --captioner DIR``) and indexed: (media folder, index folder)."""
    from clamp3.cli.main import main
    from clamp3.index import build_index

    root = tmp_path_factory.mktemp("image_index")
    media = root / "media"
    make_images(media)
    for i, text in enumerate(["a melancholy waltz for solo piano", "ein fröhliches Volkslied"]):
        (media / f"text{i}.txt").write_text(text, encoding="utf-8")
    args = ["embed", str(media), str(root / "emb"), "--model", str(tiny_model_dir)]
    assert main([*args, "--captioner", str(tiny_blip_dir), "--no-progress"]) == 0
    build_index(root / "emb", root / "idx", progress=False)
    return media, root / "idx"
