"""The paper's retrieval evaluations as one command each (``clamp3 benchmark DATASET PATH``).

One loader per data set (``wikimt_x``, ``song_describer``, ``midicaps``, ``wikimt``,
``musiccaps``, ``manifest``), each reading the files as a user downloads them; the runner
embeds through the project's own path (:mod:`.embedder`), scores every direction with
:mod:`clamp3.evaluate.metrics` and puts the paper's figures (:mod:`.published`) beside ours.
Layouts and commands: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Data-set name -> loader module (each defines NAME, SUBSETS, TEXT_TYPES and load()).
LOADERS = {
    "wikimt-x": "wikimt_x",
    "song-describer": "song_describer",
    "midicaps": "midicaps",
    "wikimt": "wikimt",
    "musiccaps": "musiccaps",
    "manifest": "manifest",
}
DATASETS = tuple(LOADERS)


def loader(name: str) -> ModuleType:
    """The loader module of data set ``name`` (one of :data:`DATASETS`); ``KeyError`` otherwise."""
    return importlib.import_module(f"{__name__}.{LOADERS[name]}")
