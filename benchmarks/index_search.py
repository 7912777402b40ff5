"""Index and search speed: approximate vs exact recall@10 and query time, and text-query latency.

Part 1 (goal: recall@10 >= 0.95): N unit vectors (default 100k random, 768-d) in exact (flat),
HNSW and IVF indexes built by ``clamp3.index.SearchIndex`` (approximate kinds self-calibrated);
fresh queries from the same distribution; recall@10 against exact search; time per query one at
a time (1 thread, as a service answers single queries) and in one batch (``--threads``), side by
side with exact search. ``--data clustered`` uses 1000 Gaussian clusters instead (closer to real
embeddings, where approximate search pays off).

Part 2 (goal: p50 < 100 ms): text-query latency = encoding a query with the full-size text tower
(CLaMP 3 ``saas`` architecture, deterministic recipe weights from ``clamp3.testing``) + searching
the N-item index, for each torch thread count in ``--latency-threads``. Real tokenizer files are
not available offline, so queries are token-id lists of realistic length (10-30 tokens, with
<s> ... </s>) fed to ``model.embed_text_ids``; tokenisation (a Rust ``tokenizers`` call, well
under 1 ms) is not timed.

The machine is shared: wall times are printed next to the CPU time this process used, and the
load average. With one thread and a busy machine, CPU time approximates the wall time of an idle
core (OpenMP spin-waiting inflates CPU time when several threads are used).

    .venv/bin/python benchmarks/index_search.py                         # 100k random, all kinds
    .venv/bin/python benchmarks/index_search.py --n 20000 --kinds flat,ivf --data clustered
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
import torch

from clamp3.index import SearchIndex, normalize
from clamp3.index.kinds import recall_at_k


def make_vectors(n: int, dim: int, seed: int, data: str) -> np.ndarray:
    """float32 (n, dim) unit rows: uniform random, or around 1000 fixed random cluster centres."""
    rng = np.random.default_rng(seed)
    centres = normalize(np.random.default_rng(123).standard_normal((1000, dim), dtype=np.float32))
    out = np.empty((n, dim), np.float32)
    for lo in range(0, n, 20000):
        size = min(20000, n - lo)
        noise = rng.standard_normal((size, dim), dtype=np.float32)
        # sigma 0.03 per dim: |noise| ~ 0.83, so a member keeps cosine ~0.77 with its centre
        out[lo : lo + size] = (
            noise if data == "random" else centres[rng.integers(0, 1000, size)] + 0.03 * noise
        )
    return normalize(out)


def build(kind: str, vectors: np.ndarray) -> tuple[SearchIndex, float]:
    start = time.perf_counter()
    index = SearchIndex.create(vectors.shape[1], kind, train_vectors=vectors if kind == "ivf" else None)
    index.add(vectors, [{"key": str(i)} for i in range(len(vectors))], progress=True)
    return index, time.perf_counter() - start


def time_queries(index: SearchIndex, queries: np.ndarray, threads: int) -> dict:
    """Found rows (Q, 10) and ms per query: single (wall, CPU; 1 thread) and batched (``threads``)."""
    faiss.omp_set_num_threads(1)
    index.search(queries[:2], 10)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    for q in queries:
        index.search(q[None, :], 10)
    single, single_cpu = time.perf_counter() - t, time.process_time() - c
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    hits = index.search(queries, 10)
    batch = time.perf_counter() - t
    scale = 1e3 / len(queries)
    found = np.array([[h.row for h in row] for row in hits])
    return {"found": found, "single": single * scale, "cpu": single_cpu * scale, "batch": batch * scale}


def part_ann(args: argparse.Namespace) -> dict[str, SearchIndex]:
    print(f"== approximate vs exact: {args.n} {args.data} unit vectors, {args.dim}-d, {args.queries} queries")
    vectors = make_vectors(args.n, args.dim, 0, args.data)
    queries = make_vectors(args.queries, args.dim, 1, args.data)
    truth = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :10]
    indexes, rows = {}, []
    for kind in args.kinds:
        index, seconds = build(kind, vectors)
        indexes[kind] = index
        rows.append((kind, seconds, index.meta, time_queries(index, queries, args.threads)))
    exact = next((r[3] for r in rows if r[0] == "flat"), None)
    print(
        f"{'kind':<5} {'build s':>8} {'setting':<15} {'recall@10':>9} {'ms/query':>8} {'CPU ms':>7} "
        f"{'batched':>7} {'CPU vs exact':>12}"
    )
    for kind, seconds, meta, t in rows:
        setting = ", ".join(f"{k}={v}" for k, v in meta["params"].items()) or "exact"
        ratio = f"{t['cpu'] / exact['cpu']:.2f}x" if exact else "-"
        print(
            f"{kind:<5} {seconds:>8.1f} {setting:<15} {recall_at_k(t['found'], truth):>9.3f} {t['single']:>8.2f} "
            f"{t['cpu']:>7.2f} {t['batch']:>7.2f} {ratio:>12}"
        )
    return indexes


def full_text_model():
    """The saas text tower with the deterministic recipe weights (keys = official names)."""
    from clamp3.config import load_preset
    from clamp3.model import Clamp3Model
    from clamp3.testing import deterministic_state_dict

    model = Clamp3Model(load_preset("saas"), modalities=["text"])
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(deterministic_state_dict(shapes), strict=True)
    return model.eval()


def latency(model, index: SearchIndex, queries: list[list[int]]) -> dict[str, np.ndarray]:
    """Per-query ms: encode (wall), search (wall), total (wall), total CPU."""
    out = {"encode": [], "search": [], "total": [], "cpu": []}
    for ids in queries:
        t0, c0 = time.perf_counter(), time.process_time()
        vector = model.embed_text_ids([ids])[0]
        t1 = time.perf_counter()
        index.search(vector[None, :], 10)
        t2, c2 = time.perf_counter(), time.process_time()
        out["encode"].append(t1 - t0)
        out["search"].append(t2 - t1)
        out["total"].append(t2 - t0)
        out["cpu"].append(c2 - c0)
    return {k: np.array(v) * 1e3 for k, v in out.items()}


def part_latency(args: argparse.Namespace, indexes: dict[str, SearchIndex]) -> None:
    print(f"\n== text-query latency: full-size text tower + top-10 search over {args.n} items")
    print("   (no real tokenizer offline: random token-id queries of 10-30 tokens via model.embed_text_ids)")
    model = full_text_model()
    rng = np.random.default_rng(2)
    lengths = rng.integers(8, 29, size=args.latency_queries)
    queries = [[0, *rng.integers(5, 250000, size=int(n)).tolist(), 2] for n in lengths]
    print(
        f"{'threads':>7} {'kind':<5} {'encode p50':>10} {'search p50':>10} {'total p50':>9} {'total p95':>9} "
        f"{'CPU p50':>8} {'p50 / 100 ms':>12}"
    )
    with torch.inference_mode():
        for threads in args.latency_threads:
            torch.set_num_threads(threads)
            faiss.omp_set_num_threads(threads)
            model.embed_text_ids(queries[:3])  # warm-up
            for kind, index in indexes.items():
                ms = latency(model, index, queries)
                p50 = {k: float(np.percentile(v, 50)) for k, v in ms.items()}
                print(
                    f"{threads:>7} {kind:<5} {p50['encode']:>8.1f}ms {p50['search']:>8.1f}ms {p50['total']:>7.1f}ms "
                    f"{np.percentile(ms['total'], 95):>7.1f}ms {p50['cpu']:>6.1f}ms {p50['total'] / 100:>11.2f}x"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", choices=["random", "clustered"], default="random")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["flat", "hnsw", "ivf"])
    parser.add_argument("--threads", type=int, default=2, help="threads for building and batched search")
    parser.add_argument("--latency-queries", type=int, default=30)
    parser.add_argument("--latency-threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    indexes = part_ann(args)
    if not args.skip_latency:
        part_latency(args, indexes)
    print(f"load average at end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
