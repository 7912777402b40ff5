"""``clamp3 demo``: corpus -> tokenizer -> M3 -> text–audio -> text–symbolic -> embed -> index -> table.

Work folder (every step reuses what an earlier run left, so a rerun only re-scores)::

    WORKDIR/demo.json                 the settings the folder was made with, and step timings
    WORKDIR/corpus/                   clamp3 build-corpus output (audio + mini log-mel features)
    WORKDIR/tokenizer/tokenizer.json  the corpus tokenizer (training split texts only)
    WORKDIR/train/m3/                 M3 run (recipe ``mini-m3``); best/ = the symbolic encoder
    WORKDIR/train/align/              contrastive run (recipe ``mini``); best/ = the demo model
    WORKDIR/benchmark/                clamp3.demo.benchmark outputs (embeddings, index, JSON, PNG)

The stage settings are the training recipes ``mini-m3`` and ``mini`` (``clamp3/train/recipes``);
``steps`` and ``batch_size`` override them. With ``model`` set, training is skipped and that
model (a directory, ``.pth`` or tag such as ``saas``) is benchmarked on the same corpus.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clamp3.utils.errors import InputError, UsageError
from clamp3.utils.io import read_jsonl, write_json_atomic

log = logging.getLogger(__name__)

DEMO_LABEL = "mini-demo"  # the JSON / plot key of the model this demo trains
FEATURES = "mini"  # the corpus's audio features are the mini model's log-mel front-end
M3_RECIPE, ALIGN_RECIPE = "mini-m3", "mini"
EVAL_EVERY = 50  # validation (and best-model choice) every N optimizer steps
SAVE_EVERY = 100  # checkpoints: a killed demo resumes within 100 steps
# A ranking of one candidate always scores 1.0; two is the least that measures anything.
MIN_SPLIT_PIECES = 2


# Two torch threads, fixed: a fixed count keeps the table identical run to run (the count
# changes the order of float sums), and on a quiet 2-core machine the mini model's text-symbolic
# step takes 0.43x the time of one thread with dropout (benchmarks/demo_step.py).
DEFAULT_THREADS = 2


@dataclass(frozen=True)
class DemoOptions:
    """What the demo builds and trains.

    ``pieces``: corpus size (the test split is ~10 %); ``seconds_max``: audio per piece;
    ``transpose``: transposed copies of each training piece for the text–symbolic stage;
    ``train_titles``: the training texts name the pieces' titles (False, the default: they say
    "the piece", so the model must match what the music shows, not a name it can memorise; the
    benchmark's queries are written the same way; better on both evaluation splits, docs/demo.md);
    ``steps``: optimizer steps of the M3, text–audio and text–symbolic stages (None: the
    recipes'); ``batch_size``: contrastive batch (None: the recipe's 32); ``threads``: torch
    threads for training and embedding (fixed, so two runs print the same table whatever the
    machine's load: thread count changes the order of float sums); ``workers``: corpus build
    processes (None: CPU count); ``model``: benchmark this model instead of training one;
    ``split``: the corpus split the table is measured on.
    """

    workdir: str | os.PathLike = "runs/demo"
    pieces: int = 400
    seconds_max: float = 20.0
    transpose: int = 0
    train_titles: bool = False
    steps: tuple[int, ...] | None = None
    batch_size: int | None = None
    threads: int = DEFAULT_THREADS
    workers: int | None = None
    model: str | None = None
    device: str | None = None
    split: str = "test"
    show_progress: bool = True
    plot: bool = True


@dataclass
class DemoResult:
    """``model``: what was benchmarked (the trained directory or the given model); ``reused``
    per step: True when an earlier run's output was used as is; ``seconds`` per step."""

    workdir: Path
    model: str
    benchmark: Any = None  # clamp3.demo.benchmark.BenchmarkResult, set by the last step
    reused: dict[str, bool] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.benchmark.table


def demo_stages(options: DemoOptions) -> tuple[list, list]:
    """(M3 stages, contrastive stages) from the recipes with ``steps`` / ``batch_size`` applied.
    Overridden steps get a warm-up of a tenth of them, as the recipes have."""
    from clamp3.train.config import recipe_stages

    m3, align = recipe_stages(M3_RECIPE), recipe_stages(ALIGN_RECIPE)
    stages = m3 + align
    if options.steps is not None:
        if len(options.steps) != len(stages) or min(options.steps) < 1:
            names = ", ".join(s.name for s in stages)
            raise ValueError(f"steps: give {len(stages)} positive step counts ({names}), got {options.steps}")
        for stage, steps in zip(stages, options.steps):
            stage.optim = dataclasses.replace(stage.optim, max_steps=steps, warmup_steps=max(1, steps // 10))
    if options.batch_size is not None:
        for stage in align:  # M3's batch is its own (its decoder makes each item costly)
            stage.optim = dataclasses.replace(stage.optim, batch_size=options.batch_size)
    return m3, align


def settings(options: DemoOptions) -> dict[str, Any]:
    """What decides the folder's content: a rerun with other values would mix two demos."""
    corpus = {"pieces": options.pieces, "seconds_max": options.seconds_max, "features": FEATURES}
    if options.transpose:  # left out at 0, so folders made before the option stay valid
        corpus["transpose"] = options.transpose
    # Left out when titled: folders made before the option (titled) stay valid with --train-titles,
    # and a default run refuses them rather than mix two corpora.
    if not options.train_titles:
        corpus["train_titles"] = False
    if options.model is not None:
        return {"corpus": corpus}
    m3, align = demo_stages(options)
    # Options left unset (None) are left out, so a stage option added later at its default
    # does not make an existing folder look like another demo.
    stages = [{k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in m3 + align]
    # Through JSON, so the comparison with the stored copy sees lists where tuples were.
    return json.loads(json.dumps({"corpus": corpus, "training": stages}))


def check_workdir(work: Path, options: DemoOptions) -> None:
    """Refuse a path that is not a folder, invalid ``steps`` and a folder made with other
    corpus or training settings (reusing it would report a model that does not match the
    options); record the settings of a new folder. Raises ``ValueError`` / ``InputError``."""
    if work.exists() and not work.is_dir():
        raise InputError(work, "not a folder; --workdir must be a folder (created when missing)")
    wanted = settings(options)
    path = work / "demo.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    from clamp3.train.rundir import config_changes, describe_changes

    stored = old.get("settings", {})
    for key, value in wanted.items():
        # The rule of a training run's resume: settings that leave the weights as they are
        # (packed steps) may differ, and only the differing keys are named.
        changes = config_changes({key: stored[key]}, {key: value}) if key in stored else {}
        if changes:
            raise ValueError(
                f"{work} was made with other {key} settings ({describe_changes(changes)}); "
                "use another --workdir or delete this one"
            )
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {**old, "settings": {**stored, **wanted}})


def ensure_corpus(work: Path, options: DemoOptions) -> bool:
    """Build (or finish) the corpus; True when a finished one was reused as it is. A finished
    corpus is not re-assembled, which keeps its evaluation files (and the embeddings made from
    them) unchanged."""
    from clamp3.corpus import BuildOptions, build_corpus

    corpus = work / "corpus"
    build = BuildOptions(
        seconds_max=options.seconds_max,
        features=FEATURES,
        transpose=options.transpose,
        train_titles=options.train_titles,
    )
    manifest = corpus / "manifest.json"
    if manifest.is_file():
        done = json.loads(manifest.read_text(encoding="utf-8"))
        missing = {"transpose": 0, "train_titles": True}  # what corpora from before the option hold
        keys = ("seconds_max", "audio", "features", "transpose", "train_titles")
        same = all(done["options"].get(k, missing.get(k)) == getattr(build, k) for k in keys)
        if same and done.get("pieces") == options.pieces:
            return True
    summary = build_corpus(
        corpus,
        pieces=options.pieces,
        workers=options.workers,
        options=build,
        show_progress=options.show_progress,
    )
    if not summary.built:  # build_corpus raises first; kept so an empty corpus never goes on
        raise InputError(corpus, f"no piece could be built; see {corpus / 'errors.jsonl'}")
    return False


def check_split(corpus: Path, split: str, needed: int = MIN_SPLIT_PIECES) -> None:
    """Raise :class:`InputError` when ``split`` of the built corpus has fewer than ``needed``
    pieces, saying how many pieces would give enough: checked right after the corpus step,
    so a too small ``--pieces`` fails before any training, not at the benchmark."""
    from clamp3.corpus.assemble import SPLITS, read_splits

    if not (corpus / "splits.json").is_file():
        return  # not a finished corpus; the benchmark names what is missing
    splits = read_splits(corpus)
    have = len(splits.get(split, []))
    if have >= needed:
        return
    counts = ", ".join(f"{len(splits[name])} {name}" for name in SPLITS)
    advice = ""
    enough = pieces_for_split(split, needed)
    if enough is not None:
        advice = (
            f"; use --pieces {enough} or more (the first {enough} pieces of the selection hold "
            f"{needed} {split} pieces; a piece that fails is replaced by a later one)"
        )
    raise InputError(
        corpus,
        f"the {split} split has {have} piece(s) ({counts}); the benchmark needs at least {needed}{advice}",
    )


def check_pieces(work: Path, options: DemoOptions, needed: int = MIN_SPLIT_PIECES) -> None:
    """Refuse, before anything is built or recorded, a ``--pieces`` whose selection holds fewer
    than ``needed`` pieces of the benchmark's split: a folder marked with settings the advice
    then contradicts is a trap. A finished corpus of that size is judged by its own splits
    (:func:`check_split`, after the corpus step: failed pieces are replaced by later ones)."""
    import importlib.util

    manifest = work / "corpus" / "manifest.json"
    built = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
    if built.get("pieces") == options.pieces:
        return
    if importlib.util.find_spec("music21") is None:
        return  # the corpus step names the missing extra
    from clamp3.corpus.assemble import split_of
    from clamp3.corpus.select import select_pieces

    have = sum(split_of(ref.group) == options.split for ref in select_pieces(options.pieces))
    if have >= needed:
        return
    enough = pieces_for_split(options.split, needed)
    advice = f"; use --pieces {enough} or more" if enough is not None else ""
    raise UsageError(
        f"--pieces {options.pieces}: the first {options.pieces} pieces of the selection hold {have} "
        f"{options.split} piece(s); the benchmark needs at least {needed}{advice}"
    )


def pieces_for_split(split: str, needed: int) -> int | None:
    """The smallest ``--pieces`` whose selection prefix holds ``needed`` pieces of ``split``
    (None when the whole selection has fewer). About 0.6 s: it lists music21's corpus."""
    from clamp3.corpus.assemble import split_of
    from clamp3.corpus.select import select_pieces

    found = 0
    for position, ref in enumerate(select_pieces(None), start=1):
        found += split_of(ref.group) == split
        if found >= needed:
            return position
    return None


def ensure_tokenizer(work: Path) -> bool:
    """The corpus tokenizer (training split only); True when it existed."""
    from clamp3.corpus import train_corpus_tokenizer

    directory = work / "tokenizer"
    if (directory / "tokenizer.json").is_file():
        return True
    train_corpus_tokenizer(work / "corpus", directory)
    return False


def _data(work: Path, split: str) -> str | None:
    path = work / "corpus" / f"m4rag_{split}.jsonl"
    return str(path) if path.is_file() and read_jsonl(path) else None


def run_config(work: Path, name: str, stages: list, options: DemoOptions, **start: Any):
    """A :class:`~clamp3.train.TrainConfig` of the mini architecture on the corpus's training
    split, validated (best model chosen) on its validation split when it has pieces."""
    import torch

    from clamp3.train import TrainConfig

    modalities = sorted({s.modality for s in stages})
    train_jsonl, validation = _data(work, "train"), _data(work, "validation")
    if train_jsonl is None:
        raise ValueError(f"{work / 'corpus'}: the training split is empty; build more pieces")
    return TrainConfig(
        output_dir=str(work / "train" / name),
        stages=stages,
        model="mini",
        train_data={m: train_jsonl for m in modalities},
        eval_data={m: validation for m in modalities} if validation else {},
        eval_fraction=0.0,
        # A loader process prepares the next batch on a core torch leaves free (8 % faster
        # here at low load, the same when other jobs hold both cores).
        num_workers=1 if torch.get_num_threads() < (os.cpu_count() or 1) else 0,
        device=options.device or "auto",
        log_every=10,
        eval_every=EVAL_EVERY,
        save_every=SAVE_EVERY,
        show_progress=options.show_progress,
        **start,
    )


def train_run(config) -> tuple[Path, bool]:
    """Run (or resume) a training config; (RUN/best, True when every stage was already done)."""
    from clamp3.train import train
    from clamp3.train.checkpoint import DONE_FILE

    out = Path(config.output_dir)
    finished = all(
        (out / "stages" / f"{i + 1:02d}-{s.name}" / DONE_FILE).is_file() for i, s in enumerate(config.stages)
    )
    if finished and (out / "best").is_dir():
        return out / "best", True
    best = train(config, resume=True)
    assert best is not None  # no step budget was given
    return best, False


def train_demo_model(work: Path, options: DemoOptions, result: DemoResult) -> Path:
    """Tokenizer -> M3 pre-training -> text–audio -> text–symbolic; returns the model folder."""
    m3_stages, align_stages = demo_stages(options)
    _step(result, "tokenizer", lambda: ensure_tokenizer(work))
    m3_best = _step(result, "m3", lambda: train_run(run_config(work, "m3", m3_stages, options)))
    config = run_config(
        work,
        "align",
        align_stages,
        options,
        tokenizer=str(work / "tokenizer"),
        init_symbolic_from=str(m3_best),
    )
    return _step(result, "align", lambda: train_run(config))


def _step(result: DemoResult, name: str, action) -> Any:
    """Run one step, log and time it; ``action`` returns ``reused`` or ``(value, reused)``."""
    log.info("demo step: %s", name)
    start = time.perf_counter()
    outcome = action()
    value, reused = outcome if isinstance(outcome, tuple) else (None, outcome)
    result.seconds[name] = round(time.perf_counter() - start, 1)
    result.reused[name] = bool(reused)
    log.info("demo step %s: %s in %.1f s", name, "reused" if reused else "done", result.seconds[name])
    return value


def run_demo(options: DemoOptions) -> DemoResult:
    """Every step of the demo (module docstring); returns the benchmark and step timings.
    Sets torch's thread count for its duration (restored afterwards).

    Fails early, with ``ValueError`` (``InputError``, ``CheckpointError``): before anything is
    built for bad settings (a ``pieces`` too few for the split), a ``workdir`` that is a file
    or holds another demo, and a ``model`` that cannot be resolved; right after the corpus
    step for a split with fewer than :data:`MIN_SPLIT_PIECES` pieces, before any training.
    """
    import torch

    from clamp3.demo.benchmark import run_benchmark
    from clamp3.loading import load_pipeline

    work = Path(options.workdir)
    # A given model is resolved first: a wrong path or unreachable weights must fail in
    # seconds, not after the corpus build (towers load lazily, so this reads no weights yet).
    given = load_pipeline(options.model, device=options.device) if options.model else None
    check_pieces(work, options)
    check_workdir(work, options)
    threads = options.threads
    result = DemoResult(work, options.model or "")
    start = time.perf_counter()
    _step(result, "corpus", lambda: ensure_corpus(work, options))
    check_split(work / "corpus", options.split)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model_dir = options.model or train_demo_model(work, options, result)
        result.model = str(model_dir)
        label = DEMO_LABEL if options.model is None else options.model
        model = given if given is not None else load_pipeline(model_dir, device=options.device)

        def benchmark() -> tuple[Any, bool]:
            out = run_benchmark(
                model,
                work / "corpus",
                work / "benchmark",
                label,
                split=options.split,
                show_progress=options.show_progress,
                plot=options.plot,
            )
            return out, False

        result.benchmark = _step(result, "benchmark", benchmark)
    finally:
        torch.set_num_threads(previous)
    result.seconds["total"] = round(time.perf_counter() - start, 1)
    _record_run(work, result, threads)
    return result


def _record_run(work: Path, result: DemoResult, threads: int) -> None:
    path = work / "demo.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    run = {"model": result.model, "threads": threads, "seconds": result.seconds, "reused": result.reused}
    data["last_run"] = {**run, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomic(path, data)
