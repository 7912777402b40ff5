"""Where a stage's model comes from: a checkpoint, the previous stage, or the run's start.

The run's start is ``init_from`` (a model directory, an official ``.pth`` or a tag) and/or
``model`` (an architecture preset with seeded random weights), then ``init_symbolic_from``
and ``init_text_from``. Official-format files (CLaMP 3, CLaMP 2, M3) carry no architecture;
when the run names a preset they are read with it (:func:`donor_config`), so a fine-tuned
small model saved in the official format starts a run as the official sizes do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from clamp3.config import Clamp3Config, load_preset
from clamp3.model import Clamp3Model
from clamp3.train.checkpoint import MODEL_DIR
from clamp3.train.config import StageConfig, TrainConfig
from clamp3.train.m3 import PatchDecoder, build_decoder, load_decoder, load_decoder_state, m3_model_config
from clamp3.utils.errors import CheckpointError

# The towers each official checkpoint flavour holds (clamp3.checkpoints.detect_flavour).
FLAVOUR_TOWERS = {
    "clamp3": ("text", "symbolic", "audio"),
    "clamp2": ("text", "symbolic"),
    "m3": ("symbolic",),
}


def donor_config(architecture: Clamp3Config, source: str) -> Clamp3Config | None:
    """The architecture to read the official-format file (or tag) ``source`` with: the run's
    ``architecture`` cut to the towers the file holds (CLaMP 2: no audio; M3: the symbolic
    encoder without projection). None, i.e. the official sizes, for a model directory (its
    ``config.json`` says) or when ``architecture`` lacks one of the file's towers."""
    from clamp3.checkpoints import OFFICIAL_FILES, detect_flavour, download_official, load_official_state

    path = Path(source)
    if path.is_dir() or (not path.is_file() and source not in OFFICIAL_FILES):
        return None  # a directory, or an unknown name that from_pretrained reports
    if not path.is_file():
        path = download_official(source)
    flavour = detect_flavour(set(load_official_state(path)), path)
    if not set(FLAVOUR_TOWERS[flavour]) <= set(architecture.modalities):
        return None
    if flavour == "m3":
        return m3_model_config(architecture)
    if flavour == "clamp2":
        return dataclasses.replace(architecture, audio=None)
    return architecture


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
        model = _whole_model(config.init_from)
    else:
        torch.manual_seed(config.seed)
        architecture = load_preset(config.model)
        model = Clamp3Model(m3_model_config(architecture) if m3 else architecture)
        if config.init_from is not None:
            reading = donor_config(load_preset(config.model), config.init_from)
            donor = Clamp3Model.from_pretrained(config.init_from, config=reading, modalities=None)
            copy_towers(model, donor, config.init_from)
    if config.init_symbolic_from:
        load_symbolic_weights(model, config.init_symbolic_from)
    if config.init_text_from:
        load_text_weights(model, config.init_text_from)
    return model


def _whole_model(source: str) -> Clamp3Model:
    """``init_from`` alone: its model, at the size its ``config.json`` (or the official preset) says."""
    try:
        return Clamp3Model.from_pretrained(source, modalities=None)
    except CheckpointError as exc:
        if Path(source).is_dir():
            raise
        raise CheckpointError(
            f'{exc}. An official-format file of another size is read with the run\'s architecture: add "model": '
            '"<preset>" (e.g. "tiny") to the config'
        ) from exc


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
    donor = Clamp3Model.from_pretrained(
        source, config=donor_config(model.config, source), modalities=["symbolic"]
    )
    try:
        model.symbolic_model.load_state_dict(donor.symbolic_model.state_dict(), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source}: its symbolic tower does not fit this model ({exc})") from exc


TEXT_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def text_donor_folder(source: str) -> Path:
    """The folder of an XLM-R model's ``config.json`` and weights: ``source`` itself, or the hub
    cache's copy of repository ``source`` through :func:`clamp3.hub.fetch` (cache first, one
    short probe, one error naming the files and the ``hf download`` command; transformers
    alone retried an unreachable hub for ~25 s and then printed a traceback)."""
    if Path(source).is_dir():
        return Path(source)
    from clamp3.hub import fetch

    what = "the text tower's starting weights (init_text_from)"
    instead = "and put config.json and the weights in a folder, then give that folder as init_text_from"
    config = fetch(source, "config.json", what=what, instead=instead, also=TEXT_WEIGHT_FILES[:1])
    fetch(source, TEXT_WEIGHT_FILES, what=what, instead=instead, also=("config.json",))
    return config.parent  # the cache keeps a repository's files in one snapshot folder


def load_text_weights(model: Clamp3Model, source: str) -> None:
    """Replace the text encoder with a Hugging Face XLM-R model (hub id or directory), as the
    official starts from ``FacebookAI/xlm-roberta-base``."""
    from transformers import XLMRobertaModel

    folder = text_donor_folder(source)
    try:
        donor = XLMRobertaModel.from_pretrained(folder).state_dict()
    except (OSError, ValueError) as exc:  # no weights, a config of another model type, ...
        from clamp3.utils.errors import CheckpointError
        from clamp3.utils.reasons import describe_exception

        reason = describe_exception(exc).splitlines()[0][:300]
        raise CheckpointError(f"{folder}: not an XLM-R model transformers can load ({reason})") from exc
    donor = {k: v for k, v in donor.items() if not k.startswith("pooler.")}
    missing, unexpected = model.text_model.load_state_dict(donor, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(
            f"{source}: not this text tower's architecture (missing {missing}, unexpected {unexpected})"
        )
