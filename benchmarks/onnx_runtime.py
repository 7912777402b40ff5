"""The ONNX Runtime backend against torch, side by side in one run (issue 17).

Measured, each for torch, ONNX fp32 and ONNX int8 (goals in brackets):

1. cold start of ``clamp3 search "text" IDX --model M`` in a fresh process, to the first printed
   result row, median of ``--cold-runs`` (fp32 < 1.5 s, int8 < 1.0 s), its CPU seconds (user +
   system: stretched much less than the wall time when other jobs share the cores) and its
   peak RSS (int8 < 500 MB);
2. one 15-token query, p50 over ``--reps`` on one thread (int8 <= 0.4x torch);
3. throughput of the three towers on fixed full-length segments, ``--threads`` threads;
4. retrieval agreement on a synthetic benchmark (the demo's corpus needs a trained model): N
   generated texts as references, each queried by a perturbed copy (words dropped and swapped),
   both sides embedded by the same backend; MRR of int8 within 0.01 of fp32.

The model is the full-size CLaMP 3 architecture with the deterministic parity weights (no real
weights are reachable here) and a Unigram tokenizer trained on the generated texts (the XLM-R
``tokenizer.json`` is not reachable either); ``--preset tiny`` runs the same steps in seconds.
Everything is built once under ``--work`` and reused by later runs. The machine may be shared:
compare the ratios, which are measured in one run, rather than the absolute times.

    .venv/bin/python benchmarks/onnx_runtime.py --work /tmp/onnx-bench
    .venv/bin/python benchmarks/onnx_runtime.py --work /tmp/onnx-tiny --preset tiny --n 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORDS = [
    "waltz",
    "fugue",
    "sonata",
    "prelude",
    "nocturne",
    "chorale",
    "minuet",
    "gavotte",
    "reel",
    "jig",
    "hymn",
    "lullaby",
    "march",
    "piano",
    "violin",
    "cello",
    "organ",
    "flute",
    "oboe",
    "guitar",
    "harp",
    "choir",
    "quartet",
    "trio",
    "orchestra",
    "voice",
    "slow",
    "fast",
    "gentle",
    "bright",
    "dark",
    "melancholy",
    "joyful",
    "solemn",
    "lively",
    "tender",
    "stormy",
    "calm",
    "major",
    "minor",
    "modal",
    "chromatic",
    "dotted",
    "syncopated",
    "legato",
    "staccato",
    "rubato",
    "cadence",
    "theme",
    "variation",
    "coda",
    "refrain",
    "verse",
    "bridge",
    "ostinato",
    "drone",
    "canon",
    "round",
    "ballad",
    "folk",
    "baroque",
    "romantic",
    "classical",
    "modern",
    "irish",
    "german",
    "french",
    "spanish",
    "nordic",
    "song",
    "dance",
    "tune",
    "piece",
]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """n reference texts of 8-16 words, and per reference a query: 30 % of its words dropped
    and two neighbours swapped."""
    rng = np.random.default_rng(seed)
    refs, queries = [], []
    for _ in range(n):
        words = list(rng.choice(WORDS, size=int(rng.integers(8, 17))))
        refs.append(" ".join(words))
        kept = [w for w in words if rng.random() > 0.3] or words[:2]
        if len(kept) > 2:
            i = int(rng.integers(0, len(kept) - 1))
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
        queries.append(" ".join(kept))
    return refs, queries


def build_models(work: Path, preset: str, texts: list[str]) -> dict[str, Path]:
    """WORK/torch (a converted directory + tokenizer), WORK/onnx-fp32, WORK/onnx-int8."""
    from clamp3 import Clamp3Model
    from clamp3.onnx.export import derive_export, export_onnx
    from clamp3.tokenizer import train_tokenizer

    dirs = {"torch": work / "torch", "fp32": work / "onnx-fp32", "int8": work / "onnx-int8"}
    if not (dirs["torch"] / "config.json").is_file():
        if preset == "tiny":
            model = Clamp3Model.from_preset("tiny", seed=0)
        else:
            from clamp3.testing import (
                deterministic_state_dict,
                find_parity_dir,
                read_key_list,
                write_official_checkpoint,
            )

            keys = find_parity_dir() / "keys" / "clamp3_model.json"
            pth = work / "weights_clamp3_saas_parity.pth"
            write_official_checkpoint(pth, deterministic_state_dict(read_key_list(keys)))
            model = Clamp3Model.from_pretrained(pth, modalities=None)
        model.save_pretrained(dirs["torch"])
        vocab = 200 if preset == "tiny" else 2000
        train_tokenizer(texts * 5, vocab_size=vocab).save(dirs["torch"])
        del model
    if not (dirs["fp32"] / "text.onnx.data").is_file():  # also redone for a pre-external-data export
        start = time.perf_counter()
        export_onnx(dirs["torch"], dirs["fp32"], overwrite=True)
        print(f"export fp32 (three towers, checked): {time.perf_counter() - start:.0f} s", flush=True)
    if not (dirs["int8"] / "text.onnx.data").is_file():
        start = time.perf_counter()
        derive_export(dirs["torch"], dirs["fp32"], dirs["int8"], "int8", overwrite=True)
        print(f"derive int8 (three towers, checked): {time.perf_counter() - start:.0f} s", flush=True)
    return dirs


def build_index(work: Path, model_dir: Path, refs: list[str]) -> Path:
    """References as .txt files, embedded with the torch model and indexed (exact)."""
    from clamp3.cli.main import main

    docs, emb, idx = work / "docs", work / "emb", work / "idx"
    if not (idx / "meta.json").is_file():
        docs.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(refs):
            (docs / f"ref{i:05d}.txt").write_text(text, encoding="utf-8")
        assert main(["embed", str(docs), str(emb), "--model", str(model_dir), "--no-progress"]) == 0
        assert main(["index", str(emb), str(idx), "--quiet", "--overwrite"]) == 0
    return idx


def cold_start(model_dir: Path, idx: Path, query: str) -> tuple[float, float, float]:
    """Seconds from process start to the first result row of ``clamp3 search``, the peak RSS
    of that process in MB and the CPU seconds it used (user + system; on a loaded machine the
    wall time stretches, the CPU time much less), measured by a wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
        "first = None\n"
        "for line in p.stdout:\n"
        "    if first is None and line.strip()[:1].isdigit():\n"
        "        first = time.perf_counter() - t0\n"
        "p.wait()\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(first, r.ru_maxrss / 1024, r.ru_utime + r.ru_stime, p.returncode)\n"
    )
    cmd = [
        sys.executable,
        "-m",
        "clamp3.cli.main",
        "search",
        query,
        str(idx),
        "--model",
        str(model_dir),
        "--top-k",
        "1",
    ]
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True)
    first, rss, cpu, rc = out.stdout.split()
    if rc != "0" or first == "None":
        raise RuntimeError(f"search failed for {model_dir}: {out.stderr[-500:]}")
    return float(first), float(rss), float(cpu)


def load_backends(dirs: dict[str, Path], threads: int) -> dict[str, object]:
    import torch

    from clamp3 import Clamp3Model
    from clamp3.onnx.runtime import OnnxModel

    torch.set_num_threads(threads)
    models: dict[str, object] = {"torch": Clamp3Model.from_pretrained(dirs["torch"], modalities=None)}
    for name in ("fp32", "int8"):
        models[name] = OnnxModel.from_pretrained(dirs[name], threads=threads).load_all()
    return models


def query_latency(models: dict[str, object], reps: int) -> dict[str, float]:
    """p50 ms of one 15-token query (<s> + 13 ids + </s>), one thread, after 3 warm-up calls."""
    import torch

    ids = [0, *range(100, 113), 2]
    torch.set_num_threads(1)
    out = {}
    for name, model in models.items():
        if name != "torch":
            from clamp3.onnx.runtime import OnnxModel

            model = OnnxModel.from_pretrained(model.directory, threads=1)  # type: ignore[attr-defined]
        times = []
        for i in range(reps + 3):
            start = time.perf_counter()
            model.embed_text_ids([ids])  # type: ignore[attr-defined]
            if i >= 3:
                times.append(time.perf_counter() - start)
        out[name] = 1000 * statistics.median(times)
    return out


def tower_throughput(models: dict[str, object], threads: int, cfg) -> dict[str, dict[str, float]]:
    """Items per second per tower: 16 full text segments, 4 full patch segments, 8 full audio
    segments (random inputs, the same for every backend), and max |difference| to torch."""
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    batches = {
        "text": [[0, *rng.integers(3, 1000, cfg.text.segment_length - 2).tolist(), 2] for _ in range(16)],
        "symbolic": [rng.integers(0, 128, (cfg.symbolic.segment_length, 64)) for _ in range(4)],
        "audio": [
            rng.standard_normal((cfg.audio.segment_length - 2, cfg.audio.feature_dim)) for _ in range(8)
        ],
    }
    calls = {"text": "embed_text_ids", "symbolic": "embed_patches", "audio": "embed_audio_features"}
    out: dict[str, dict[str, float]] = {}
    for tower, batch in batches.items():
        results, rates = {}, {}
        for name, model in models.items():
            fn = getattr(model, calls[tower])
            fn(batch[:1])  # warm-up
            start = time.perf_counter()
            results[name] = np.stack(fn(batch, batch_size=16))
            rates[name] = len(batch) / (time.perf_counter() - start)
        rates["fp32_max_diff"] = float(np.abs(results["fp32"] - results["torch"]).max())
        out[tower] = rates
    return out


def retrieval(models: dict[str, object], refs: list[str], queries: list[str]) -> dict[str, float]:
    """MRR of every backend on the synthetic benchmark (expected ranks on ties)."""
    from clamp3.evaluate.metrics import cosine_similarity, metrics_from_counts, rank_counts
    from clamp3.pipeline import Clamp3Pipeline

    out = {}
    for name, model in models.items():
        pipeline = Clamp3Pipeline(model)  # type: ignore[arg-type]
        r, q = pipeline.encode_texts(refs), pipeline.encode_texts(queries)
        out[name] = metrics_from_counts(*rank_counts(cosine_similarity(q, r), np.arange(len(refs))))["mrr"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="folder for the models, index and results")
    parser.add_argument("--preset", choices=["saas", "tiny"], default="saas")
    parser.add_argument("--n", type=int, default=300, help="references in the synthetic benchmark")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    refs, queries = make_texts(args.n)
    dirs = build_models(args.work, args.preset, refs + queries)
    idx = build_index(args.work, dirs["torch"], refs)
    query = "a slow melancholy waltz for solo piano with a gentle dotted theme in minor"
    report: dict[str, object] = {"load_average": os.getloadavg()}
    cold = {}
    for _ in range(args.cold_runs):  # interleaved, so load changes hit every backend alike
        for name in ("torch", "fp32", "int8"):
            cold.setdefault(name, []).append(cold_start(dirs[name], idx, query))
    report["cold_start_s"] = {k: statistics.median(t for t, _, _ in v) for k, v in cold.items()}
    report["cold_start_cpu_s"] = {k: statistics.median(c for _, _, c in v) for k, v in cold.items()}
    report["peak_rss_mb"] = {k: max(r for _, r, _ in v) for k, v in cold.items()}
    models = load_backends(dirs, args.threads)
    report["query_p50_ms_1_thread"] = query_latency(models, args.reps)
    report["throughput_items_per_s"] = tower_throughput(models, args.threads, models["torch"].config)  # type: ignore[attr-defined]
    report["mrr"] = retrieval(models, refs, queries)
    report["load_average_end"] = os.getloadavg()
    (args.work / "onnx_benchmark.json").write_text(json.dumps(report, indent=2))
    print_report(report)


def print_report(r: dict) -> None:
    cold, cpu, rss = r["cold_start_s"], r["cold_start_cpu_s"], r["peak_rss_mb"]
    p50 = r["query_p50_ms_1_thread"]
    print(f"load average at start {r['load_average']}, at end {r['load_average_end']}")
    print(f"{'':24}{'torch':>10}{'onnx fp32':>12}{'onnx int8':>12}")
    print(f"{'cold start search (s)':24}{cold['torch']:>10.2f}{cold['fp32']:>12.2f}{cold['int8']:>12.2f}")
    print(f"{'  its CPU time (s)':24}{cpu['torch']:>10.2f}{cpu['fp32']:>12.2f}{cpu['int8']:>12.2f}")
    print(f"{'peak RSS search (MB)':24}{rss['torch']:>10.0f}{rss['fp32']:>12.0f}{rss['int8']:>12.0f}")
    print(f"{'15-token query p50 (ms)':24}{p50['torch']:>10.1f}{p50['fp32']:>12.1f}{p50['int8']:>12.1f}")
    for tower, rates in r["throughput_items_per_s"].items():
        row = f"{tower + ' items/s':24}{rates['torch']:>10.1f}{rates['fp32']:>12.1f}{rates['int8']:>12.1f}"
        print(f"{row}   (fp32 max |diff| to torch {rates['fp32_max_diff']:.1e})")
    mrr = r["mrr"]
    print(f"{'synthetic MRR':24}{mrr['torch']:>10.4f}{mrr['fp32']:>12.4f}{mrr['int8']:>12.4f}")
    print(
        f"ratios: cold start fp32/torch {cold['fp32'] / cold['torch']:.2f}, int8/torch {cold['int8'] / cold['torch']:.2f}; "
        f"query p50 int8/torch {p50['int8'] / p50['torch']:.2f} (goal <= 0.4); "
        f"MRR int8 - fp32 {mrr['int8'] - mrr['fp32']:+.4f} (goal within 0.01)"
    )


if __name__ == "__main__":
    main()
