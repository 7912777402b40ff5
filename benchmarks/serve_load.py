"""Load test of ``clamp3 serve``: text queries against a large index over real HTTP on 127.0.0.1.

Builds (in a temporary folder) a model of ``--preset`` (seeded random weights + a small trained
tokenizer: the numbers measure speed, not quality) and an exact index of ``--items`` random unit
vectors of the model's dimension, starts ``clamp3 serve`` on it in a subprocess (uvicorn, one
process, as shipped), then sends ``--queries`` text queries with ``--concurrency`` clients in
flight and reports throughput, latency percentiles and errors (goal: zero errors).

Queries are distinct sentences (templates x moods x forms x instruments, five languages), so
the server's query cache does not flatter the figures; every 10th query asks for a modality
filter and every 7th for the second page. A warm-up of ``--warmup`` queries at concurrency 1 is
reported separately (single-query latency on an idle server).

    .venv/bin/python benchmarks/serve_load.py                      # 100k items, tiny model, 2000 x 16
    .venv/bin/python benchmarks/serve_load.py --preset mini --queries 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MOODS = [
    "melancholy",
    "joyful",
    "calm",
    "stormy",
    "solemn",
    "playful",
    "dark",
    "bright",
    "tender",
    "restless",
]
FORMS = ["waltz", "fugue", "lullaby", "march", "nocturne", "folk song", "chorale", "sonata", "ballad", "reel"]
INSTRUMENTS = [
    "solo piano",
    "string quartet",
    "organ",
    "guitar",
    "choir",
    "flute and harp",
    "brass band",
    "violin",
]
TEMPLATES = [
    "a {m} {f} for {i}",
    "ein {m} {f} für {i}",
    "une {f} {m} pour {i}",
    "una {f} {m} para {i}",
    "{i} 演奏的{m}{f}",
]


def queries(n: int) -> list[str]:
    combos = itertools.product(TEMPLATES, MOODS, FORMS, INSTRUMENTS)
    texts = [t.format(m=m, f=f, i=i) for t, m, f, i in combos]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(texts))
    return [texts[order[j % len(texts)]] for j in range(n)]


def build(workdir: Path, preset: str, items: int) -> tuple[Path, Path, Path]:
    """(model dir, index dir, media root) for the benchmark."""
    from clamp3 import Clamp3Model
    from clamp3.index import SearchIndex
    from clamp3.model_identity import identify
    from clamp3.tokenizer import train_tokenizer

    model_dir, index_dir, media = workdir / "model", workdir / "index", workdir / "media"
    media.mkdir(parents=True, exist_ok=True)
    model = Clamp3Model.from_preset(preset, seed=0)
    model.save_pretrained(model_dir)
    vocab = min(4000, model.config.tower("text").vocab_size)
    train_tokenizer(queries(2000) + TEMPLATES * 50, vocab_size=vocab).save(model_dir)
    dim = model.config.projection_dim
    rng = np.random.default_rng(1)
    index = SearchIndex.create(dim, "flat", identity=identify(model, model_dir))
    modalities, suffixes = ["symbolic", "audio", "text"], [".mxl", ".wav", ".txt"]
    for lo in range(0, items, 20000):
        size = min(20000, items - lo)
        vectors = rng.standard_normal((size, dim), dtype=np.float32)
        records = [
            {
                "key": f"synthetic/{i:06d}",
                "path": f"synthetic/{i:06d}{suffixes[i % 3]}",
                "modality": modalities[i % 3],
            }
            for i in range(lo, lo + size)
        ]
        index.add(vectors, records)
    index.save(index_dir)
    return model_dir, index_dir, media


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    model_dir: Path,
    index_dir: Path,
    media: Path,
    port: int,
    threads: int,
    log: Path,
    extra: tuple[str, ...] | list[str] = (),
) -> subprocess.Popen:
    """``clamp3 serve`` in its own process group (``extra``: more options, e.g. ``--device``)."""
    command = [sys.executable, "-m", "clamp3.cli.main", "serve", str(index_dir), "--media-root", str(media)]
    command += ["--model", str(model_dir), "--port", str(port)] + (
        ["--threads", str(threads)] if threads else []
    )
    command += list(extra)
    with open(log, "wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)  # the server we started, and only it
    server.wait(timeout=30)


async def wait_ready(base: str, server: subprocess.Popen, timeout: float = 600) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with status {server.returncode}")
            try:
                response = await client.get("/api/health")
                if response.status_code == 200:
                    return response.json()
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("the server did not become ready")


async def run_load(base: str, texts: list[str], concurrency: int) -> dict:
    """Send every query with ``concurrency`` in flight; latency per request in ms."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    pending = iter(enumerate(texts))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for n, text in pending:
            params = {"q": text, "k": 20}
            if n % 10 == 0:
                params["modality"] = ("symbolic", "audio", "text")[n // 10 % 3]
            if n % 7 == 0:
                params["offset"] = 20
            start = time.perf_counter()
            try:
                response = await client.get("/api/search", params=params)
                ok = response.status_code == 200 and len(response.json()["results"]) == 20
                if not ok:
                    errors.append(f"{response.status_code}: {response.text[:120]}")
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            latencies.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    lat = np.array(latencies)
    return {
        "requests": len(texts),
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "throughput_rps": round(len(texts) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
        "errors": len(errors),
        "first_errors": errors[:5],
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="model architecture (tiny, mini, saas, ...)")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="queries at concurrency 1 first")
    parser.add_argument(
        "--threads", type=int, default=1, help="the server's torch threads (0: torch's default)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="clamp3-serve-load-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        model_dir, index_dir, media = build(workdir, args.preset, args.items)
        print(
            f"built a {args.preset} model and a {args.items}-item index in {time.perf_counter() - started:.1f} s"
        )
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(model_dir, index_dir, media, port, args.threads, workdir / "server.log")
        try:
            health = asyncio.run(wait_ready(base, server))
            texts = queries(args.warmup + args.queries)
            single = asyncio.run(run_load(base, texts[: args.warmup], 1))
            loaded = asyncio.run(run_load(base, texts[args.warmup :], args.concurrency))
            memory = rss_mb(server.pid)
        finally:
            stop_server(server)
        log_lines = (workdir / "server.log").read_text(encoding="utf-8", errors="replace").splitlines()
    result = {
        "preset": args.preset,
        "server_torch_threads": args.threads or "default",
        "items": health["items"],
        "dimension": health["dimension"],
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "server_rss_mb": memory,
        "sequential": single,
        "concurrent": loaded,
        "server_5xx_lines": sum('"status": 5' in line for line in log_lines),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if loaded["errors"] == 0 and single["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
