"""Config keys earlier versions wrote but nothing read: old config.json files still load."""

from __future__ import annotations

import json

import pytest

from clamp3.config import Clamp3Config, list_presets, load_preset


def _old_dict(**overrides: int) -> dict:
    data = load_preset("tiny").to_dict()
    data["text"].update(bos_token_id=0, eos_token_id=2)
    data["symbolic"]["patch_size"] = 64
    for key, value in overrides.items():
        tower = "symbolic" if key == "patch_size" else "text"
        data[tower][key] = value
    return data


def test_every_preset_loads_without_the_retired_keys():
    for name in list_presets():
        data = load_preset(name).to_dict()
        for tower in ("text", "symbolic"):
            assert not {"bos_token_id", "eos_token_id", "patch_size"} & set(data.get(tower) or {})


def test_an_old_config_with_the_supported_values_loads(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_old_dict()), encoding="utf-8")
    assert Clamp3Config.load(path) == load_preset("tiny")


@pytest.mark.parametrize(("key", "value"), [("patch_size", 32), ("bos_token_id", 5), ("eos_token_id", 0)])
def test_an_old_config_with_another_value_is_refused(key, value):
    with pytest.raises(ValueError, match=key):
        Clamp3Config.from_dict(_old_dict(**{key: value}))
