"""Starting weights from official-format files at a size other than the official one."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from clamp3 import Clamp3Model
from clamp3.testing import write_official_checkpoint
from clamp3.train import config_from_dict, train
from clamp3.train.initialization import load_stage_model
from clamp3.train.m3 import build_decoder, m3_model_config
from clamp3.train.toy import write_toy_pairs
from clamp3.utils.errors import CheckpointError

# Tiny models train several times faster on one thread than on two busy cores.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def donor() -> dict[str, torch.Tensor]:
    """A tiny model's weights under the official CLaMP 3 names (seed 7, not the run's 42)."""
    return {k: v.clone() for k, v in Clamp3Model.from_preset("tiny", seed=7).state_dict().items()}


def _official(tmp_path, donor, flavour: str):
    """Write ``donor`` as an official CLaMP 3, CLaMP 2 (``music_*``, no audio) or M3 (``encoder.*``
    plus a decoder) checkpoint."""
    if flavour == "clamp3":
        state = dict(donor)
    elif flavour == "clamp2":
        state = {
            k.replace("symbolic_", "music_", 1): v for k, v in donor.items() if not k.startswith("audio_")
        }
    else:
        state = {
            "encoder." + k[len("symbolic_model.") :]: v
            for k, v in donor.items()
            if k.startswith("symbolic_model.")
        }
        torch.manual_seed(3)
        decoder = build_decoder(m3_model_config(Clamp3Model.from_preset("tiny").config).tower("symbolic"))
        state.update({f"decoder.{k}": v for k, v in decoder.state_dict().items()})
    return write_official_checkpoint(tmp_path / f"weights_tiny_{flavour}.pth", state)


def _run(tmp_path, tiny_tokenizer, stages, **start):
    root = tmp_path / "data"
    jsonl = write_toy_pairs(root, n=12, feature_dim=32)
    tiny_tokenizer.save(root)
    data = {
        "output_dir": str(tmp_path / "run"),
        "tokenizer": str(root),
        "train_data": str(root / "abc") if stages[0] == "m3" else str(jsonl),
        "eval_fraction": 0.0,
        "show_progress": False,
        "stages": [{"preset": s, "optim": {"batch_size": 4, "max_steps": 1}} for s in stages],
    }
    return config_from_dict({**data, **start})


def _same(model_state: dict, donor: dict, prefixes: tuple[str, ...]) -> bool:
    keys = [k for k in donor if k.startswith(prefixes)]
    return bool(keys) and all(torch.equal(model_state[k], donor[k]) for k in keys)


def test_fine_tuning_starts_from_a_tiny_official_clamp3_file(tmp_path, tiny_tokenizer, donor):
    path = _official(tmp_path, donor, "clamp3")
    # It failed with "does not match the 'saas' architecture": the file was read at official size.
    best = train(_run(tmp_path, tiny_tokenizer, ["audio-text-frozen"], model="tiny", init_from=str(path)))
    after = load_file(best / "model.safetensors")
    assert _same(after, donor, ("text_", "symbolic_"))  # frozen in this stage: the file's weights
    assert not _same(after, donor, ("audio_proj",))  # trained


def test_a_tiny_clamp2_file_gives_text_and_symbolic_towers(tmp_path, tiny_tokenizer, donor):
    path = _official(tmp_path, donor, "clamp2")
    config = _run(tmp_path, tiny_tokenizer, ["symbolic"], model="tiny", init_from=str(path))
    model, _ = load_stage_model(config, config.stages[0], None, None)
    state = model.state_dict()
    assert _same(state, donor, ("text_", "symbolic_"))
    assert not _same(state, donor, ("audio_",))  # CLaMP 2 has none: the seeded preset's


def test_a_tiny_m3_file_seeds_the_symbolic_tower_and_m3_pretraining(tmp_path, tiny_tokenizer, donor):
    path = _official(tmp_path, donor, "m3")
    config = _run(tmp_path, tiny_tokenizer, ["symbolic"], model="tiny", init_symbolic_from=str(path))
    model, _ = load_stage_model(config, config.stages[0], None, None)
    assert _same(model.state_dict(), donor, ("symbolic_model.",))
    assert not _same(model.state_dict(), donor, ("text_",))

    # M3 pre-training continues from the file: encoder and decoder.
    config = _run(tmp_path, tiny_tokenizer, ["m3"], model="tiny", init_from=str(path))
    model, decoder = load_stage_model(config, config.stages[0], None, None)
    assert _same(model.state_dict(), donor, ("symbolic_model.",))
    file = torch.load(path, weights_only=True)["model"]
    assert all(
        torch.equal(decoder.state_dict()[k[len("decoder.") :]], v) for k, v in file.items() if "decoder" in k
    )
    assert train(config) is not None


def test_an_official_file_of_another_size_without_a_model_preset_says_what_to_add(
    tmp_path, tiny_tokenizer, donor
):
    path = _official(tmp_path, donor, "clamp3")
    config = _run(tmp_path, tiny_tokenizer, ["audio"], init_from=str(path))
    with pytest.raises(CheckpointError, match='"model"'):
        load_stage_model(config, config.stages[0], None, None)


def test_init_text_from_a_folder_seeds_the_text_tower(tmp_path, tiny_tokenizer, donor):
    folder = tmp_path / "xlmr"
    Clamp3Model.from_preset("tiny", seed=7).text_model.save_pretrained(folder)  # an XLM-R folder
    best = train(
        _run(tmp_path, tiny_tokenizer, ["audio-text-frozen"], model="tiny", init_text_from=str(folder))
    )
    after = load_file(best / "model.safetensors")
    text = {k: v for k, v in donor.items() if k.startswith("text_model.") and "pooler" not in k}
    assert text and all(torch.equal(after[k], v) for k, v in text.items())
    config = _run(tmp_path, tiny_tokenizer, ["audio"], model="tiny", init_text_from=str(tmp_path / "data"))
    with pytest.raises(CheckpointError, match=r"not an XLM-R model transformers can load \(OSError"):
        load_stage_model(config, config.stages[0], None, None)  # a folder without weights


def test_init_text_from_a_hub_id_offline_is_one_error_saying_what_to_download(
    tmp_path, tiny_tokenizer, monkeypatch
):
    """transformers alone retried the hub for ~25 s, then raised its OSError as a traceback."""
    from huggingface_hub import constants

    import clamp3.hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(clamp3.hub, "hub_unreachable", lambda *a, **k: pytest.fail("probed while offline"))
    hub_id = "FacebookAI/xlm-roberta-base"
    config = _run(tmp_path, tiny_tokenizer, ["audio"], model="tiny", init_text_from=hub_id)
    with pytest.raises(CheckpointError) as info:
        load_stage_model(config, config.stages[0], None, None)
    message = str(info.value)
    assert "`hf download FacebookAI/xlm-roberta-base config.json model.safetensors`" in message
    assert message.startswith("the text tower's starting weights (init_text_from): ") and "\n" not in message
