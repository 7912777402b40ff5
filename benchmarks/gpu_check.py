"""One prepared GPU check: parity, dtypes, throughput, MERT, training, torchrun/NCCL, service.

    python benchmarks/gpu_check.py --out gpu_check/            # on one GPU: <= 8 minutes on an H100/H200
    python benchmarks/gpu_check.py --cpu-smoke --out smoke/    # every step, tiny preset, CPU, seconds

Steps (each writes one section of ``OUT/gpu_check.json``; a failing step is recorded with its
error and the others still run; the exit status is 1 if any step failed or missed its bar):

- ``parity``: the full-size deterministic weights of ``shared/parity`` (the documented recipe) in
  fp32 on the device against the official CPU vectors (bar: <= 1e-4, as the CPU parity tests),
  then fp16 and bf16 copies: finite, cosine >= 0.999 to fp32 on every parity input;
- ``throughput``: per tower, a collection-shaped workload (48 x scale text queries of 8-39
  tokens, 48 x scale scores of 16-1,059 patches, 16 x scale recordings of 6-60 windows): the
  official path (one item at a time, padded to the full segment) vs the library's batched path
  in fp32 and bf16 at several batch sizes: items/s, real tokens/s, and the achieved FLOP rate as
  a share of the fp32 and bf16 GEMM peak measured on the same device in the same run;
- ``mert``: MERT-v1-95M (recipe weights) windows/s, one window per forward vs batched;
- ``train``: optimizer steps of the text + symbolic stage with bf16 autocast at batch 64/128/256
  (full-length items): steps/s and peak memory; and at batch 64 on mixed lengths, padded vs
  packed steps (the training default, measured on CPUs only until this runs);
- ``torchrun``: a 1-process ``torchrun`` joining an NCCL group (gloo on CPU), DDP steps, and
  the real ``clamp3 train`` loop (toy data, bf16) launched through torchrun on the device;
- ``serve``: p50/p95 of sequential text queries to ``clamp3 serve --device`` over 100k items.

``recommended`` in the JSON names, per tower, the fastest batch size and dtype measured, and the
fastest MERT batch: the figures GPU defaults are chosen from (README, "GPU").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from clamp3.testing import find_parity_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_steps import Check, step_parity, step_throughput  # noqa: E402
from gpu_steps_run import ddp_child, step_mert, step_serve, step_torchrun, step_train  # noqa: E402

STEPS = {
    "parity": step_parity,
    "throughput": step_throughput,
    "mert": step_mert,
    "train": step_train,
    "torchrun": step_torchrun,
    "serve": step_serve,
}


def environment(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "device": str(device), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            nccl=".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None,
        )
    return info


def recommended(results: dict) -> dict:
    """Fastest measured settings per tower and for MERT (None where the step failed)."""
    out: dict = {}
    towers = results.get("throughput", {}).get("towers", {})
    for modality, row in towers.items():
        paths = {k: v for k, v in row["paths"].items() if k.startswith("library_")}
        best = min(paths, key=lambda k: paths[k]["seconds"])
        _, dtype, batch = best.split("_")
        out[modality] = {"dtype": dtype, "batch_size": int(batch.removeprefix("batch"))}
    mert = results.get("mert", {})
    if "best_fp32_batch" in mert:
        out["mert_batch_size"] = mert["best_fp32_batch"]
    return out


def table(results: dict) -> str:
    """A short human-readable summary of the JSON."""
    lines = [f"{'step':11s} {'ok':5s} {'seconds':>8s}  summary"]
    for name in STEPS:
        r = results.get(name, {})
        summary = r.get("error", "")[:70] if "error" in r else ""
        if name == "parity" and "fp32" in r:
            summary = ", ".join(f"{m} {v['max_abs_diff']:.1e}" for m, v in r["fp32"].items())
        if name == "throughput" and "towers" in r:
            summary = ", ".join(
                f"{m} {v['speedup_best_fp32_vs_official']:.1f}x official" for m, v in r["towers"].items()
            )
        if name == "mert" and "batched_speedup_fp32" in r:
            summary = f"batched {r['batched_speedup_fp32']:.2f}x one window per forward"
        if name == "train" and "runs" in r:
            summary = ", ".join(
                f"b{x['batch']} {x.get('steps_per_s', float('nan')):.2f} steps/s" for x in r["runs"]
            )
            if "packed_speedup" in r.get("packing", {}):
                summary += f"; packed {r['packing']['packed_speedup']:.2f}x padded (mixed lengths)"
        if name == "serve" and "p50_ms" in r:
            summary = f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms over {r['items']} items"
        lines.append(
            f"{name:11s} {str(r.get('ok', False)):5s} {r.get('seconds', float('nan')):8.1f}  {summary}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    device = torch.device(args.device or ("cpu" if args.cpu_smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available here; use --cpu-smoke on a machine without a GPU",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"environment": environment(device), "mode": "cpu-smoke" if args.cpu_smoke else "full"}
    with tempfile.TemporaryDirectory(prefix="clamp3-gpu-check-") as tmp:
        check = Check(device, args.cpu_smoke, Path(args.parity_dir), Path(tmp), scale=args.scale)
        for name in args.steps.split(","):
            start = time.perf_counter()
            try:
                results[name] = STEPS[name](check)
            except Exception as exc:  # one failing step must not hide the others' figures
                results[name] = {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            results[name]["seconds"] = time.perf_counter() - start
            print(f"{name}: ok={results[name]['ok']} in {results[name]['seconds']:.1f} s", flush=True)
            (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    results["recommended"] = recommended(results)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    summary = table(results)
    (out / "gpu_check.txt").write_text(summary + "\n")
    print(summary)
    print(f"recommended: {json.dumps(results['recommended'])}")
    return 0 if all(results.get(n, {}).get("ok") for n in args.steps.split(",")) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="gpu_check", help="folder for gpu_check.json / gpu_check.txt")
    parser.add_argument("--cpu-smoke", action="store_true", help="every step on the tiny preset on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --cpu-smoke)")
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}"
    )
    parser.add_argument("--scale", type=int, default=8, help="workload multiplier for the throughput step")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--parity-dir", default=str(find_parity_dir()))
    parser.add_argument("--ddp-child", action="store_true", help=argparse.SUPPRESS)  # internal (torchrun)
    parser.add_argument("--preset", default="tiny", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    unknown = set(args.steps.split(",")) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    if args.ddp_child:
        print(json.dumps(ddp_child(args.device, args.preset, args.batch), default=str))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
