"""Training settings: a run (:class:`TrainConfig`) is a list of stages (:class:`StageConfig`).

Architecture lives in :mod:`clamp3.config`; everything here is about *how* to train. Stages are
named JSON presets in ``clamp3/train/stages`` (``symbolic``, ``audio``, ``audio-text-frozen``,
``symbolic-text-frozen``, ``m3``) and recipes in ``clamp3/train/recipes`` list stages in order
(``saas``: symbolic -> audio with text frozen -> audio -> symbolic with text frozen).

A run config is a JSON file; relative paths in it are relative to the file's folder::

    {"output_dir": "runs/ft", "init_from": "saas", "train_data": "data/train.jsonl",
     "stages": [{"preset": "symbolic", "optim": {"epochs": 3, "batch_size": 64}}]}

A stage entry is a preset name, or an object with an optional ``preset`` whose fields it
overrides (nested objects merge key by key). ``"recipe": "saas"`` expands to its stages.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from clamp3.utils.io import read_text
from clamp3.utils.typed import build

TASKS = ("contrastive", "m3")
SCHEDULES = ("constant", "cosine")
TRUNCATIONS = ("random", "head")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
BAD_ITEMS = ("skip", "fail")


@dataclass
class OptimConfig:
    """AdamW and its schedule. Defaults are the official audio-stage settings (§4.2, §4.3).

    ``batch_size`` is the *global* batch of one micro-step (all ranks together): the number of
    pairs that see each other as negatives in the contrastive loss. It must divide by the
    number of processes. ``grad_accum`` micro-steps make one optimizer step; ``warmup_steps``,
    ``max_steps`` and the schedule count optimizer steps. ``max_steps`` caps ``epochs``.
    """

    lr: float = 1e-5
    batch_size: int = 2048
    epochs: int = 100
    max_steps: int | None = None
    grad_accum: int = 1
    warmup_steps: int = 1000
    schedule: str = "constant"
    min_lr: float = 0.0
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float | None = None
    eval_batch_size: int | None = None


@dataclass
class ContrastiveConfig:
    """Text–music alignment settings; defaults are the official ones (§2.4, §3.3, §3.5).

    ``logit_scale`` multiplies the similarity matrix (the official 1, i.e. temperature 1);
    ``normalize`` L2-normalises features before it (the official does not, in training).
    ``truncation``: which window of a training text or music item longer than its tower's
    segment is kept: ``random`` (official: the head, the tail or a middle window, one of the
    three uniformly) or ``head`` (always the head, as evaluation does: the header fields of a
    score, its opening and a text's first tokens are then always seen).
    ``packed``: the towers run on each batch's real tokens only (``clamp3.towers.packed``; the
    same loss and gradients to float rounding, fewer FLOPs when lengths vary); False runs the
    transformers forward on the padded batch, as the official code does.
    """

    text_dropout: bool = True
    instrument_removal_p: float = 0.9
    logit_scale: float = 1.0
    normalize: bool = False
    truncation: str = "random"
    packed: bool = True


@dataclass
class M3Config:
    """M3 masked-patch reconstruction (§4.3): ``mask_ratio`` of each item's patches are
    selected; a selected patch becomes all-mask with ``mask_p``, has its characters shuffled
    with ``shuffle_p``, else is kept unchanged."""

    mask_ratio: float = 0.45
    mask_p: float = 0.8
    shuffle_p: float = 0.1
    decoder_layers: int = 3


@dataclass
class StageConfig:
    """One stage: which task, which towers learn (the rest are frozen), and the optimiser.

    ``modality`` is the music side of the pairs (``symbolic`` or ``audio``); ``train`` names the
    towers whose encoder and projection learn (``text``, ``symbolic``, ``audio``). The M3 task
    trains the symbolic encoder with its character decoder. ``group_by`` (contrastive stages):
    a record field, dotted for nested ones (``facts.collection``), whose value groups the
    records; each batch is then drawn from one group where it can be, so the in-batch negatives
    are hard ones (:class:`clamp3.train.data.BatchPlan`). None: batches are random (official).
    ``group_size`` (with ``group_by``; divides the batch): blocks of that many items from one
    group, several groups per batch, instead of whole batches from one group.
    """

    name: str
    task: str = "contrastive"
    modality: str = "symbolic"
    train: list[str] = field(default_factory=lambda: ["text", "symbolic"])
    optim: OptimConfig = field(default_factory=OptimConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    m3: M3Config = field(default_factory=M3Config)
    group_by: str | None = None
    group_size: int | None = None

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"stage {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if self.modality not in ("symbolic", "audio"):
            raise ValueError(f"stage {self.name!r}: modality must be 'symbolic' or 'audio'")
        if self.task == "m3" and (self.modality != "symbolic" or self.train != ["symbolic"]):
            raise ValueError(f"stage {self.name!r}: the m3 task trains the symbolic tower only")
        allowed = {"text", self.modality}
        if not self.train or not set(self.train) <= allowed:
            raise ValueError(
                f"stage {self.name!r}: 'train' must name towers used by a text-{self.modality} "
                f"stage ({sorted(allowed)}), got {self.train}"
            )
        self._validate_optim()
        if self.group_by is not None and (self.task != "contrastive" or not self.group_by.strip(".")):
            raise ValueError(f"stage {self.name!r}: group_by names a record field of a contrastive stage")
        size = self.group_size
        if size is not None and (self.group_by is None or size < 1 or self.optim.batch_size % size):
            raise ValueError(f"stage {self.name!r}: group_size needs group_by and must divide the batch size")
        if self.contrastive.truncation not in TRUNCATIONS:
            raise ValueError(f"stage {self.name!r}: truncation must be one of {TRUNCATIONS}")
        c = self.contrastive
        if not 0 <= c.instrument_removal_p <= 1 or not c.logit_scale > 0:
            raise ValueError(
                f"stage {self.name!r}: instrument_removal_p must lie in [0, 1] and logit_scale be positive"
            )
        m3 = self.m3
        if self.task == "m3" and not 0 < m3.mask_ratio <= 1:
            raise ValueError(f"stage {self.name!r}: mask_ratio must lie in (0, 1]")
        probabilities = m3.mask_p >= 0 and m3.shuffle_p >= 0 and m3.mask_p + m3.shuffle_p <= 1
        if not probabilities or m3.decoder_layers < 1:
            raise ValueError(
                f"stage {self.name!r}: m3 mask_p and shuffle_p must be probabilities summing to at most 1, "
                "decoder_layers at least 1"
            )

    def _validate_optim(self) -> None:
        opt, where = self.optim, f"stage {self.name!r}"
        if opt.schedule not in SCHEDULES:
            raise ValueError(f"{where}: schedule must be one of {SCHEDULES}")
        if opt.batch_size < 1 or opt.grad_accum < 1 or opt.lr <= 0 or opt.warmup_steps < 0:
            raise ValueError(f"{where}: batch_size, grad_accum and lr must be positive")
        if opt.epochs < 1 or (opt.max_steps is not None and opt.max_steps < 1):
            raise ValueError(f"{where}: epochs and max_steps must be at least 1 (max_steps caps epochs)")
        if opt.min_lr < 0 or opt.weight_decay < 0 or not opt.eps > 0:
            raise ValueError(f"{where}: min_lr and weight_decay must not be negative, eps must be positive")
        if not all(0 <= b < 1 for b in opt.betas):
            raise ValueError(f"{where}: betas must lie in [0, 1), got {list(opt.betas)}")
        if opt.max_grad_norm is not None and not opt.max_grad_norm > 0:
            raise ValueError(f"{where}: max_grad_norm must be positive (or null: no clipping)")
        if opt.eval_batch_size is not None and opt.eval_batch_size < 1:
            raise ValueError(f"{where}: eval_batch_size must be at least 1 (or null: the batch size)")


@dataclass
class TrainConfig:
    """A training run: where to write, what to start from, which data, which stages.

    Start point: ``init_from`` (a model directory, an official ``.pth`` or a tag such as
    ``saas``: fine-tuning) and/or ``model``, an architecture preset with seeded random weights
    (with both: the towers ``init_from`` has are copied into the preset). Then ``init_symbolic_from``
    (an M3 run's ``best`` directory or the official M3 ``.pth``: the official CLAMP3_LOAD_M3)
    and ``init_text_from`` (a Hugging Face XLM-R model id or directory, e.g.
    ``FacebookAI/xlm-roberta-base``) replace those towers' weights. ``tokenizer`` is a directory
    holding ``tokenizer.json`` (default: next to ``init_from``, else the model config's).

    ``train_data`` / ``eval_data``: one path for every stage, or ``{"symbolic": ..., "audio":
    ...}``. Contrastive stages read M4-RAG JSONL; M3 reads a folder of ``.abc``/``.mtf`` files, a
    ``.txt`` list of them or a JSONL. Without eval data, ``eval_fraction`` of the training items
    (a seeded, fixed choice) is held out. ``eval_every`` / ``save_every`` count optimizer steps;
    ``None`` means at the end of every epoch (and always at the end of a stage).

    Every data file is checked before training (:mod:`clamp3.train.screening`); ``bad_items``
    ``"skip"`` leaves bad ones out (listed in ``RUN/bad_items.jsonl``), ``"fail"`` stops.
    """

    output_dir: str
    stages: list[StageConfig]
    model: str | None = None
    init_from: str | None = None
    init_symbolic_from: str | None = None
    init_text_from: str | None = None
    tokenizer: str | None = None
    train_data: dict[str, str] = field(default_factory=dict)
    eval_data: dict[str, str] = field(default_factory=dict)
    eval_fraction: float = 0.01
    seed: int = 42
    device: str = "auto"
    precision: str = "auto"
    num_workers: int = 0
    log_every: int = 10
    eval_every: int | None = None
    save_every: int | None = None
    keep_checkpoints: int = 2
    tensorboard: bool = False
    wandb_project: str | None = None
    show_progress: bool = True
    bad_items: str = "skip"

    def validate(self) -> None:
        if not self.stages:
            raise ValueError("a training config needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique within a run, got {names}")
        if len({s.task for s in self.stages}) > 1:
            raise ValueError(
                "M3 pre-training and contrastive stages go in separate runs (see init_symbolic_from)"
            )
        for stage in self.stages:
            stage.validate()
            if stage.modality not in self.train_data:
                raise ValueError(f"stage {stage.name!r} needs train_data for {stage.modality!r}")
        if self.model is None and self.init_from is None:
            raise ValueError("give 'model' (an architecture preset) and/or 'init_from' (weights)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError("eval_fraction must lie in [0, 1)")
        if self.bad_items not in BAD_ITEMS:
            raise ValueError(f"bad_items must be one of {BAD_ITEMS}, got {self.bad_items!r}")
        every = {"log_every": self.log_every, "eval_every": self.eval_every, "save_every": self.save_every}
        if any(v is not None and v < 1 for v in every.values()) or self.keep_checkpoints < 1:
            raise ValueError(
                "log_every, eval_every, save_every (null: each epoch end) and keep_checkpoints "
                "must be at least 1"
            )
        if self.num_workers < 0:
            raise ValueError(f"num_workers must not be negative, got {self.num_workers}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------- loading
def _data_dir(kind: str):
    return resources.files("clamp3.train") / kind


def list_stage_presets() -> list[str]:
    return sorted(p.name[:-5] for p in _data_dir("stages").iterdir() if p.name.endswith(".json"))


def list_recipes() -> list[str]:
    return sorted(p.name[:-5] for p in _data_dir("recipes").iterdir() if p.name.endswith(".json"))


def _read_preset(kind: str, name: str) -> dict[str, Any]:
    path = _data_dir(kind) / f"{name}.json"
    if not path.is_file():
        known = list_stage_presets() if kind == "stages" else list_recipes()
        raise ValueError(f"unknown {kind[:-1]} preset {name!r}; known: {', '.join(known)}")
    return json.loads(path.read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def stage_from_dict(entry: str | dict[str, Any]) -> StageConfig:
    """A stage from a preset name or an object (optional ``preset`` + overrides)."""
    if isinstance(entry, str):
        entry = {"preset": entry}
    data = dict(entry)
    preset = data.pop("preset", None)
    if preset is not None:
        data = _merge(_read_preset("stages", preset), data)
    stage = build(StageConfig, data, f"stage {data.get('name', preset)!r}")  # optim etc. nested
    stage.validate()
    return stage


def recipe_stages(name: str) -> list[StageConfig]:
    """The stages of a named recipe, in order."""
    return [stage_from_dict(entry) for entry in _read_preset("recipes", name)["stages"]]


def _paths(value: str | dict[str, str] | None, base: Path, field_name: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = {"symbolic": value, "audio": value}
    if not isinstance(value, dict) or not set(value) <= {"symbolic", "audio"}:
        raise ValueError(f"{field_name} must be a path or {{'symbolic': path, 'audio': path}}")
    return {k: str(base / v) for k, v in value.items() if v is not None}


def _local(value: str | None, base: Path, hub_ok: bool = False) -> str | None:
    """Resolve a relative path against the config folder; official tags (``saas``...) and, where
    ``hub_ok``, Hugging Face ids that are not local paths are left alone. A path that does not
    exist yet (an earlier run's output) is still resolved."""
    from clamp3.checkpoints import OFFICIAL_FILES

    if value is None or Path(value).is_absolute():
        return value
    candidate = base / value
    if candidate.exists():
        return str(candidate)
    if value in OFFICIAL_FILES or hub_ok:
        return value
    return str(candidate)


def config_from_dict(data: dict[str, Any], base_dir: str | Path = ".") -> TrainConfig:
    """A validated :class:`TrainConfig` from a JSON object; paths resolved against ``base_dir``."""
    base = Path(base_dir)
    data = dict(data)
    if "recipe" in data:
        if "stages" in data:
            raise ValueError("give either 'recipe' or 'stages', not both")
        data["stages"] = [s for s in _read_preset("recipes", data.pop("recipe"))["stages"]]
    data["stages"] = [stage_from_dict(entry) for entry in data.get("stages", [])]
    data["train_data"] = _paths(data.get("train_data"), base, "train_data")
    data["eval_data"] = _paths(data.get("eval_data"), base, "eval_data")
    if "output_dir" not in data:
        raise ValueError("a training config needs 'output_dir'")
    data["output_dir"] = str(base / data["output_dir"])
    for key in ("init_from", "init_symbolic_from", "init_text_from", "tokenizer"):
        data[key] = _local(data.get(key), base, hub_ok=key == "init_text_from")
    config = build(TrainConfig, data, "training config")
    config.validate()
    return config


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a run config JSON file (see the module docstring)."""
    path = Path(path)
    text = read_text(path)  # InputError (a ValueError) for an unreadable or undecodable file
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: cannot read the training config ({exc})") from exc
    try:
        return config_from_dict(data, path.parent)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
