"""Scoring text-to-music generation: the CLaMP 3 score and prompt/file matching.

The CLaMP 3 score of a generated piece is the cosine similarity between the embedding of its
prompt and the embedding of the piece (as reported by text-to-music papers and on the official
project page). A system's score is the mean over prompts of each prompt's mean over its
samples, with a confidence interval from a bootstrap over prompts (see :func:`clamp3_score`);
the plain mean over pieces is reported beside it. Generated pieces are symbolic or audio files
(or their embeddings) of one modality. The Fréchet distance to a reference set is in
:mod:`clamp3.evaluate.frechet`.

Prompts come from JSONL (``{"id": ..., "prompt": ...}`` per line) or CSV (``id,prompt`` with an
optional header). A generated file belongs to the first prompt id found among, in order:

1. its relative path without the extension          ``rock/p01.wav``        -> ``rock/p01``
2. that path cut at the first dot of the file name  ``rock/p01.take2.wav``  -> ``rock/p01``
3. the same two names without the folders           ``p01.take2``, ``p01``
4. its folder, relative and bare                    ``p01/sample3.wav``     -> ``p01``

so one prompt may have several generated samples (rules 2 and 4).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from clamp3.evaluate.items import PIECE_MODALITIES, Items, check_output_file, load_items, select_pieces
from clamp3.evaluate.labels import normalize_relpath
from clamp3.formats import load_folder_identity
from clamp3.model_identity import ModelIdentity, identify, require_same_model
from clamp3.utils.errors import InputError
from clamp3.utils.io import csv_rows, read_text, write_json_atomic
from clamp3.utils.vectors import l2_normalize

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

log = logging.getLogger(__name__)


def read_prompts(path: str | os.PathLike) -> dict[str, str]:
    """``{id: prompt}`` from a ``.jsonl`` (keys ``id``, ``prompt``) or ``.csv`` (``id,prompt``) file."""
    path = Path(path)
    text = read_text(path)
    rows: list[tuple[int, str, str]] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key, prompt = record["id"], record["prompt"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(
                    path, f"line {line_no}: expected an object with 'id' and 'prompt' ({exc})"
                ) from exc
            if not isinstance(prompt, str) or not isinstance(key, str | int) or isinstance(key, bool):
                # str(None) would score the prompt "None"
                raise InputError(
                    path, f"line {line_no}: 'id' must be a string or integer and 'prompt' a string"
                )
            rows.append((line_no, str(key), prompt))
    else:
        for line_no, row in csv_rows(text):
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
    return np.clip(np.sum(l2_normalize(a, np.float64) * l2_normalize(b, np.float64), axis=1), -1.0, 1.0)


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
    groups: Sequence[Hashable] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """CLaMP 3 score of aligned (prompt, piece) embedding pairs (N, D) each.

    ``groups[i]`` names the prompt of pair ``i`` (default: every pair its own prompt). The
    score is the mean over prompts of each prompt's mean cosine, so a prompt with ten samples
    weighs as much as a prompt with one; its interval is a cluster bootstrap over prompts
    (samples of one prompt are correlated, so resampling them independently would give too
    narrow an interval). Returns ``{"score", "ci95": [lo, hi] | None, "std" (of the per-prompt
    means), "n" (pairs), "n_prompts", "item_mean" (mean over pairs, for reference),
    "per_item": (N,) cosines, "per_prompt": {group: mean cosine}}``; cosines lie in [-1, 1].
    """
    per_item = pair_cosines(prompt_embeddings, piece_embeddings)
    keys = list(range(len(per_item))) if groups is None else list(groups)
    if len(keys) != len(per_item):
        raise ValueError(f"{len(keys)} groups for {len(per_item)} pairs")
    members: dict[Hashable, list[float]] = {}
    for key, value in zip(keys, per_item):
        members.setdefault(key, []).append(float(value))
    prompt_means = np.array([np.mean(v) for v in members.values()])
    # Resampling whole prompts and averaging their means is the cluster bootstrap of this
    # estimator: each prompt's mean is fixed once the prompt is drawn.
    ci = bootstrap_mean_ci(prompt_means, n_resamples, seed=seed)
    return {
        "score": float(prompt_means.mean()),
        "ci95": None if ci is None else list(ci),
        "std": float(prompt_means.std(ddof=1)) if len(prompt_means) > 1 else 0.0,
        "n": int(len(per_item)),
        "n_prompts": int(len(prompt_means)),
        "item_mean": float(per_item.mean()),
        "per_item": per_item,
        "per_prompt": {key: float(m) for key, m in zip(members, prompt_means)},
    }


# ------------------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class GenScoreSettings:
    """Settings of :func:`run_gen_score`.

    ``n_bootstrap``: resamples of the score's cluster bootstrap (< 2: no interval);
    ``fd_bootstrap``: resamples of the Fréchet interval; ``normalize_fd``: L2-normalise before
    the Fréchet distance; ``modality``: ``"symbolic"`` or ``"audio"`` (``None``: the one modality
    the generated folder holds; a folder holding both is refused).
    """

    n_bootstrap: int = 1000
    fd_bootstrap: int = 100
    normalize_fd: bool = False
    seed: int = 0
    batch_size: int = 32
    modality: str | None = None


def _load_pieces(
    source: str | os.PathLike,
    model: Clamp3Model | Clamp3Pipeline | None,
    embeddings: bool,
    settings: GenScoreSettings,
    show_progress: bool,
) -> tuple[Items, str | None]:
    """The pieces of one folder and their modality (``None``: unknown, no manifest)."""
    modality = settings.modality
    select = functools.partial(select_pieces, modality=modality, source=str(source))
    items = load_items([source], model, embeddings, settings.batch_size, show_progress, select)
    if items.ignored:
        log.warning(
            "%s: %d files are not %s pieces and are not scored (e.g. %s)",
            source,
            len(items.ignored),
            modality or "symbolic/audio",
            items.ignored[0],
        )
    return items, next((m for m in items.modalities if m), None)


def _check_models(
    generated: str | os.PathLike,
    reference: str | os.PathLike | None,
    prompt_model: ModelIdentity | None,
    embeddings: bool,
    allow_mismatch: bool,
) -> dict[str, str]:
    """Embedding folders must come from the prompt model and from one another (``ModelMismatch``)."""
    if not embeddings:
        return {}  # files are all encoded here, by the one model
    gen_id = load_folder_identity(generated)
    verdicts = {}
    if prompt_model is not None:
        verdicts["prompts"] = require_same_model(
            ("the generated embeddings", gen_id),
            ("the prompts (encoded with --model)", prompt_model),
            generated,
            allow_mismatch=allow_mismatch,
        )
    if reference is not None:
        verdicts["reference"] = require_same_model(
            ("the generated embeddings", gen_id),
            ("the reference embeddings", load_folder_identity(reference)),
            reference,
            allow_mismatch=allow_mismatch,
        )
    return verdicts


def run_gen_score(
    generated: str | os.PathLike,
    model: Clamp3Model | None,
    prompts_file: str | os.PathLike | None = None,
    reference: str | os.PathLike | None = None,
    embeddings: bool = False,
    settings: GenScoreSettings | None = None,
    allow_model_mismatch: bool = False,
    json_out: str | os.PathLike | None = None,
    show_progress: bool = False,
) -> dict:
    """Score a folder of generated pieces: CLaMP 3 score against prompts and/or FD to a reference.

    ``generated`` and ``reference`` are folders of files (encoded with ``model``) or, with
    ``embeddings=True``, embedding folders from ``clamp3 embed``; only symbolic or audio items
    of one modality count as pieces (``clamp3.evaluate.items.select_pieces``), and the reference must hold the
    same modality. Prompts are always encoded with ``model``, whose identity embedding folders
    must share, as generated and reference folders must share theirs (``ModelMismatch`` unless
    ``allow_model_mismatch``). Returns (and writes
    to ``json_out``) ``clamp3_score`` + ``prompts`` + ``items`` when prompts are given and
    ``frechet`` when a reference is given. Files that cannot be read are reported and left out
    (``failed_files``, ``{path, reason}``, at the top for generated pieces and in ``frechet`` for
    the reference); a folder none of whose files can be read is an ``InputError``.
    """
    from clamp3.evaluate.runs import provenance

    settings = settings or GenScoreSettings()
    if prompts_file is None and reference is None:
        raise ValueError("give prompts (CLaMP 3 score), a reference set (Fréchet distance), or both")
    if settings.modality not in (None, *PIECE_MODALITIES):
        raise ValueError(f"modality must be one of {PIECE_MODALITIES}, got {settings.modality!r}")
    if json_out is not None:
        check_output_file(json_out)
    prompt_model = identify(model) if prompts_file is not None and model is not None else None
    verdicts = _check_models(generated, reference, prompt_model, embeddings, allow_model_mismatch)
    if model is not None:  # one pipeline (one tokenizer and front-end) for every stage below
        from clamp3.pipeline import as_pipeline

        model = as_pipeline(model)
    gen, modality = _load_pieces(generated, model, embeddings, settings, show_progress)
    result: dict = {
        "generated": str(generated),
        "n_generated": len(gen.paths),
        "modality": modality,
        "ignored_files": gen.ignored,
        "failed_files": gen.failed,
        **({"model_check": verdicts} if verdicts else {}),
        **provenance(),
    }
    if reference is not None:  # first: a wrong reference is refused before prompts are encoded
        _require_a_set(gen, generated)
        result["frechet"] = _frechet_to_reference(
            gen, modality, reference, model, embeddings, settings, show_progress
        )
    if prompts_file is not None:
        if model is None:
            raise ValueError("a model is needed to encode the prompts")
        result.update(_score_prompts(gen, model, prompts_file, generated, settings))
    if json_out is not None:
        write_json_atomic(json_out, result)
    return result


def _require_a_set(pieces: Items, source: str | os.PathLike) -> None:
    """A Fréchet distance compares two Gaussians: each set needs two pieces for a covariance."""
    if len(pieces.paths) < 2:
        raise InputError(source, f"a Fréchet distance needs at least two pieces, found {len(pieces.paths)}")


def _frechet_to_reference(
    gen: Items,
    modality: str | None,
    reference: str | os.PathLike,
    model: Clamp3Model | Clamp3Pipeline | None,
    embeddings: bool,
    settings: GenScoreSettings,
    show_progress: bool,
) -> dict:
    """``frechet`` block of the result: FD (+ interval) between ``gen`` and the reference pieces."""
    from clamp3.evaluate.frechet import frechet_bootstrap

    ref, ref_modality = _load_pieces(reference, model, embeddings, settings, show_progress)
    _require_a_set(ref, reference)
    if modality and ref_modality and ref_modality != modality:
        raise InputError(
            reference,
            f"reference pieces are {ref_modality} but generated pieces are {modality}; a Fréchet "
            "distance across modalities measures the modality gap, not the generation",
        )
    x, y = gen.vectors, ref.vectors
    if settings.normalize_fd:
        x, y = l2_normalize(x, np.float64), l2_normalize(y, np.float64)
    fd = frechet_bootstrap(x, y, settings.fd_bootstrap, seed=settings.seed, show_progress=show_progress)
    return {
        "reference": str(reference),
        **fd,
        "normalized": settings.normalize_fd,
        "failed_files": ref.failed,
    }


def _score_prompts(
    gen: Items,
    model: Clamp3Pipeline,
    prompts_file: str | os.PathLike,
    generated: str | os.PathLike,
    settings: GenScoreSettings,
) -> dict:
    """``{"clamp3_score", "prompts", "items"}`` for generated vectors matched to their prompts."""
    prompts = read_prompts(prompts_file)
    matches, unmatched, missing = match_generated(gen.paths, list(prompts))
    if not matches:
        raise InputError(generated, f"no generated file matches a prompt id of {prompts_file}")
    if unmatched:
        log.warning("%d generated files match no prompt id (e.g. %s)", len(unmatched), unmatched[0])
    ids = sorted({pid for _, pid in matches})
    row = {pid: k for k, pid in enumerate(ids)}
    # encode_texts: a prompt is never mistaken for a file name.
    prompt_vectors = model.encode_texts([prompts[i] for i in ids], batch_size=settings.batch_size)
    score = clamp3_score(
        prompt_vectors[[row[pid] for _, pid in matches]],
        gen.vectors[[i for i, _ in matches]],
        groups=[pid for _, pid in matches],
        n_resamples=settings.n_bootstrap,
        seed=settings.seed,
    )
    per_item, per_prompt = score.pop("per_item"), score.pop("per_prompt")
    counts = Counter(pid for _, pid in matches)
    return {
        "clamp3_score": {**score, "unmatched_files": unmatched, "prompts_without_files": missing},
        "prompts": [{"id": pid, "score": s, "n": counts[pid]} for pid, s in per_prompt.items()],
        "items": [
            {"id": pid, "path": gen.paths[i], "score": float(s)} for (i, pid), s in zip(matches, per_item)
        ],
    }
