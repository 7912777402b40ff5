"""Embedding throughput of the full-size symbolic tower, cold start and peak memory.

Measured side by side in one run:

1. the official path: one file at a time, every segment padded to the full 512 patches, the
   dense one-hot ``Linear(8192, 768)`` patch embedding;
2. this package: ``embed_patches`` over the whole set, segments packed without padding by a
   token budget (``clamp3.towers.packed``), the ``embedding_bag`` patch embedding;
3. a lower bound: real (unpadded) patches x FLOPs per patch / the machine's fp32 GEMM rate.

Both paths must give the same vectors (checked). Cold start (import + load) and peak RSS
are measured in fresh subprocesses for a text-only job and for all three towers, loading a
converted ``model.safetensors`` directory of full-size deterministic weights.

Usage: python benchmarks/model_throughput.py [--pieces 120] [--threads 2] [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clamp3 import Clamp3Model, load_preset
from clamp3.embedding import prepare_patches
from clamp3.model import masked_mean
from clamp3.segments import pool_segments, segment_item
from clamp3.testing import deterministic_tensor, find_parity_dir

PARITY = find_parity_dir()


def deterministic_model(modalities: tuple[str, ...]) -> Clamp3Model:
    """A full-size model of the given towers with the parity weight recipe."""
    model = Clamp3Model(load_preset("saas"), modalities=modalities)
    state = {k: torch.from_numpy(deterministic_tensor(k, v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval()


def music21_patches(limit: int) -> list[np.ndarray]:
    """Patches of music21-corpus pieces converted through this package's pipeline."""
    from music21 import corpus

    from clamp3.preprocess import interleave_abc, musicxml_to_abc, patchify

    items = []
    for path in sorted(corpus.getPaths(fileExtensions=("mxl", "xml", "musicxml")))[::7]:
        try:
            items.append(patchify(interleave_abc(musicxml_to_abc(path))))
        except Exception:
            continue
        if len(items) >= limit:
            break
    return items


def official_path(model: Clamp3Model, items: list[np.ndarray]) -> list[np.ndarray]:
    """One item at a time, segments padded to 512, dense one-hot patch embedding."""
    tower, proj = model.symbolic_model, model.symbolic_proj
    out = []
    with torch.inference_mode():
        for patches in items:
            plan = segment_item(len(patches), 512)
            vectors = []
            for s in plan:
                seg = torch.zeros(1, 512, 64, dtype=torch.long)
                seg[0, : s.length] = torch.as_tensor(patches[s.start : s.end])
                mask = torch.zeros(1, 512, dtype=torch.long)
                mask[0, : s.length] = 1
                onehot = F.one_hot(seg, 128).reshape(1, 512, -1).float()
                embeds = tower.patch_embedding(onehot)
                hidden = tower.base(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
                vectors.append(proj(masked_mean(hidden, mask))[0].numpy())
            out.append(pool_segments(np.stack(vectors), plan))
    return out


def gemm_rate(trials: int = 5, seconds: float = 1.0) -> float:
    """Peak fp32 GEMM FLOP/s on BERT-shaped products (the bound's denominator): the best of
    several trials, so a moment of interference does not loosen the bound."""
    a, b = torch.randn(512, 768), torch.randn(768, 3072)
    torch.mm(a, b)
    best = 0.0
    for _ in range(trials):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(a, b)
            n += 1
        best = max(best, n * 2 * 512 * 768 * 3072 / (time.perf_counter() - start))
    return best


def flops(items: list[np.ndarray], hidden: int = 768, layers: int = 12, ffn: int = 3072) -> float:
    """Forward FLOPs of the real (unpadded) segments: dense layers + attention scores/values."""
    per_token = layers * 2 * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * 64 * hidden
    total = 0.0
    for patches in items:
        for s in segment_item(len(patches), 512):
            total += s.length * per_token + layers * 4 * s.length * s.length * hidden
        total += 2 * hidden * hidden
    return total


# Peak RSS from VmHWM: ru_maxrss of a child started by fork/exec can report the parent's size.
COLD = """
import json, sys, time
t0 = time.perf_counter()
from clamp3 import Clamp3Model
m = Clamp3Model.from_pretrained(sys.argv[1], modalities={mods})
t1 = time.perf_counter()
# Use every loaded tower: weights are memory-mapped, so an unused tower costs no resident memory
# and would make the all-towers figure look like the text-only one.
m.embed_text_ids([[0, 5, 6, 7, 2]])
if {mods} is None:
    import numpy as np
    p = 64  # clamp3.preprocess.patches.PATCH_SIZE
    m.embed_patches([np.array([[1] * p, [2] + [0] * (p - 1), [3] * p], dtype=np.int64)])
    m.embed_audio_features([np.ones((3, m.config.audio.feature_dim), dtype=np.float32)])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
print(json.dumps({{"load_s": t1 - t0, "first_embed_s": time.perf_counter() - t1,
                  "peak_rss_mb": int(hwm.split()[1]) / 1024}}))
"""


def cold_start(directory: Path) -> dict[str, dict]:
    results = {}
    for label, mods in (("text only", "('text',)"), ("all three towers", "None")):
        proc = subprocess.run(
            [sys.executable, "-c", COLD.format(mods=mods), str(directory)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pieces", type=int, default=120, help="music21 pieces besides the parity patches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    items = [np.load(p) for p in sorted((PARITY / "prep" / "patches").glob("*.npy"))]
    items += music21_patches(args.pieces)
    lengths = np.array([len(p) for p in items])
    print(
        f"{len(items)} items, patches per item: min {lengths.min()}, median {int(np.median(lengths))}, "
        f"max {lengths.max()}, total {lengths.sum()}"
    )
    model = deterministic_model(("symbolic",))
    [prepare_patches(p) for p in items]

    start = time.perf_counter()
    ours = model.embed_patches(items, batch_size=args.batch_size)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    reference = official_path(model, items)
    t_official = time.perf_counter() - start
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True))
    assert diff < 1e-4, diff

    rate = gemm_rate()
    bound = flops(items) / rate
    print(f"fp32 GEMM rate: {rate / 1e9:.1f} GFLOP/s ({args.threads} threads)")
    print(f"{'path':44s} {'seconds':>9s} {'patches/s':>10s}")
    for name, t in (
        ("official (one at a time, padded to 512)", t_official),
        ("clamp3 (packed, token-budget batches)", t_ours),
        ("lower bound (real patches x FLOPs / GEMM)", bound),
    ):
        print(f"{name:44s} {t:9.2f} {lengths.sum() / t:10.0f}")
    print(
        f"speed-up over the official path: {t_official / t_ours:.2f}x; "
        f"time / lower bound: {t_ours / bound:.2f}x (goal <= 1.3x); max |diff| {diff:.1e}"
    )

    short = [p for p in items if len(p) <= 128]
    start = time.perf_counter()
    model.embed_patches(short, batch_size=args.batch_size)
    t_short = time.perf_counter() - start
    start = time.perf_counter()
    official_path(model, short)
    t_short_official = time.perf_counter() - start
    print(
        f"short pieces only ({len(short)} items <= 128 patches): official {t_short_official:.2f} s, "
        f"clamp3 {t_short:.2f} s, speed-up {t_short_official / t_short:.2f}x"
    )

    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp:
            deterministic_model(("text", "symbolic", "audio")).save_pretrained(tmp)
            for label, r in cold_start(Path(tmp)).items():
                print(
                    f"cold start, {label:17s}: import+load {r['load_s']:.2f} s, first embed "
                    f"{r['first_embed_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
                )


if __name__ == "__main__":
    main()
