"""Retrieval benchmark on one split of a built corpus, for any model (``clamp3 benchmark``).

Directions: a text in each language (the piece's ``description``) -> its sheet music (ABC),
its MIDI (MTF) and its audio; and the emergent music -> music directions between sheet, MIDI
and audio, which no training pair ever joins directly. Candidates of a direction are every
piece of the split that has both files; the correct one is the same piece.

Work folder (``OUT``, shared by every model; reruns reuse what exists)::

    OUT/embeddings/<model>/<kind>/<id>.npy   clamp3 embed output per kind (text_<lang>, sheet, midi, audio)
    OUT/embeddings/<model>/model.json        label and weight fingerprint (``clamp3.model_identity``;
                                             a new model drops the folder)
    OUT/index/<model>/<kind>/                clamp3 index of sheet, midi and audio (example queries)
    OUT/benchmark.json                       {"format", "models": {<label>: entry}}; rows keyed by model
    OUT/benchmark.txt                        the latest table, every model side by side, examples
    OUT/benchmark.png                        MRR / Hit@10 of every model vs random and collection-only
    OUT/map-<model>.png                      this model's test pieces on one plane, all four kinds
                                             (:mod:`clamp3.demo.embedding_map`)

Metrics follow :mod:`clamp3.evaluate.metrics` (expected rank under ties); the random baseline
is the exact expectation for ``N`` candidates: MRR = H_N / N, Hit@k = min(k, N) / N.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.evaluate import metrics
from clamp3.model_identity import identify
from clamp3.utils.errors import InputError
from clamp3.utils.io import read_jsonl, write_json_atomic

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

log = logging.getLogger(__name__)

MUSIC_KINDS = ("sheet", "midi", "audio")
EMERGENT = (
    ("sheet", "audio"),
    ("audio", "sheet"),
    ("midi", "audio"),
    ("audio", "midi"),
    ("sheet", "midi"),
    ("midi", "sheet"),
)
KS = (1, 10)
# (language, target kind) of the example queries; the query piece is picked by position, not by score.
EXAMPLES = (("en", "sheet"), ("de", "sheet"), ("zh", "sheet"), ("en", "audio"))
TOP_K = 3


@dataclass(frozen=True)
class Direction:
    """Queries of kind ``query`` (``text_<lang>``, ``sheet``, ``midi``, ``audio``) ranked
    against every candidate of kind ``target``."""

    query: str
    target: str

    @property
    def language(self) -> str | None:
        return self.query[5:] if self.query.startswith("text_") else None

    @property
    def group(self) -> str:
        return "text" if self.language else "emergent"

    @property
    def label(self) -> str:
        source = f"text ({self.language})" if self.language else self.query
        return f"{source} -> {self.target}"


def directions(languages: tuple[str, ...]) -> list[Direction]:
    """Text -> each music kind (languages in order), then the emergent music directions."""
    text = [Direction(f"text_{lang}", kind) for kind in MUSIC_KINDS for lang in languages]
    return text + [Direction(a, b) for a, b in EMERGENT]


def random_baseline(n: int, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Expected metrics of a uniformly random ranking of ``n`` candidates (one correct):
    the correct rank is uniform on 1..n, so E[1/rank] = H_n / n and P(rank <= k) = min(k, n) / n."""
    if n < 1:
        raise ValueError("a random baseline needs at least one candidate")
    out = {"mrr": float(np.sum(1.0 / np.arange(1, n + 1)) / n)}
    out.update({f"hit@{k}": min(k, n) / n for k in ks})
    return out


def collection_reference(collections: dict[str, str], ks: tuple[int, ...] = KS) -> dict[str, float] | None:
    """Expected metrics of a ranking that puts the query's own collection first and orders
    pieces at random within it and elsewhere (piece id -> collection, every piece a candidate).

    It tells what knowing only the collection (Bach chorale, Essen folk song, Irish reel ...)
    is worth: a model at this level separates collections but not pieces of one collection.
    """
    if not collections:
        return None
    sizes = Counter(collections.values())
    per_piece = [random_baseline(sizes[c], ks) for c in collections.values()]
    return {key: float(np.mean([p[key] for p in per_piece])) for key in per_piece[0]}


def slug(label: str) -> str:
    """A file-name-safe form of a model label (``runs/x/best`` -> ``runs-x-best``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "model"


def audio_input(corpus: Path, model: Clamp3Model) -> str:
    """``audio_features`` when the corpus's stored features come from this model's audio
    front-end (same front-end and width, e.g. ``mini`` log-mel), else ``audio``: the WAV files,
    which the model's own front-end (MERT for the official models) turns into features."""
    from clamp3.config import load_preset

    manifest = corpus / "manifest.json"
    preset = None
    if manifest.is_file():
        preset = json.loads(manifest.read_text(encoding="utf-8")).get("options", {}).get("features")
    if preset:
        stored, wanted = load_preset(preset).tower("audio"), model.config.tower("audio")
        if (stored.frontend, stored.feature_dim) == (wanted.frontend, wanted.feature_dim):
            return "audio_features"
    return "audio"


def split_folder(corpus: Path, split: str) -> Path:
    """``corpus/eval/<split>``; raises :class:`InputError` when ``corpus`` is not a built corpus
    or has no piece in that split (cheap: the commands check it before loading a model)."""
    if not (corpus / "manifest.json").is_file() and not (corpus / "eval").is_dir():
        raise InputError(corpus, "not a corpus folder (make one with `clamp3 build-corpus OUT`)")
    root = corpus / "eval" / split
    if not root.is_dir():
        why = "build the corpus first"
        if (corpus / "manifest.json").is_file():  # built, but no piece fell into this split
            why = f"the corpus has no {split!r} piece (see splits.json); build more pieces"
        raise InputError(root, f"no evaluation folder for split {split!r}; {why}")
    return root


def input_folders(
    corpus: Path, split: str, languages: tuple[str, ...], model: Clamp3Model
) -> dict[str, Path]:
    """Kind -> the corpus evaluation folder it is embedded from."""
    root = split_folder(corpus, split)
    folders = {f"text_{lang}": root / f"text_{lang}" for lang in languages}
    folders.update(sheet=root / "sheet", midi=root / "midi", audio=root / audio_input(corpus, model))
    missing = [str(p) for p in folders.values() if not p.is_dir()]
    if missing:
        raise InputError(root, f"missing evaluation folders: {', '.join(missing)}")
    return folders


def prepare_cache(out: Path, label: str, fingerprint: str) -> tuple[Path, Path]:
    """(embedding folder, index folder) of this model; both are dropped when they were made
    by other weights under the same label."""
    emb_root, index_root = out / "embeddings" / slug(label), out / "index" / slug(label)
    stamp = emb_root / "model.json"
    cached = json.loads(stamp.read_text(encoding="utf-8")) if stamp.is_file() else None
    if cached is not None and cached.get("fingerprint") != fingerprint:
        log.info("%s: other weights than the cached embeddings; embedding again", label)
        shutil.rmtree(emb_root)
        shutil.rmtree(index_root, ignore_errors=True)
    emb_root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stamp, {"label": label, "fingerprint": fingerprint})
    return emb_root, index_root


def embed_kinds(
    model: Clamp3Model, folders: dict[str, Path], emb_root: Path, label: str, batch_size: int, progress: bool
) -> list[tuple[str, str]]:
    """``clamp3 embed`` of every kind's folder; returns the (file, reason) failures, which are
    left out of the directions they belong to (the rest of the run goes on)."""
    from clamp3.embed_folder import embed_folder
    from clamp3.pipeline import as_pipeline

    pipeline = as_pipeline(model)  # one tokenizer and audio front-end for every kind
    failures = []
    for kind, folder in folders.items():
        if progress:
            log.info("embedding %s (%s)", kind, folder)
        report = embed_folder(
            pipeline, folder, emb_root / kind, batch_size=batch_size, model_id=label, show_progress=progress
        )
        failures += [(f"{kind}/{rel}", reason) for rel, reason in report.failures]
    return failures


def load_vectors(folder: Path, inputs: Path) -> dict[str, np.ndarray]:
    """Piece id -> stored embedding (D,) of one kind's embedding folder, for the pieces whose
    input file is still in ``inputs`` (a cache may hold pieces of an earlier, larger corpus)."""
    from clamp3.index import load_embeddings

    present = {p.stem for p in inputs.iterdir() if not p.name.startswith(".")}
    found = load_embeddings(folder)
    ids = (key.rsplit("/", 1)[-1] for key in found.keys)
    return {i: found.vectors[row] for row, i in enumerate(ids) if i in present}


def score_direction(queries: dict[str, np.ndarray], targets: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """One table row (metrics, random baseline, counts) and the rank of each query id."""
    ids = sorted(set(queries) & set(targets))
    if not ids:
        raise InputError("benchmark", "a direction has no piece with both files")
    q = np.stack([queries[i] for i in ids])
    r = np.stack([targets[i] for i in ids])
    greater, tied = metrics.rank_counts(metrics.cosine_similarity(q, r), np.arange(len(ids)))
    rank_values = metrics.ranks_from_counts(greater, tied)  # expected rank, for the examples
    row = {"n_queries": len(ids), "n_candidates": len(ids)}
    # From the counts: under ties, Hit@k = P(rank <= k), not [expected rank <= k].
    row.update(metrics.metrics_from_counts(greater, tied, ks=KS))
    row["random"] = random_baseline(len(ids))
    return row, dict(zip(ids, rank_values.tolist()))


@dataclass
class BenchmarkResult:
    """``entry`` is this model's JSON entry (rows, examples, settings); ``table`` its text;
    ``comparison`` every model of the output folder side by side ("" with only one)."""

    label: str
    entry: dict[str, Any]
    table: str
    json_path: Path
    plot_path: Path | None
    failures: list[tuple[str, str]] = field(default_factory=list)
    comparison: str = ""
    map_path: Path | None = None


def run_benchmark(
    model: Clamp3Model | Clamp3Pipeline,
    corpus: str | os.PathLike,
    out: str | os.PathLike,
    label: str,
    *,
    split: str = "test",
    languages: tuple[str, ...] | None = None,
    batch_size: int = 32,
    show_progress: bool = True,
    plot: bool = True,
) -> BenchmarkResult:
    """Embed ``split`` of ``corpus`` with ``model``, index it, score every direction and write
    ``OUT/benchmark.json`` (this model's entry replaces an older one of the same ``label``,
    other models' entries stay), ``benchmark.txt`` (with every model of ``out`` side by
    side) and, with ``plot`` and matplotlib, ``benchmark.png`` and this model's embedding map
    ``map-<label>.png``. Metrics are floats in [0, 1]. Raises ``InputError`` for a corpus
    without that split."""
    from clamp3.corpus.texts import LANGUAGES
    from clamp3.demo import report

    start = time.perf_counter()
    corpus, out = Path(corpus), Path(out)
    languages = tuple(languages or LANGUAGES)
    folders = input_folders(corpus, split, languages, model)
    emb_root, index_root = prepare_cache(out, label, identify(model).fingerprint)
    failures = embed_kinds(model, folders, emb_root, label, batch_size, show_progress)
    vectors = {kind: load_vectors(emb_root / kind, folders[kind]) for kind in folders}
    rows, ranks = [], {}
    for d in directions(languages):
        row, ranks[d] = score_direction(vectors[d.query], vectors[d.target])
        head = {"direction": d.label, "query": d.query, "target": d.target, "language": d.language}
        rows.append({**head, "group": d.group, **row})
    records = read_jsonl(corpus / f"m4rag_{split}.jsonl")
    titles = {r["id"]: r.get("title", "") for r in records}
    collections = {r["id"]: r["facts"]["collection"] for r in records if "collection" in r.get("facts", {})}
    indexes = build_indexes(emb_root, index_root, show_progress)
    examples = example_queries(model, folders, indexes, titles, ranks, languages)
    entry = {
        "model": label,
        "corpus": str(corpus),
        "split": split,
        "n_pieces": len(vectors["sheet"]),
        "audio_input": folders["audio"].name,
        "languages": list(languages),
        "ties": "expected",
        "rows": rows,
        "collection_reference": collection_reference(
            {i: collections[i] for i in vectors["sheet"] if i in collections}
        ),
        "examples": examples,
        "failures": [{"file": f, "reason": r} for f, r in failures],
        "seconds": round(time.perf_counter() - start, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    json_path, plot_path, table, comparison = report.write_outputs(out, entry, plot=plot)
    map_path = write_map(out, label, split, vectors, collections, languages[0]) if plot else None
    return BenchmarkResult(label, entry, table, json_path, plot_path, failures, comparison, map_path)


def write_map(
    out: Path,
    label: str,
    split: str,
    vectors: dict[str, dict[str, np.ndarray]],
    collections: dict[str, str],
    language: str,
) -> Path | None:
    """``OUT/map-<label>.png`` (:func:`clamp3.demo.embedding_map.plot_embedding_map`); None
    when it has too few pieces, and with a warning without matplotlib: the picture is optional,
    the table is the result."""
    from clamp3.demo.embedding_map import plot_embedding_map

    title = f"{label}: {split} split; text ({language}), sheet, MIDI and audio"
    try:
        return plot_embedding_map(
            vectors, collections, out / f"map-{slug(label)}.png", text_kind=f"text_{language}", title=title
        )
    except ImportError as exc:
        log.warning("%s; no embedding map written", exc)
        return None


def build_indexes(emb_root: Path, index_root: Path, progress: bool) -> dict[str, Path]:
    """``clamp3 index`` (exact) of each music kind; a rerun appends nothing and returns at once."""
    from clamp3.index import build_index

    for kind in MUSIC_KINDS:
        build_index(emb_root / kind, index_root / kind, append=True, progress=progress)
    return {kind: index_root / kind for kind in MUSIC_KINDS}


def example_queries(
    model: Clamp3Model,
    folders: dict[str, Path],
    indexes: dict[str, Path],
    titles: dict[str, str],
    ranks: dict[Direction, dict[str, float]],
    languages: tuple[str, ...],
) -> list[dict[str, Any]]:
    """The :data:`EXAMPLES` queries through ``clamp3 search`` (the text is encoded again, as a
    user's query would be): the query piece, its text, the rank of the correct piece among all
    candidates, and the top results (id, title, cosine, correct or not)."""
    from clamp3.index.query import search

    out = []
    for number, (lang, kind) in enumerate(EXAMPLES):
        if lang not in languages:
            continue
        ids = sorted(p.stem for p in folders[f"text_{lang}"].glob("*.txt"))
        if not ids:
            continue
        piece = ids[(number * 7919) % len(ids)]  # spread over the split, fixed by position only
        text = (folders[f"text_{lang}"] / f"{piece}.txt").read_text(encoding="utf-8").strip()
        hits = search(text, indexes[kind], model=model, top_k=TOP_K)
        results = []
        for hit in hits:
            found = hit["key"].rsplit("/", 1)[-1]
            results.append(
                {
                    "rank": hit["rank"],
                    "id": found,
                    "title": titles.get(found, ""),
                    "score": round(hit["score"], 4),
                    "correct": found == piece,
                }
            )
        rank = ranks.get(Direction(f"text_{lang}", kind), {}).get(piece)
        head = {"language": lang, "target": kind, "id": piece, "title": titles.get(piece, "")}
        out.append({**head, "query": text, "rank_of_correct": rank, "results": results})
    return out
