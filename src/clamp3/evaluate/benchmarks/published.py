"""The paper's retrieval figures (``published.json``), matched to our rows.

Each figure: ``dataset``, ``direction``, ``text_type``, ``language`` (as our rows name them),
``model`` (``saas``, ``c2``, ``clamp2`` for the weights this project loads; ``clamp``, ``clap``,
``ttmr++`` for the paper's baselines), ``mrr``, and where it comes from: ``table`` (the
paper's table by its content), ``column`` (the column within it) and ``source``. The paper
reports MRR only in the figures gathered here; Hit@k has no published counterpart.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

KEY = ("dataset", "direction", "text_type", "language")


@lru_cache(maxsize=1)
def figures() -> dict[str, Any]:
    """The whole data file: ``{"paper", "models", "figures": [...]}``."""
    return json.loads(resources.files(__package__).joinpath("published.json").read_text(encoding="utf-8"))


def for_model(name: str) -> list[dict[str, Any]]:
    """The figures of one paper model (``saas``, ``c2``, ...); ``KeyError`` naming the known ones."""
    data = figures()
    if name not in data["models"]:
        raise KeyError(f"no published figures for {name!r}; known: {', '.join(data['models'])}")
    return [f for f in data["figures"] if f["model"] == name]


def match(paper: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    """The figure of ``paper`` for our ``row`` (same dataset, direction, text type, language)."""
    for figure in paper:
        if all(figure[k] == row[k] for k in KEY):
            return figure
    return None


def guess_model(model: str | os.PathLike) -> str | None:
    """The paper model a ``--model`` value stands for: a tag (``saas``, ``c2``, ``clamp2``),
    or an official checkpoint file named ``weights_clamp3_saas_...`` / ``weights_clamp3_c2_...``
    / ``weights_clamp2_...``; None for anything else (a retrained model has no paper figure)."""
    text = str(model)
    if text in figures()["models"]:
        return text
    name = Path(text).name.lower()
    for tag, prefix in (
        ("saas", "weights_clamp3_saas"),
        ("c2", "weights_clamp3_c2"),
        ("clamp2", "weights_clamp2"),
    ):
        if name.startswith(prefix):
            return tag
    return None
