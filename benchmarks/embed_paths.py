"""Every embedding path of every tower, side by side in one run, against the FLOP bound.

Per modality (full-size towers, parity-recipe weights) on a mixed workload: synthetic items
shaped like real collections (48 scores of 16-1,059 patches, log-normal around lead-sheet
length; 48 text queries of 8-39 tokens; 16 recordings of 6-60 MERT rows) plus the parity inputs.

1. official: one item at a time, every segment padded to the full segment length (symbolic:
   the dense one-hot ``Linear(8192, 768)`` patch embedding), as the official extractor;
2. padded: the previous release, segments sorted by length in padded batches of at most 32
   that close at 10 % padding (``plan_batches(padded=True)`` + the ordinary transformers forward);
3. packed: ``embed_*`` now, segments packed without padding by a token budget;
4. the lower bound: FLOPs of the real tokens (dense layers, attention, projection) divided by
   the best fp32 GEMM rate measured at BERT shapes.

A fifth row, gemms, times only the dense layers' matrix products at the packed path's batch
shapes: a bound-like reference measured under the same interference as the paths. Repeats are
interleaved (official, padded, packed, gemms, official, ...) so interference from other
processes hits every path alike; the table gives the median, the spread (max - min) / median,
median / bound and the packed path / gemms. All paths must agree (checked), and on the parity inputs the packed path
must equal the padded one within 1e-5 (global, per-segment and unpooled outputs).

Usage: python benchmarks/embed_paths.py [--threads 2] [--reps 3] [--official-reps 2] [--skip-parity-check]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from model_throughput import PARITY, deterministic_model, gemm_rate
from model_throughput import official_path as official_symbolic

from clamp3 import Clamp3Model
from clamp3.batching import plan_batches
from clamp3.embedding import prepare_audio, prepare_patches, prepare_text, run_padded, run_segments
from clamp3.segments import join_unpooled, pool_segments, segment_item

MODALITIES = ("text", "audio", "symbolic")  # the short ones first: their tables print soonest


def synthetic(seed: int) -> dict[str, list]:
    """The synthetic part of the workload, as the ``embed_*`` calls take it."""
    rng = np.random.default_rng(seed)
    n_patches = np.clip(np.round(rng.lognormal(math.log(160), 0.9, 48)), 16, 1059).astype(int)
    n_patches[:2] = 16, 1059
    scores = []
    for n in n_patches:
        p = rng.integers(0, 128, size=(int(n), 64))
        p[0], p[-1] = 1, [1] + [2] * 63
        scores.append(p)
    queries = [[0, *rng.integers(5, 250002, size=int(n) - 2).tolist(), 2] for n in rng.integers(8, 40, 48)]
    queries[0], queries[1] = queries[0][:8], [0, *range(5, 42), 2]
    rows = [rng.standard_normal((int(n), 768)).astype(np.float32) for n in rng.integers(6, 61, 16)]
    return {"symbolic": scores, "text": queries, "audio": rows}


def parity_inputs() -> dict[str, list]:
    """The parity set's model inputs (patches of 23-3,852, texts of 10-300, 5-300 rows)."""
    out: dict[str, list] = {"symbolic": [], "text": [], "audio": []}
    for entry in json.loads((PARITY / "model" / "manifest.json").read_text()):
        if entry["modality"] == "symbolic":
            out["symbolic"].append(np.load(PARITY / entry["patches"]))
        elif entry["modality"] == "text":
            out["text"].append(json.loads((PARITY / entry["input"]).read_text()))
        else:
            out["audio"].append(np.load(PARITY / entry["input"])[0])
    return out


def tensors(model: Clamp3Model, modality: str, items: list) -> list[torch.Tensor]:
    if modality == "text":
        return [prepare_text(ids) for ids in items]
    if modality == "symbolic":
        return [prepare_patches(p) for p in items]
    return [prepare_audio(f, model.config.audio.feature_dim) for f in items]


def embed(model: Clamp3Model, modality: str, items: list, pooled: bool = True) -> list[np.ndarray]:
    """The packed path: this package's ``embed_*`` call."""
    fn = {"text": model.embed_text_ids, "symbolic": model.embed_patches, "audio": model.embed_audio_features}
    return fn[modality](items, pooled=pooled)


def padded(model: Clamp3Model, modality: str, items: list, pooled: bool = True) -> list[np.ndarray]:
    """The previous release: length-sorted padded batches of <= 32 segments, <= 10 % padding."""
    length = model.config.tower(modality).segment_length
    prepared = tensors(model, modality, items)
    plans = [segment_item(t.shape[0], length) for t in prepared]
    pieces = [t[s.start : s.end] for t, plan in zip(prepared, plans) for s in plan]
    outs: list = [None] * len(pieces)
    with torch.inference_mode():
        for idx in plan_batches([p.shape[0] for p in pieces], 32 * length, padded=True, max_items=32):
            for i, out in zip(idx, run_padded(model, modality, [pieces[i] for i in idx], pooled)):
                outs[i] = out
    results, cursor = [], 0
    for plan in plans:
        chunk, cursor = outs[cursor : cursor + len(plan)], cursor + len(plan)
        results.append(pool_segments(np.stack(chunk), plan) if pooled else join_unpooled(chunk, plan))
    return results


def official(model: Clamp3Model, modality: str, items: list) -> list[np.ndarray]:
    """One item at a time, each segment padded to the full segment length."""
    if modality == "symbolic":
        return official_symbolic(model, items)
    length = model.config.tower(modality).segment_length
    pad = model.config.text.pad_token_id if modality == "text" else 0
    out = []
    with torch.inference_mode():
        for item in tensors(model, modality, items):
            plan = segment_item(item.shape[0], length)
            vectors = []
            for s in plan:
                seg = item.new_full((1, length, *item.shape[1:]), pad)
                seg[0, : s.length] = item[s.start : s.end]
                mask = torch.zeros(1, length, dtype=torch.long)
                mask[0, : s.length] = 1
                vectors.append(model.get_features(modality, seg, mask)[0].numpy())
            out.append(pool_segments(np.stack(vectors), plan))
    return out


def dense_gemms(model: Clamp3Model, modality: str, items: list) -> list:
    """The dense layers' matrix products alone (Q, K, V, attention output, feed-forward) at the
    packed path's batch shapes, on zeros: what the packed path would cost with free attention,
    embeddings, LayerNorm and GELU, measured under the same interference as the paths."""
    cfg = model.config.tower(modality)
    tower = getattr(model, f"{modality}_model")
    encoder = tower.base if modality == "symbolic" else tower
    lengths = [
        s.length for t in tensors(model, modality, items) for s in segment_item(len(t), cfg.segment_length)
    ]
    with torch.inference_mode():
        for idx in plan_batches(lengths, 32 * cfg.segment_length):
            layer_gemms(encoder, torch.zeros(sum(lengths[i] for i in idx), cfg.encoder.hidden_size))
    return []


def layer_gemms(encoder: torch.nn.Module, x: torch.Tensor) -> None:
    """Every layer's dense products on x (T, H), nothing else."""
    for layer in encoder.encoder.layer:
        attn = layer.attention.self
        attn.query(x), attn.key(x), attn.value(x), layer.attention.output.dense(x)
        layer.output.dense(layer.intermediate.dense(x))


def real_flops(model: Clamp3Model, modality: str, items: list) -> float:
    """Forward FLOPs of the real (unpadded) tokens: dense layers and the patch embedding per
    token, attention scores and values per segment, the projection per segment."""
    cfg = model.config.tower(modality)
    h, f, layers = cfg.encoder.hidden_size, cfg.encoder.intermediate_size, cfg.encoder.num_layers
    per_token = layers * 2 * (4 * h * h + 2 * h * f) + (2 * 64 * h if modality == "symbolic" else 0)
    total = 0.0
    for item in tensors(model, modality, items):
        for s in segment_item(item.shape[0], cfg.segment_length):
            total += (
                s.length * per_token
                + layers * 4 * s.length * s.length * h
                + 2 * h * model.config.projection_dim
            )
    return total


def timed(fn: Callable[[], list], times: list[float]) -> list:
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
    return result


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def parity_check(model: Clamp3Model, inputs: dict[str, list]) -> None:
    """Packed vs padded on the parity inputs: global, per-segment and unpooled, <= 1e-5."""
    for modality, items in inputs.items():
        length = model.config.tower(modality).segment_length
        pieces = [
            t[s.start : s.end] for t in tensors(model, modality, items) for s in segment_item(len(t), length)
        ]
        with torch.inference_mode():
            reference = [run_padded(model, modality, [p], True)[0] for p in pieces]
        diffs = {
            "global": max_diff(embed(model, modality, items), padded(model, modality, items)),
            "per-segment": max_diff(run_segments(model, modality, pieces, True, 32), reference),
            "unpooled": max_diff(embed(model, modality, items, False), padded(model, modality, items, False)),
        }
        print(
            f"parity inputs, {modality:8s} packed vs padded max |diff|: "
            + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        )
        assert max(diffs.values()) <= 1e-5, diffs


def measure(model: Clamp3Model, modality: str, items: list, reps: int, official_reps: int) -> dict:
    """Interleaved repeats of the three paths -> their times, and the largest disagreement."""
    times: dict[str, list[float]] = {"official": [], "padded": [], "packed": [], "gemms": []}
    paths = {"official": official, "padded": padded, "packed": embed, "gemms": dense_gemms}
    for path in paths.values():  # warm-up on a few items (first-call allocations, caches)
        path(model, modality, items[:3])
    outs: dict[str, list] = {}
    for rep in range(reps):
        for name, path in paths.items():
            if name != "official" or rep < official_reps:
                outs[name] = timed(lambda path=path: path(model, modality, items), times[name])
    diff = max(max_diff(outs["packed"], outs[name]) for name in ("official", "padded"))
    assert diff < 1e-4, (modality, diff)
    return {"times": times, "diff": diff}


def report(modality: str, n_items: int, tokens: int, bound: float, result: dict) -> float:
    """Print one modality's table; return the packed path's speed-up over the official one."""
    med = {k: statistics.median(v) for k, v in result["times"].items()}
    print(
        f"\n{modality}: {n_items} items, {tokens} real tokens, max |diff| between paths {result['diff']:.1e}"
    )
    print(
        f"  {'path':10s} {'median s':>9s} {'min s':>8s} {'max s':>8s} {'spread':>7s} {'x bound':>8s} {'speed-up':>9s}"
    )
    for name, values in [*result["times"].items(), ("bound", [bound])]:
        spread = (max(values) - min(values)) / med.get(name, bound)
        print(
            f"  {name:10s} {med.get(name, bound):9.3f} {min(values):8.3f} {max(values):8.3f} {spread:6.0%} "
            f"{med.get(name, bound) / bound:8.2f} {med['official'] / med.get(name, bound):8.2f}x"
        )
    print(f"  packed / gemms alone: {med['packed'] / med['gemms']:.2f}x")
    return med["official"] / med["packed"]


def single_query(model: Clamp3Model, reps: int = 30) -> None:
    """One 15-token query on one thread: the ordinary forward, the packed one and the same
    matrix products alone (the query path must stay lean), interleaved, medians."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ids = [[0, *range(1000, 1013), 2]]
    x = torch.zeros(15, model.config.text.encoder.hidden_size)

    def gemms() -> list:
        with torch.inference_mode():
            layer_gemms(model.text_model, x)
            model.text_proj(x[:1])
        return []

    paths = {
        "padded": lambda: padded(model, "text", ids),
        "packed": lambda: embed(model, "text", ids),
        "gemms": gemms,
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(reps):
        for name, path in paths.items():
            timed(path, times[name])
    med = {k: statistics.median(v) for k, v in times.items()}
    torch.set_num_threads(threads)
    print(
        f"\none 15-token query, 1 thread (median of {reps}): padded {med['padded'] * 1e3:.1f} ms "
        f"({med['padded'] / med['gemms']:.2f}x its matrix products), packed {med['packed'] * 1e3:.1f} ms "
        f"({med['packed'] / med['gemms']:.2f}x), matrix products alone {med['gemms'] * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3, help="repeats of the padded and packed paths")
    parser.add_argument("--official-reps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-parity-check", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = deterministic_model(MODALITIES)
    work, par = synthetic(args.seed), parity_inputs()
    if not args.skip_parity_check:
        parity_check(model, par)
    rate, speedups = gemm_rate(), []
    for modality in MODALITIES:
        items = work[modality] + par[modality]
        result = measure(model, modality, items, args.reps, args.official_reps)
        rate = max(rate, gemm_rate(trials=2))  # the best rate seen: interference only loosens it
        print(
            f"\nfp32 GEMM rate (512x768 @ 768x3072, best so far): {rate / 1e9:.0f} GFLOP/s, {args.threads} threads"
        )
        tokens = sum(len(t) for t in tensors(model, modality, items))
        bound = real_flops(model, modality, items) / rate
        speedups.append(report(modality, len(items), tokens, bound, result))
    single_query(model)
    print(
        f"\ngeometric-mean speed-up of the packed path over the official one: "
        f"{math.exp(statistics.fmean(math.log(s) for s in speedups)):.2f}x (goal >= 5x)"
    )


if __name__ == "__main__":
    main()
