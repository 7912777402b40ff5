"""Folder embedding throughput: ``clamp3 embed`` vs one file at a time as the official scripts.

A folder of music21-corpus MusicXML files and short text files is embedded with the full-size
architecture (deterministic parity weights, symbolic and text towers) two ways, side by side:

1. one file at a time, the official way: convert the file (MusicXML -> ABC -> interleaved ABC),
   patchify, pad every segment to the full 512 patches / 128 tokens, batch size 1;
2. ``embed_folder`` (what ``clamp3 embed`` runs): conversions in worker processes, segments
   of all files length-sorted and batched with dynamic padding, atomic writes and a manifest.

The vectors of both paths are compared (they must agree to 1e-4).

Usage: python benchmarks/embed_folder.py [--pieces 40] [--threads 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clamp3 import Clamp3Model, Clamp3Pipeline, load_preset
from clamp3.embedding import pad_stack
from clamp3.model import masked_mean
from clamp3.preprocess import load_symbolic
from clamp3.segments import pool_segments, segment_item
from clamp3.testing import deterministic_tensor

TEXTS = [
    "A Bach chorale harmonised for four voices.",
    "Ein fröhliches Volkslied aus dem Essener Liederbuch.",
    "Une gigue irlandaise pour violon seul, vive et dansante.",
    "Un cuarteto de cuerda en tres movimientos.",
]


def make_folder(root: Path, pieces: int) -> list[Path]:
    from music21 import corpus

    paths = sorted(corpus.getPaths(fileExtensions=("mxl",)))[::9][:pieces]
    for i, path in enumerate(paths):
        shutil.copy(path, root / f"piece{i:03d}.mxl")
    for i in range(pieces):
        (root / f"text{i:03d}.txt").write_text(TEXTS[i % len(TEXTS)] + f" Piece {i}.\n", encoding="utf-8")
    return sorted(root.iterdir())


def deterministic_model(tokenizer_dir: Path) -> Clamp3Pipeline:
    from clamp3.tokenizer import train_tokenizer

    model = Clamp3Model(load_preset("saas"), modalities=("text", "symbolic"))
    state = {k: torch.from_numpy(deterministic_tensor(k, v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    # No XLM-R tokenizer offline: a small trained one with XLM-R's special ids stands in.
    return Clamp3Pipeline(model.eval(), tokenizer=train_tokenizer(TEXTS * 50, vocab_size=300))


def one_at_a_time(pipeline: Clamp3Pipeline, files: list[Path]) -> dict[str, np.ndarray]:
    """Official style: each file alone, every segment padded to the full length."""
    model, out = pipeline.model, {}
    with torch.inference_mode():
        for path in files:
            if path.suffix == ".txt":
                modality, length, pad = "text", 128, 1
                item = torch.tensor(pipeline.tokenizer.encode(path.read_text(encoding="utf-8").strip()))
            else:
                modality, length, pad = "symbolic", 512, 0
                item = torch.as_tensor(load_symbolic(path).astype(np.int64))
            plan = segment_item(len(item), length)
            vectors = []
            for s in plan:
                seg, mask = pad_stack([item[s.start : s.end]], pad)
                full = torch.full((1, length, *seg.shape[2:]), pad, dtype=seg.dtype)
                full[:, : seg.shape[1]] = seg
                full_mask = torch.zeros(1, length, dtype=torch.long)
                full_mask[:, : mask.shape[1]] = mask
                hidden = model.hidden_states(modality, full, full_mask)
                vectors.append(model.project(modality, masked_mean(hidden, full_mask))[0].numpy())
            out[path.stem] = pool_segments(np.stack(vectors), plan)
    return out


def main() -> None:
    from clamp3.embed_folder import embed_folder

    parser = argparse.ArgumentParser()
    parser.add_argument("--pieces", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        files = make_folder(src, args.pieces)
        model = deterministic_model(Path(tmp))
        start = time.perf_counter()
        reference = one_at_a_time(model, files)
        t_single = time.perf_counter() - start
        start = time.perf_counter()
        report = embed_folder(model, src, out, workers=args.workers, show_progress=False)
        t_folder = time.perf_counter() - start
        diff = max(float(np.abs(np.load(out / f"{k}.npy")[0] - v).max()) for k, v in reference.items())
    assert report.failed == 0 and diff < 1e-4, (report.failures, diff)
    n = len(files)
    print(
        f"{n} files ({args.pieces} MusicXML + {args.pieces} texts), full-size towers, {args.threads} torch thread(s)"
    )
    print(f"one file at a time, padded (official style): {t_single:7.2f} s  {n / t_single:6.2f} files/s")
    print(
        f"clamp3 embed ({args.workers} conversion workers):    {t_folder:7.2f} s  {n / t_folder:6.2f} files/s"
    )
    print(f"speed-up {t_single / t_folder:.2f}x; max |diff| {diff:.1e}")


if __name__ == "__main__":
    main()
