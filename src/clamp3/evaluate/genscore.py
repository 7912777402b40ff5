"""Scoring text-to-music generation: the CLaMP 3 score and prompt/file matching.

The CLaMP 3 score of a generated piece is the cosine similarity between the embedding of its
prompt and the embedding of the piece (as reported by text-to-music papers and on the official
project page); a system's score is the mean over pieces, reported here with a bootstrap
confidence interval. The Fréchet distance to a reference set is in :mod:`clamp3.evaluate.frechet`.

Prompts come from JSONL (``{"id": ..., "prompt": ...}`` per line) or CSV (``id,prompt`` with an
optional header). A generated file belongs to the first prompt id found among, in order:

1. its relative path without the extension          ``rock/p01.wav``        -> ``rock/p01``
2. that path cut at the first dot of the file name  ``rock/p01.take2.wav``  -> ``rock/p01``
3. the same two names without the folders           ``p01.take2``, ``p01``
4. its folder, relative and bare                    ``p01/sample3.wav``     -> ``p01``

so one prompt may have several generated samples (rules 2 and 4).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from clamp3.evaluate.labels import normalize_relpath
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic

if TYPE_CHECKING:
    from clamp3.evaluate.runs import Items
    from clamp3.model import Clamp3Model

log = logging.getLogger(__name__)


def read_prompts(path: str | os.PathLike) -> dict[str, str]:
    """``{id: prompt}`` from a ``.jsonl`` (keys ``id``, ``prompt``) or ``.csv`` (``id,prompt``) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read the prompts file ({exc})") from exc
    rows: list[tuple[int, str, str]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                rows.append((line_no, str(record["id"]), str(record["prompt"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(
                    path, f"line {line_no}: expected an object with 'id' and 'prompt' ({exc})"
                ) from exc
    else:
        for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
            if not row or not any(c.strip() for c in row):
                continue
            if line_no == 1 and [c.strip().lower() for c in row[:2]] == ["id", "prompt"]:
                continue
            if len(row) < 2:
                raise InputError(path, f"line {line_no}: expected 'id,prompt', got {row!r}")
            rows.append((line_no, row[0].strip(), ",".join(row[1:]).strip()))
    prompts: dict[str, str] = {}
    for line_no, key, prompt in rows:
        key = normalize_relpath(key)
        if not key or not prompt:
            raise InputError(path, f"line {line_no}: empty id or prompt")
        if key in prompts:
            raise InputError(path, f"line {line_no}: id {key!r} is listed twice")
        prompts[key] = prompt
    if not prompts:
        raise InputError(path, "no prompts found")
    return prompts


def candidate_ids(relpath: str) -> list[str]:
    """The ids a generated file may belong to, most specific first (see module docstring)."""
    pure = PurePosixPath(normalize_relpath(relpath))
    folder = pure.parent.as_posix()
    stem = pure.name.rsplit(".", 1)[0] if "." in pure.name else pure.name
    head = pure.name.split(".", 1)[0]

    def under(name: str) -> str:
        return name if folder == "." else f"{folder}/{name}"

    names = [under(stem), under(head), stem, head]
    if folder != ".":
        names += [folder, pure.parent.name]
    return list(dict.fromkeys(names))


def match_generated(
    paths: Sequence[str], prompt_ids: Sequence[str]
) -> tuple[list[tuple[int, str]], list[str], list[str]]:
    """Pair generated files with prompt ids.

    Returns ``(matches, unmatched_files, prompts_without_files)`` where ``matches`` lists
    ``(index into paths, prompt id)`` in path order.
    """
    known = set(prompt_ids)
    matches, unmatched = [], []
    for i, path in enumerate(paths):
        hit = next((c for c in candidate_ids(path) if c in known), None)
        if hit is None:
            unmatched.append(path)
        else:
            matches.append((i, hit))
    used = {pid for _, pid in matches}
    return matches, unmatched, [pid for pid in prompt_ids if pid not in used]


def pair_cosines(prompt_embeddings: np.ndarray, piece_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of aligned pairs (N, D) x (N, D) -> float64 (N,) in [-1, 1]."""
    a = np.asarray(prompt_embeddings, dtype=np.float64)
    b = np.asarray(piece_embeddings, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"need two aligned (N, D) arrays, got {a.shape} and {b.shape}")
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.clip(np.sum(a * b, axis=1) / norms, -1.0, 1.0)


def bootstrap_mean_ci(
    values: np.ndarray, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (N,); ``None`` when it cannot be formed."""
    values = np.asarray(values, dtype=np.float64)
    if n_resamples < 2 or len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // len(values))  # bound the (chunk, N) index matrix to ~16 MB
    for lo in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - lo)
        means[lo : lo + size] = values[rng.integers(0, len(values), (size, len(values)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def clamp3_score(
    prompt_embeddings: np.ndarray,
    piece_embeddings: np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """CLaMP 3 score of aligned (prompt, piece) embedding pairs (N, D) each.

    Returns ``{"score": mean cosine, "ci95": [lo, hi] | None, "std", "n", "per_item": (N,)
    cosines}``; the score lies in [-1, 1] (higher = closer to the prompt).
    """
    per_item = pair_cosines(prompt_embeddings, piece_embeddings)
    ci = bootstrap_mean_ci(per_item, n_resamples, seed=seed)
    return {
        "score": float(per_item.mean()),
        "ci95": None if ci is None else list(ci),
        "std": float(per_item.std(ddof=1)) if len(per_item) > 1 else 0.0,
        "n": int(len(per_item)),
        "per_item": per_item,
    }


def run_gen_score(
    generated: str | os.PathLike,
    model: Clamp3Model | None,
    prompts_file: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    embeddings: bool = False,
    n_bootstrap: int = 1000,
    fd_bootstrap: int = 100,
    normalize_fd: bool = False,
    seed: int = 0,
    batch_size: int = 32,
    json_out: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> dict:
    """Score a folder of generated pieces: CLaMP 3 score against prompts and/or FD to a reference.

    ``generated`` and ``reference`` are folders of files (encoded with ``model``) or, with
    ``embeddings=True``, embedding folders from ``clamp3 embed``. Prompts are always encoded
    with ``model``. Returns (and writes to ``json_out``) ``clamp3_score`` + per-item ``items``
    when prompts are given and ``frechet`` when a reference is given.
    """
    from clamp3.evaluate.frechet import frechet_bootstrap
    from clamp3.evaluate.runs import load_items, provenance

    if prompts_file is None and reference is None:
        raise ValueError("give prompts (CLaMP 3 score), a reference set (Fréchet distance), or both")
    gen = load_items([generated], model, embeddings, batch_size, show_progress)
    result: dict = {"generated": str(generated), "n_generated": len(gen.paths), **provenance()}
    if prompts_file is not None:
        if model is None:
            raise ValueError("a model is needed to encode the prompts")
        result.update(_score_prompts(gen, model, prompts_file, generated, n_bootstrap, seed, batch_size))
    if reference is not None:
        ref = load_items([reference], model, embeddings, batch_size, show_progress)
        x, y = gen.vectors, ref.vectors
        if normalize_fd:
            x, y = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12) for v in (x, y))
        fd = frechet_bootstrap(x, y, fd_bootstrap, seed=seed, show_progress=show_progress)
        result["frechet"] = {"reference": str(reference), **fd, "normalized": normalize_fd}
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result


def _score_prompts(
    gen: Items,
    model: Clamp3Model,
    prompts_file: str | os.PathLike,
    generated: str | os.PathLike,
    n_bootstrap: int,
    seed: int,
    batch_size: int,
) -> dict:
    """``{"clamp3_score": {...}, "items": [...]}`` for generated vectors matched to their prompts."""
    prompts = read_prompts(prompts_file)
    matches, unmatched, missing = match_generated(gen.paths, list(prompts))
    if not matches:
        raise InputError(generated, f"no generated file matches a prompt id of {prompts_file}")
    if unmatched:
        log.warning("%d generated files match no prompt id (e.g. %s)", len(unmatched), unmatched[0])
    ids = sorted({pid for _, pid in matches})
    row = {pid: k for k, pid in enumerate(ids)}
    # modality="text": a prompt must never be mistaken for a file name.
    prompt_vectors = model.encode([prompts[i] for i in ids], modality="text", batch_size=batch_size)
    score = clamp3_score(
        prompt_vectors[[row[pid] for _, pid in matches]],
        gen.vectors[[i for i, _ in matches]],
        n_resamples=n_bootstrap,
        seed=seed,
    )
    per_item = score.pop("per_item")
    return {
        "clamp3_score": {**score, "unmatched_files": unmatched, "prompts_without_files": missing},
        "items": [
            {"id": pid, "path": gen.paths[i], "score": float(s)} for (i, pid), s in zip(matches, per_item)
        ],
    }
