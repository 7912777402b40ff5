"""Architecture configuration: one dataclass per tower and one for the joint model.

Only architecture and the settings the preprocessors need live here; training settings live in
``clamp3.train.config``. Named presets are JSON files in ``clamp3/presets`` (``saas``, ``c2``,
``clamp2``, ``m3``, ``mini``, ``tiny``) and load with :func:`load_preset`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clamp3.utils.typed import build

MODALITIES = ("text", "symbolic", "audio")


@dataclass
class EncoderConfig:
    """A BERT-style post-LayerNorm transformer encoder (the body of every tower).

    ``max_positions`` is the number of learned absolute positions; the tower's segment length
    (the official ``MAX_TEXT_LENGTH`` / ``PATCH_LENGTH`` / ``MAX_AUDIO_LENGTH``) is set on the tower.
    """

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1


@dataclass
class TextTowerConfig:
    """XLM-RoBERTa text encoder (official: ``FacebookAI/xlm-roberta-base``).

    ``tokenizer`` names a hub repository holding ``tokenizer.json`` or is ``"local"`` when the
    tokenizer files are saved next to the weights (trained presets such as ``mini``).
    Token ids follow XLM-R: ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3.
    """

    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(max_positions=514, type_vocab_size=1, layer_norm_eps=1e-5)
    )
    vocab_size: int = 250002
    pad_token_id: int = 1
    segment_length: int = 128
    tokenizer: str = "FacebookAI/xlm-roberta-base"


@dataclass
class SymbolicTowerConfig:
    """M3 patch encoder: one-hot (64 x num_classes) -> Linear -> BERT over patches.

    The patch width (64 characters) is fixed by the M3 patch format
    (:data:`clamp3.preprocess.patches.PATCH_SIZE`), so it is not a setting.

    ``strip_default_length`` drops every ``"L:1/8\\n"`` before patching (CLaMP 3 and M3 do,
    CLaMP 2 does not). ``mtf_drop_sysex`` selects the CLaMP 2 MTF variant, which also drops
    ``sysex`` and ``sequencer_specific`` messages.
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    num_classes: int = 128
    segment_length: int = 512
    strip_default_length: bool = True
    mtf_drop_sysex: bool = False


@dataclass
class AudioTowerConfig:
    """BERT over audio feature rows (one row per 5-second window) with two zero rows as BOS/EOS.

    ``frontend`` names the feature extractor whose rows the tower was trained on:
    ``"mert-v1-95m"`` (official) or ``"logmel"`` (the offline mini front-end).
    """

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(max_positions=128))
    feature_dim: int = 768
    segment_length: int = 128
    frontend: str = "mert-v1-95m"


@dataclass
class Clamp3Config:
    """The joint model. A tower set to ``None`` does not exist in this model (CLaMP 2 has no
    audio tower; M3 has only the symbolic one). ``projection`` False means the pooled
    features are returned unprojected (M3, which has no projection layers)."""

    name: str = "custom"
    text: TextTowerConfig | None = field(default_factory=TextTowerConfig)
    symbolic: SymbolicTowerConfig | None = field(default_factory=SymbolicTowerConfig)
    audio: AudioTowerConfig | None = field(default_factory=AudioTowerConfig)
    projection_dim: int = 768
    projection: bool = True

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def tower(self, modality: str) -> TextTowerConfig | SymbolicTowerConfig | AudioTowerConfig:
        cfg = getattr(self, modality, None) if modality in MODALITIES else None
        if cfg is None:
            raise ValueError(
                f"model {self.name!r} has no {modality!r} tower (it has: {', '.join(self.modalities)})"
            )
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clamp3Config:
        """A config from its JSON object: ``ValueError`` naming the field for an unknown field
        or a value of the wrong type (:func:`clamp3.utils.typed.build`)."""
        data = dict(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        towers = {
            "text": TextTowerConfig,
            "symbolic": SymbolicTowerConfig,
            "audio": AudioTowerConfig,
        }
        for key, tower_cls in towers.items():
            if isinstance(data.get(key), dict):
                data[key] = _tower_from_dict(tower_cls, data[key], f"model config {key}")
        return build(cls, data, "model config")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Clamp3Config:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# Keys that earlier versions wrote into config.json but nothing read: the text tower's XLM-R
# ids (the tower and tokenizer fix <s> = 0, </s> = 2) and the symbolic tower's patch width
# (the patch format fixes 64). A saved config holding one of them still loads when the value is
# the one this package implements; any other value describes a model it cannot run, so it is
# refused rather than silently ignored.
RETIRED_KEYS: dict[type, dict[str, Any]] = {
    TextTowerConfig: {"bos_token_id": 0, "eos_token_id": 2},
    SymbolicTowerConfig: {"patch_size": 64},
}


def _tower_from_dict(tower_cls: type, data: dict[str, Any], where: str) -> Any:
    data = dict(data)
    for key, supported in RETIRED_KEYS.get(tower_cls, {}).items():
        value = data.pop(key, supported)
        if value != supported:
            raise ValueError(
                f"{tower_cls.__name__}.{key} must be {supported} (the only value clamp3 supports), got {value!r}"
            )
    return build(tower_cls, data, where)


def list_presets() -> list[str]:
    files = resources.files("clamp3.presets").iterdir()
    return sorted(f.name[: -len(".json")] for f in files if f.name.endswith(".json"))


def load_preset(name: str) -> Clamp3Config:
    """Return the named architecture preset (``saas``, ``c2``, ``clamp2``, ``m3``, ``mini``, ``tiny``)."""
    path = resources.files("clamp3.presets") / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(list_presets())}")
    return Clamp3Config.from_dict(json.loads(path.read_text(encoding="utf-8")))
