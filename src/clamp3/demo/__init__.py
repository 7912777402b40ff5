"""The offline end-to-end demo (``clamp3 demo``) and the retrieval benchmark (``clamp3 benchmark``).

The demo chains the stages of the package on the corpus that ships inside music21: build the
aligned score/MIDI/audio/text corpus (:mod:`clamp3.corpus`), train its text tokenizer, train the
``mini`` model through the real training stages (:mod:`clamp3.train`: M3 pre-training, then
text–audio, then text–symbolic), embed the test split (:mod:`clamp3.embed_folder`), index it
(:mod:`clamp3.index`) and print the retrieval table (:mod:`clamp3.evaluate.metrics`).

The benchmark is the last part alone and runs with any model (the official ``saas`` weights
where present), so every model's results land in one JSON file and one plot::

    from clamp3.demo import DemoOptions, run_demo, run_benchmark
    result = run_demo(DemoOptions(workdir="runs/demo"))
    print(result.table)

Modules: ``pipeline`` (the steps and the work folder), ``benchmark`` (embed, index, rank,
baselines, example queries), ``report`` (table, JSON, plot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clamp3.demo.benchmark import BenchmarkResult, run_benchmark
    from clamp3.demo.pipeline import DemoOptions, DemoResult, run_demo

__all__ = ["BenchmarkResult", "DemoOptions", "DemoResult", "run_benchmark", "run_demo"]

_HOMES = {
    "BenchmarkResult": "clamp3.demo.benchmark",
    "run_benchmark": "clamp3.demo.benchmark",
    "DemoOptions": "clamp3.demo.pipeline",
    "DemoResult": "clamp3.demo.pipeline",
    "run_demo": "clamp3.demo.pipeline",
}


def __getattr__(name: str):
    # Lazy: ``import clamp3.demo`` must not pull in music21, faiss or the training code.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'clamp3.demo' has no attribute {name!r}")
