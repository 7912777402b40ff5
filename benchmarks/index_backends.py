"""FAISS and Milvus Lite side by side at up to 1M clustered vectors: build, disk, memory, latency, recall.

Data (synthetic, written in chunks to a memory-mapped ``.npy`` under ``--workdir`` and reused):
``--n`` unit vectors of ``--dim`` (768) around ``--clusters`` Gaussian centres, each with a
``bucket`` column (0-99, uniform) so that ``bucket == 7`` keeps 1 % of the rows and
``bucket < 30`` keeps 30 %. Queries are fresh draws from the same mixture. The exact top-10 of
every query, unfiltered and under both filters, comes from a chunked numpy scan.

Each index kind runs in its own child process (so peak RSS is its own): build (FAISS on
``--build-threads``, every core by default) through
``clamp3.index.SearchIndex`` (approximate kinds calibrated once, on the memory map, for recall@10
>= 0.95), size on disk, peak RSS, p50 / p95 latency of single k=10 queries on ``--threads``
FAISS threads (unfiltered, 1 %, 30 %),
recall@10 against exact; the 1 % filter twice, side by side: with the index's own plan (a
filter keeping few rows is scored exactly over their stored vectors, ``clamp3.index.subset``)
and forced onto the engine's filtered search (``1%eng``). Kinds: ``faiss-flat``, ``faiss-hnsw``,
``faiss-ivf``, ``faiss-ivfpq`` (raw FAISS IVF-PQ, 4 dims per code byte, re-ranking a calibrated
number of candidates from the memory map: not an index kind of the project, here for the memory
column), and Milvus Lite's ``milvus-flat``,
``milvus-hnsw``, ``milvus-ivf`` (IVF_FLAT), ``milvus-ivf_sq8``, ``milvus-hnsw_sq``.

Memory: vectors stay in the memory map and are handed over ``CHUNK`` rows at a time; each child
watches its resident set and stops with a message above ``--max-rss-gb`` (default 24), so a
1 M run cannot push a shared machine into swap. ``peak_rss_mb`` is the child's high-water mark
(Milvus Lite 3.x runs inside it), the parent's is printed at the end.

The machine may be shared: compare the rows with each other (one run, one machine), and read the
``filtered/unfiltered`` latency ratios rather than the absolute times.

    python benchmarks/index_backends.py --n 1000000                      # the issue's scale
    python benchmarks/index_backends.py --n 50000 --kinds faiss-flat,milvus-hnsw
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FILTERS = {"none": None, "1%": "bucket == 7", "1%eng": "bucket == 7", "30%": "bucket < 30"}
KINDS = "faiss-flat,faiss-hnsw,faiss-ivf,faiss-ivfpq,milvus-flat,milvus-hnsw,milvus-ivf,milvus-ivf_sq8,milvus-hnsw_sq"
CHUNK = 50_000


def make_data(work: Path, n: int, dim: int, clusters: int, n_queries: int, seed: int) -> None:
    """vectors.npy (n, dim) float32 unit rows, buckets.npy (n,), queries.npy; reused if present."""
    stamp = {"n": n, "dim": dim, "clusters": clusters, "queries": n_queries, "seed": seed}
    if (work / "data.json").is_file() and json.loads((work / "data.json").read_text()) == stamp:
        return
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    spread = 0.6  # within-cluster noise per dimension vs unit-variance centres: clusters overlap a little

    def draw(count: int) -> np.ndarray:
        x = centres[rng.integers(0, clusters, count)] + spread * rng.standard_normal((count, dim)).astype(
            np.float32
        )
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    vectors = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, CHUNK):
        vectors[start : start + CHUNK] = draw(min(CHUNK, n - start))
    vectors.flush()
    np.save(work / "buckets.npy", rng.integers(0, 100, n).astype(np.int64))
    np.save(work / "queries.npy", draw(n_queries).astype(np.float32))
    (work / "data.json").write_text(json.dumps(stamp))


def exact(work: Path, k: int = 10) -> dict[str, np.ndarray]:
    """Exact top-k rows (Q, k) per filter, from a chunked scan of the memory map."""
    cached = work / "truth.npz"
    if cached.is_file():
        return dict(np.load(cached))
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    buckets, queries = np.load(work / "buckets.npy"), np.load(work / "queries.npy")
    masks = {"none": None, "1%": buckets == 7, "30%": buckets < 30}  # "1%eng" shares "1%"
    best = {
        name: (np.full((len(queries), 0), -np.inf, np.float32), np.zeros((len(queries), 0), np.int64))
        for name in masks
    }
    for start in range(0, len(vectors), CHUNK):
        sims = queries @ np.asarray(vectors[start : start + CHUNK]).T
        for name, mask in masks.items():
            block = sims if mask is None else np.where(mask[start : start + CHUNK], sims, -np.inf)
            scores, rows = best[name]
            part = np.argpartition(-block, k - 1, axis=1)[:, :k]
            scores = np.hstack([scores, np.take_along_axis(block, part, axis=1)])
            rows = np.hstack([rows, part + start])
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best[name] = (np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1))
    truth = {name: rows for name, (_, rows) in best.items()}
    np.savez(cached, **truth)
    return truth


def _disk(*paths: Path) -> int:
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total


def _build(spec: str, work: Path, vectors: np.ndarray, buckets: np.ndarray):
    """The index of ``spec`` over the memory map, built in chunks and calibrated once."""
    from clamp3.index import SearchIndex
    from clamp3.index.backends import faiss as faiss_backend
    from clamp3.index.backends import milvus as milvus_backend

    backend, _, variant = spec.partition("-")
    kind = {"ivf_sq8": "ivf", "hnsw_sq": "hnsw"}.get(variant, variant)
    options: dict = {"columns": {"bucket": "int"}}
    if kind == "ivf":
        options["train_vectors"] = vectors[
            np.random.default_rng(1).choice(len(vectors), min(len(vectors), 100_000), replace=False)
        ]
    if backend == "milvus":
        options |= {
            "uri": str(work / f"{spec}.db"),
            "collection": "bench",
            "overwrite": True,
            "index_type": variant.upper() if variant != kind else None,
        }
        options["train_vectors"] = np.empty((len(vectors), 0)) if kind == "ivf" else None  # nlist ~ sqrt(N)
    faiss_backend.RECALIBRATE_GROWTH = milvus_backend.RECALIBRATE_GROWTH = float(
        "inf"
    )  # calibrate once, below
    index = SearchIndex.create(vectors.shape[1], kind, backend=backend, **options)
    for start in range(0, len(vectors), CHUNK):
        rows = range(start, min(start + CHUNK, len(vectors)))
        index.add(
            np.asarray(vectors[start : rows.stop]),
            [{"key": f"v{i:08d}", "bucket": int(buckets[i])} for i in rows],
        )
    if backend == "milvus":
        index.calibrate([f"v{i:08d}" for i in range(len(vectors))], vectors)
    else:
        index.calibrate(vectors)
    index.save(work / f"{spec}.idx")
    return index, [work / f"{spec}.idx", work / f"{spec}.db"]


class _IvfPq:
    """Raw FAISS IVF-PQ (dim/4 bytes a vector) re-ranking its best candidates from the memory map.

    Like the project's kinds, it is calibrated once for recall@10 >= 0.95 (plus the calibration
    margin) on probe queries drawn from the data, as searched: the smallest ``nprobe`` at which
    one of the re-rank depths ``DEPTHS`` reaches it, with the smallest such depth (the codes'
    error decides the depth: at 1 M clustered rows the best 100 by code miss too many true
    neighbours whatever ``nprobe``). A filter keeping at most ``EXACT_SUBSET_ROWS`` rows is scored
    exactly over those rows' vectors (fetched once per filter from the memory map); wider filters
    search the lists with an ID selector and ``nprobe`` widened by 1/sqrt(share)."""

    DEPTHS = (100, 200, 400, 800, 1600)

    def __init__(self, work: Path, vectors: np.ndarray, buckets: np.ndarray):
        import faiss

        from clamp3.index.kinds import ivf_lists

        self.faiss, self.vectors, self.buckets = faiss, vectors, buckets
        dim = vectors.shape[1]
        self.index = faiss.index_factory(
            dim, f"IVF{ivf_lists(len(vectors))},PQ{dim // 4}x8", faiss.METRIC_INNER_PRODUCT
        )
        faiss.downcast_index(self.index).do_polysemous_training = False  # minutes of annealing, unused here
        sample = np.random.default_rng(1).choice(len(vectors), min(len(vectors), 100_000), replace=False)
        self.index.train(np.asarray(vectors[np.sort(sample)]))
        for start in range(0, len(vectors), CHUNK):
            self.index.add(np.asarray(vectors[start : start + CHUNK]))
        self.path = work / "faiss-ivfpq.faiss"
        faiss.write_index(self.index, str(self.path))
        self.masks = {name: self._mask(name) for name in ("1%", "30%")}
        self.selectors = {name: faiss.IDSelectorBatch(np.flatnonzero(m)) for name, m in self.masks.items()}
        self.subsets: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self.nprobe, self.depth = self._calibrate()

    def _calibrate(self) -> tuple[int, int]:
        from clamp3.index.kinds import CALIBRATION_MARGIN, GRID, exact_top_k, probe_queries

        probes = probe_queries(self.vectors, 256, seed=0)
        truth = [set(t.tolist()) for t in exact_top_k(probes, self.vectors, 10)]
        for nprobe in [g for g in GRID if 32 <= g < self.index.nlist] + [self.index.nlist]:
            params = self.faiss.SearchParametersIVF()
            params.nprobe = nprobe
            _, candidates = self.index.search(probes, self.DEPTHS[-1], params=params)  # best first
            for depth in self.DEPTHS:  # a shallower search's candidates are a prefix of these
                found = [self._rerank(q, rows[:depth]) for q, rows in zip(probes, candidates)]
                recall = np.mean([len(set(f) & t) / 10 for f, t in zip(found, truth)])
                if recall >= 0.95 + CALIBRATION_MARGIN:
                    return nprobe, depth
        return self.index.nlist, self.DEPTHS[-1]

    def _rerank(self, query: np.ndarray, rows: np.ndarray) -> list[int]:
        from clamp3.index.subset import exact_subset_nearest

        rows = np.sort(rows[rows >= 0])  # ascending: equal scores keep the lower row first
        best = exact_subset_nearest(query[None, :], np.asarray(self.vectors[rows]), rows, 10)[1][0]
        return best[best >= 0].tolist()

    def _mask(self, name: str) -> np.ndarray:
        return self.buckets == 7 if name == "1%" else self.buckets < 30

    def _listed(self, query: np.ndarray, nprobe: int, name: str | None) -> list[int]:
        params = self.faiss.SearchParametersIVF()
        params.nprobe = nprobe
        if name is not None:
            params.sel = self.selectors[name]
        _, rows = self.index.search(query[None, :], self.depth, params=params)
        return self._rerank(query, rows[0])

    def search(self, query: np.ndarray, k: int, name: str) -> list[int]:
        from clamp3.index.subset import EXACT_SUBSET_ROWS, exact_subset_nearest

        if name == "none":
            return self._listed(query, self.nprobe, None)[:k]
        base = name.replace("eng", "")  # "1%eng": the same filter, forced onto the lists
        if base not in self.subsets:
            rows = np.flatnonzero(self.masks[base])
            small = len(rows) <= EXACT_SUBSET_ROWS
            vectors = np.ascontiguousarray(self.vectors[rows], dtype=np.float32) if small else None
            self.subsets[base] = (rows, vectors)
        rows, subset = self.subsets[base]
        if subset is not None and base == name:
            return exact_subset_nearest(query[None, :], subset, rows, k)[1][0].tolist()
        nprobe = int(min(self.index.nlist, self.nprobe / (len(rows) / len(self.masks[base])) ** 0.5))
        return self._listed(query, nprobe, base)[:k]


def _rss_gb(field: str = "VmRSS") -> float:
    """This process's resident set (``VmRSS``) or its high-water mark (``VmHWM``), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return 0.0


def _watch_memory(limit_gb: float) -> None:
    """Stop this process (exit 3, one line on stderr) once its resident set passes ``limit_gb``."""
    import threading

    def watch() -> None:
        while True:
            if _rss_gb() > limit_gb:
                print(f"stopped: resident set above --max-rss-gb {limit_gb}", file=sys.stderr, flush=True)
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def child(spec: str, work: Path, threads: int, build_threads: int, max_rss_gb: float) -> dict:
    import faiss

    _watch_memory(max_rss_gb)
    faiss.omp_set_num_threads(build_threads)  # building and calibrating: a batch job's view
    vectors = np.load(work / "vectors.npy", mmap_mode="r")
    buckets, queries = np.load(work / "buckets.npy"), np.load(work / "queries.npy")
    truth = exact(work)
    for stale in (work / f"{spec}.idx", work / f"{spec}.db"):
        shutil.rmtree(stale, ignore_errors=True)
    start = time.perf_counter()
    if spec == "faiss-ivfpq":
        index = _IvfPq(work, vectors, buckets)
        paths = [index.path]
        search = lambda q, name: index.search(q, 10, name)  # noqa: E731
        params = {"nprobe": index.nprobe, "re-rank": index.depth}
    else:
        index, paths = _build(spec, work, vectors, buckets)
        plan = index.exact_subset_rows

        def search(q: np.ndarray, name: str) -> list[int]:
            index.exact_subset_rows = 0 if name == "1%eng" else plan  # the engine's filtered search
            return [int(h.key[1:]) for h in index.search(q, 10, where=FILTERS[name])[0]]

        params = index.meta["params"]
    faiss.omp_set_num_threads(threads)  # queries: a service's view
    out = {
        "kind": spec,
        "n": len(vectors),
        "build_s": time.perf_counter() - start,
        "disk_mb": _disk(*paths) / 2**20,
        "build_threads": build_threads,
    }
    out["params"] = params
    for name in FILTERS:
        t = time.perf_counter()
        search(queries[0], name)  # warm-up: selectors, caches, a subset's vectors
        out[f"first_ms_{name}"] = 1000 * (time.perf_counter() - t)
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            found.append(search(q, name))
            times.append(time.perf_counter() - t)
        hits = sum(len(set(f) & set(t.tolist())) for f, t in zip(found, truth[name.replace("eng", "")]))
        out[f"recall_{name}"] = hits / truth[name.replace("eng", "")].size
        out[f"p50_ms_{name}"], out[f"p95_ms_{name}"] = (1000 * np.percentile(times, p) for p in (50, 95))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def table(rows: list[dict]) -> str:
    head = (
        f"{'kind':<15}{'build s':>9}{'disk MB':>9}{'RSS MB':>8}"
        + "".join(f"{'p50/p95 ms ' + n:>20}{'R@10':>6}" for n in FILTERS)
        + f"{'1%/none':>8}{'1%eng/none':>11}"
    )
    lines, nan = [head], float("nan")
    for r in rows:
        cells = "".join(
            f"{r.get(f'p50_ms_{n}', nan):>11.2f}/{r.get(f'p95_ms_{n}', nan):<8.2f}{r.get(f'recall_{n}', nan):>6.3f}"
            for n in FILTERS
        )
        ratio = r["p50_ms_1%"] / max(r["p50_ms_none"], 1e-9)
        engine = r.get("p50_ms_1%eng", float("nan")) / max(r["p50_ms_none"], 1e-9)
        lines.append(
            f"{r['kind']:<15}{r['build_s']:>9.1f}{r['disk_mb']:>9.0f}{r['peak_rss_mb']:>8.0f}{cells}{ratio:>8.2f}"
            f"{engine:>11.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--kinds", default=KINDS)
    parser.add_argument(
        "--threads", type=int, default=1, help="FAISS threads per query (1: a service's view)"
    )
    parser.add_argument(
        "--build-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="FAISS threads while building and calibrating (default: every core)",
    )
    parser.add_argument(
        "--max-rss-gb", type=float, default=24.0, help="stop a kind whose process passes this resident set"
    )
    parser.add_argument("--workdir", default="bench_index_backends", help="data, indexes, results.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.workdir)
    if args.child:
        result = child(args.child, work, args.threads, args.build_threads, args.max_rss_gb)
        print("RESULT " + json.dumps(result), flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make_data(work, args.n, args.dim, args.clusters, args.queries, seed=0)
    exact(work)
    print(
        f"data + exact top-10: {time.perf_counter() - start:.0f} s ({args.n} x {args.dim}, load {os.getloadavg()[0]:.1f})"
    )
    rows = []
    for spec in args.kinds.split(","):
        command = [
            sys.executable,
            __file__,
            "--child",
            spec,
            "--workdir",
            str(work),
            "--threads",
            str(args.threads),
            "--build-threads",
            str(args.build_threads),
            "--max-rss-gb",
            str(args.max_rss_gb),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not result:
            print(f"{spec}: failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        rows.append(json.loads(result[-1][7:]))
        first = rows[-1]["first_ms_1%"]
        print(
            f"{spec}: done in {rows[-1]['build_s']:.0f} s build, params {rows[-1]['params']}, "
            f"first 1 % query (fetches the subset) {first:.0f} ms",
            flush=True,
        )
        shutil.rmtree(work / f"{spec}.db", ignore_errors=True)  # disk: one engine's files at a time
    # Kinds run before (same data) stay in the table, so a rerun of a few kinds completes it.
    earlier = json.loads((work / "results.json").read_text()) if (work / "results.json").is_file() else []
    order = KINDS.split(",")
    merged = {r["kind"]: r for r in earlier if r.get("n") == args.n} | {r["kind"]: r for r in rows}
    rows = sorted(merged.values(), key=lambda r: order.index(r["kind"]) if r["kind"] in order else len(order))
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    print(f"parent peak RSS {_rss_gb('VmHWM'):.2f} GiB; load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
