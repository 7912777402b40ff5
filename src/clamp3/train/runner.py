"""Run a training config: its stages in order, each starting from the previous stage's best.

Output directory::

    RUN/train_config.json      the resolved config of the (last) invocation
    RUN/log.jsonl              every stage's train / eval / event records (clamp3.train.logger)
    RUN/stages/NN-<name>/      checkpoints/, best/, done.json (clamp3.train.checkpoint)
    RUN/best/                  the final model: a save_pretrained directory (+ tokenizer.json)

With ``resume=True`` finished stages are skipped and the first unfinished one continues from
its latest checkpoint (or starts from the previous stage's best when it has none).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from clamp3.config import load_preset
from clamp3.model import Clamp3Model
from clamp3.tokenizer import TOKENIZER_FILE, TextTokenizer, load_tokenizer
from clamp3.train.checkpoint import BEST_DIR, DONE_FILE, MODEL_DIR, copy_dir, latest_checkpoint
from clamp3.train.config import StageConfig, TrainConfig
from clamp3.train.data import PairSource, load_pair_split
from clamp3.train.distributed import DistEnv, barrier, init_distributed
from clamp3.train.logger import RunLog
from clamp3.train.loop import StageJob, StepBudget, fit
from clamp3.train.loss import InfoNCELoss
from clamp3.train.m3 import (
    M3Task,
    PatchDecoder,
    PatchSource,
    build_decoder,
    load_decoder,
    load_decoder_state,
    m3_model_config,
    save_decoder,
)
from clamp3.train.records import list_symbolic_files, records_for, split_indices
from clamp3.train.task import ContrastiveTask, freeze
from clamp3.utils.io import write_json_atomic

log = logging.getLogger(__name__)


def train(config: TrainConfig, resume: bool = False, stop_after: int | None = None) -> Path | None:
    """Run every stage of ``config``; return ``RUN/best`` (None when ``stop_after`` optimizer
    steps were taken before the end: a checkpoint was written, resume to continue).

    Under torchrun every process calls this with the same config.
    """
    config.validate()
    env = init_distributed(config.device)
    out = Path(config.output_dir)
    stages_root = out / "stages"
    if not resume and stages_root.is_dir() and any(stages_root.iterdir()):
        raise FileExistsError(
            f"{out}: already holds a training run; resume it (--resume) or choose another output_dir"
        )
    if env.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "train_config.json", config.to_dict())
    barrier()
    run_log = RunLog(
        out / "log.jsonl",
        enabled=env.is_main,
        tensorboard_dir=out / "tensorboard" if config.tensorboard else None,
        wandb_project=config.wandb_project,
        run_config=config.to_dict(),
    )
    budget = StepBudget(stop_after)
    previous: Path | None = None
    try:
        for index, stage in enumerate(config.stages):
            directory = stages_root / f"{index + 1:02d}-{stage.name}"
            if (directory / DONE_FILE).is_file():
                previous = directory / BEST_DIR
                continue
            checkpoint = latest_checkpoint(directory) if resume else None
            job = build_job(config, stage, directory, env, run_log, previous, checkpoint)
            if not fit(job, checkpoint, budget):
                return None
            previous = directory / BEST_DIR
        if env.is_main:
            copy_dir(previous, out / BEST_DIR)
        barrier()
    finally:
        run_log.close()
    return out / BEST_DIR


def build_job(
    config: TrainConfig,
    stage: StageConfig,
    directory: Path,
    env: DistEnv,
    run_log: RunLog,
    previous: Path | None,
    checkpoint: Path | None,
) -> StageJob:
    """Model (with frozen towers), task, data sources and the save function of one stage."""
    model, decoder = load_stage_model(config, stage, previous, checkpoint)
    model.to(env.device)
    freeze(model, stage.train)
    tokenizer = None
    if stage.task == "m3":
        task: nn.Module = M3Task(model, decoder)
        train_source, eval_source = m3_sources(config, stage, model)
    else:
        tokenizer = resolve_tokenizer(config, model)
        train_source, eval_source = pair_sources(config, stage, model, tokenizer)
        loss = InfoNCELoss(stage.contrastive.logit_scale, stage.contrastive.normalize)
        task = ContrastiveTask(model, stage.modality, loss)
    task.to(env.device)
    if env.is_main:
        n_eval = len(eval_source) if eval_source is not None else 0
        log.info("stage %s: %d training items, %d validation items", stage.name, len(train_source), n_eval)

    def save_model(target: Path) -> None:
        model.save_pretrained(target)
        if tokenizer is not None:
            tokenizer.save(target)
        if decoder is not None:
            save_decoder(decoder, target)

    return StageJob(
        config, stage, directory, env, task, list(stage.train), train_source, eval_source, save_model, run_log
    )


# ------------------------------------------------------------------------------------ models
def load_stage_model(
    config: TrainConfig, stage: StageConfig, previous: Path | None, checkpoint: Path | None
) -> tuple[Clamp3Model, PatchDecoder | None]:
    """The stage's starting model: the checkpoint, else the previous stage's best, else the
    config's start (``init_from`` and/or a seeded random ``model`` preset, then ``init_*_from``)."""
    m3 = stage.task == "m3"
    source = checkpoint / MODEL_DIR if checkpoint is not None else previous
    if source is not None:
        model = Clamp3Model.from_pretrained(source, modalities=None)
    else:
        model = initial_model(config, m3)
        source = config.init_from
    decoder_state = load_decoder_state(source) if m3 and source is not None else None
    if m3 and model.config.modalities != ("symbolic",):
        model = encoder_only(model)
    if not m3:
        return model, None
    torch.manual_seed(config.seed + 1)  # the same fresh decoder whatever happened before
    decoder = build_decoder(model.config.tower("symbolic"), stage.m3.decoder_layers)
    if decoder_state is not None:
        load_decoder(decoder, decoder_state)
    return model, decoder


def initial_model(config: TrainConfig, m3: bool) -> Clamp3Model:
    """The first stage's model. ``init_from`` alone: that model. ``model`` (a preset): seeded
    random weights, then every tower ``init_from`` also has is copied from it (e.g. the
    ``saas`` architecture started from CLaMP 2's text and symbolic towers). Then
    ``init_symbolic_from`` and ``init_text_from``."""
    if config.model is None:
        model = Clamp3Model.from_pretrained(config.init_from, modalities=None)
    else:
        torch.manual_seed(config.seed)
        architecture = load_preset(config.model)
        model = Clamp3Model(m3_model_config(architecture) if m3 else architecture)
        if config.init_from is not None:
            copy_towers(
                model, Clamp3Model.from_pretrained(config.init_from, modalities=None), config.init_from
            )
    if config.init_symbolic_from:
        load_symbolic_weights(model, config.init_symbolic_from)
    if config.init_text_from:
        load_text_weights(model, config.init_text_from)
    return model


def copy_towers(model: Clamp3Model, donor: Clamp3Model, origin: str) -> None:
    """Copy every tower (and projection, when both have one) that both models have."""
    shared = [m for m in model.config.modalities if m in donor.config.modalities]
    if not shared:
        raise ValueError(f"{origin}: has none of this model's towers ({', '.join(model.config.modalities)})")
    for modality in shared:
        parts = ["model"] + (["proj"] if model.config.projection and donor.config.projection else [])
        for part in parts:
            name = f"{modality}_{part}"
            try:
                getattr(model, name).load_state_dict(getattr(donor, name).state_dict(), strict=True)
            except RuntimeError as exc:
                raise ValueError(
                    f"{origin}: its {name} does not fit the {model.config.name!r} preset ({exc})"
                ) from exc


def encoder_only(model: Clamp3Model) -> Clamp3Model:
    """A model's symbolic tower as an M3-style model (no other towers, no projection)."""
    out = Clamp3Model(m3_model_config(model.config), modalities=())
    out.symbolic_model = model.symbolic_model
    out.symbolic_proj = nn.Identity()
    return out


def load_symbolic_weights(model: Clamp3Model, source: str) -> None:
    """Replace the symbolic tower with an M3 encoder (an M3 run's ``best`` directory, the
    official M3 ``.pth``, or any model with a symbolic tower): the official CLAMP3_LOAD_M3."""
    donor = Clamp3Model.from_pretrained(source, modalities=["symbolic"])
    try:
        model.symbolic_model.load_state_dict(donor.symbolic_model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: its symbolic tower does not fit this model ({exc})") from exc


def load_text_weights(model: Clamp3Model, source: str) -> None:
    """Replace the text encoder with a Hugging Face XLM-R model (hub id or directory), as the
    official starts from ``FacebookAI/xlm-roberta-base``."""
    from transformers import XLMRobertaModel

    donor = XLMRobertaModel.from_pretrained(source).state_dict()
    donor = {k: v for k, v in donor.items() if not k.startswith("pooler.")}
    missing, unexpected = model.text_model.load_state_dict(donor, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(
            f"{source}: not this text tower's architecture (missing {missing}, unexpected {unexpected})"
        )


def resolve_tokenizer(config: TrainConfig, model: Clamp3Model) -> TextTokenizer:
    """``config.tokenizer`` (a directory or a tokenizer.json), else the model directory's,
    else the model config's hub tokenizer."""
    if config.tokenizer:
        path = Path(config.tokenizer)
        return TextTokenizer.from_file(path / TOKENIZER_FILE if path.is_dir() else path)
    return load_tokenizer(model.config.tower("text"), model.source_directory)


# ------------------------------------------------------------------------------------ data
def pair_sources(
    config: TrainConfig, stage: StageConfig, model: Clamp3Model, tokenizer: TextTokenizer
) -> tuple[PairSource, PairSource | None]:
    train_path = config.train_data[stage.modality]
    eval_path = config.eval_data.get(stage.modality)
    records, held, base, eval_base = load_pair_split(train_path, eval_path, config.eval_fraction, config.seed)

    def source(items: list[dict], where: Path, train: bool) -> PairSource:
        return PairSource(items, where, stage.modality, tokenizer, model.config, stage.contrastive, train)

    eval_source = source(held, eval_base, False) if records_for(held, stage.modality) else None
    return source(records, base, True), eval_source


def m3_sources(
    config: TrainConfig, stage: StageConfig, model: Clamp3Model
) -> tuple[PatchSource, PatchSource | None]:
    tower = model.config.tower("symbolic")
    files = list_symbolic_files(config.train_data["symbolic"])
    if config.eval_data.get("symbolic"):
        held = list_symbolic_files(config.eval_data["symbolic"])
    else:
        train_idx, eval_idx = split_indices(len(files), config.eval_fraction, config.seed)
        files, held = [files[i] for i in train_idx], [files[i] for i in eval_idx]
    eval_source = PatchSource(held, tower, stage.m3, train=False) if held else None
    return PatchSource(files, tower, stage.m3, train=True), eval_source
