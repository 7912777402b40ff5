"""Training config: stage presets, the SAAS recipe, overrides, validation, the lr schedule."""

from __future__ import annotations

import json
import re

import pytest

from clamp3.train.config import (
    config_from_dict,
    list_stage_presets,
    load_train_config,
    recipe_stages,
    stage_from_dict,
)
from clamp3.train.schedule import lr_at
from clamp3.utils.errors import InputError


def test_saas_recipe_order_and_frozen_towers():
    stages = recipe_stages("saas")
    assert [(s.modality, s.train) for s in stages] == [
        ("symbolic", ["text", "symbolic"]),
        ("audio", ["audio"]),
        ("audio", ["text", "audio"]),
        ("symbolic", ["symbolic"]),
    ]
    # Official settings (§4.3): symbolic 5e-5 / global 1024, audio 1e-5 / global 2048, 1000 warmup.
    assert [(s.optim.lr, s.optim.batch_size) for s in stages] == [
        (5e-5, 1024),
        (1e-5, 2048),
        (1e-5, 2048),
        (5e-5, 1024),
    ]
    assert all(s.optim.warmup_steps == 1000 and s.optim.epochs == 100 for s in stages)
    assert all(s.contrastive.logit_scale == 1.0 and not s.contrastive.normalize for s in stages)


def test_every_stage_preset_loads():
    names = list_stage_presets()
    assert {"symbolic", "audio", "audio-text-frozen", "symbolic-text-frozen", "m3"} <= set(names)
    m3 = stage_from_dict("m3")
    assert (m3.task, m3.optim.lr, m3.m3.mask_ratio) == ("m3", 1e-4, 0.45)


def test_overrides_merge_into_the_preset(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps(
            {
                "output_dir": "out",
                "init_from": "saas",
                "train_data": "data/train.jsonl",
                "stages": [{"preset": "audio", "name": "ft", "optim": {"lr": 3e-5, "epochs": 2}}],
            }
        )
    )
    config = load_train_config(path)
    stage = config.stages[0]
    assert (stage.name, stage.optim.lr, stage.optim.epochs, stage.optim.batch_size) == ("ft", 3e-5, 2, 2048)
    assert config.output_dir == str(tmp_path / "out")
    assert config.train_data["audio"] == str(tmp_path / "data/train.jsonl")
    assert config.init_from == "saas"  # an official tag stays a tag
    # saved by Notepad (a byte-order mark) it is the same config; in Latin-1 one error naming the file
    text = path.read_text(encoding="utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_train_config(path) == config
    path.write_bytes(text.replace('"out"', '"sortie é"').encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8 text") as info:
        load_train_config(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stages": [{"preset": "audio", "optim": {"lrr": 1}}]}, "unknown fields"),
        ({"stages": [{"preset": "audio", "train": ["symbolic"]}]}, "'train' must name"),
        ({"stages": ["nope"]}, "unknown stage preset"),
        ({"stages": ["m3", "audio"]}, "separate runs"),
        ({"precision": "fp8"}, "precision"),
        # A value of the wrong JSON type is named with the field, before any check compares it.
        (
            {"stages": [{"preset": "audio", "optim": {"lr": "1e-4"}}]},
            "stage 'audio' optim: lr must be a number, got '1e-4'",
        ),
        ({"stages": [{"preset": "audio", "optim": {"epochs": 2.5}}]}, "epochs must be an integer, got 2.5"),
        ({"stages": [{"preset": "audio", "optim": {"betas": [0.9]}}]}, "betas must be a list of 2 values"),
        ({"stages": [{"preset": "audio", "contrastive": {"packed": "yes"}}]}, "packed must be true or false"),
        ({"stages": [{"preset": "audio", "train": "audio"}]}, "train must be a list of strings"),
        ({"stages": [{"preset": "audio", "optim": 3}]}, "optim must be a JSON object, got 3"),
        ({"stages": [{"optim": {"lr": 1e-4}}]}, "missing fields ['name']"),
        ({"seed": "42"}, "training config: seed must be an integer"),
        # Values that would train nothing, or not at all, are refused before the data is read.
        ({"stages": [{"preset": "audio", "optim": {"epochs": 0}}]}, "epochs and max_steps must be at least"),
        ({"stages": [{"preset": "audio", "optim": {"max_steps": 0}}]}, "epochs and max_steps must be at"),
        ({"stages": [{"preset": "audio", "optim": {"betas": [0.9, 1.5]}}]}, "betas must lie in"),
        ({"stages": [{"preset": "audio", "contrastive": {"logit_scale": 0}}]}, "logit_scale be positive"),
        ({"stages": [{"preset": "m3", "m3": {"mask_p": 0.95}}]}, "summing to at most 1"),
        ({"eval_every": 0}, "must be at least 1"),
        ({"num_workers": -1}, "num_workers must not be negative"),
    ],
)
def test_bad_configs_say_why(tmp_path, change, message):
    data = {"output_dir": "o", "model": "tiny", "train_data": "t.jsonl", "recipe": "saas"}
    if "stages" in change:
        data.pop("recipe")
    data.update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        config_from_dict(data, tmp_path)


def test_warmup_then_constant():
    lrs = [lr_at(s, 1e-3, warmup_steps=4, total_steps=10) for s in range(10)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lrs[4:] == [1e-3] * 6
    assert lr_at(0, 1e-3, warmup_steps=0, total_steps=10) == 1e-3


def test_warmup_then_cosine_to_min_lr():
    lrs = [lr_at(s, 1.0, 2, 12, "cosine", min_lr=0.1) for s in range(13)]
    assert lrs[1] == 1.0 and lrs[2] == 1.0
    assert lrs[7] == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert lrs[12] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
