"""Training: M3 pre-training and CLaMP 3's multi-stage contrastive alignment.

An application on top of the library (``pip install clamp3[train]``)::

    from clamp3.train import load_train_config, train
    best_dir = train(load_train_config("run.json"))          # or: clamp3 train run.json

Modules: ``config`` (run and stage settings, presets in ``stages/`` and ``recipes/``),
``records`` / ``data`` (M4-RAG JSONL, items, batches), ``screening`` (every file checked
before training), ``augment`` (text dropout, instrument removal, crops), ``loss`` (global
InfoNCE), ``m3`` (masked patch reconstruction), ``schedule`` (lr as a function of the step),
``initialization`` (a stage's starting weights), ``loop`` (one stage), ``runner`` (a run),
``rundir`` (its config, compared on resume), ``interrupt`` (SIGTERM / SIGINT),
``checkpoint``, ``logger``, ``distributed``, ``toy`` (a synthetic aligned set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clamp3.train.config import StageConfig, TrainConfig, config_from_dict, load_train_config

if TYPE_CHECKING:
    from clamp3.train.interrupt import TrainingInterrupted
    from clamp3.train.runner import train

__all__ = [
    "StageConfig",
    "TrainConfig",
    "TrainingInterrupted",
    "config_from_dict",
    "load_train_config",
    "train",
]


def __getattr__(name: str):
    if name == "train":
        from clamp3.train.runner import train

        return train
    if name == "TrainingInterrupted":
        from clamp3.train.interrupt import TrainingInterrupted

        return TrainingInterrupted
    raise AttributeError(f"module 'clamp3.train' has no attribute {name!r}")
