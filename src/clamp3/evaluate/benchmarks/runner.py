"""Load a data set, embed it (resumably), score every direction, write the results.

Output folder ``OUT``::

    OUT/results.json    {"dataset", "model", "fingerprint", "ties", "subset", "rows": [...],
                         "published": [...], "notes", "errors", "created"}; each row as in
                         rows.json plus "published" (the paper's figures for it, if any)
    OUT/rows.json       exactly {"rows": [{dataset, direction, text_type, language, n_queries,
                         n_candidates, mrr, hit@1, hit@10, hit@100}]} (also ``--json FILE``)
    OUT/ranks.jsonl     one line per query: direction, text_type, language, query, key, rank
                         (under the tie mode), n_greater, n_tied, score
    OUT/errors.jsonl    one line per input that could not be embedded (``clamp3.utils.errorlog``:
                         path, reason, time; then modality and piece key; a text's path is its
                         query id)
    OUT/retrieval.png   MRR per direction, ours beside the published figure
    OUT/cache/          the vector cache (:mod:`.embedder`); a rerun embeds only what is missing

A direction's candidates are the pieces whose file embedded; its queries are the texts of
those pieces (text -> music) or the pieces embedded in both modalities (music -> music).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clamp3.evaluate import metrics
from clamp3.evaluate.benchmarks import embedder, loader
from clamp3.evaluate.benchmarks.layout import BenchmarkData, select_queries
from clamp3.utils.errorlog import error_record
from clamp3.utils.errors import InputError
from clamp3.utils.io import json_text, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from clamp3.model import Clamp3Model
    from clamp3.pipeline import Clamp3Pipeline

log = logging.getLogger(__name__)

KS = (1, 10, 100)
ROW_FIELDS = (
    "dataset",
    "direction",
    "text_type",
    "language",
    "n_queries",
    "n_candidates",
    "mrr",
    "hit@1",
    "hit@10",
    "hit@100",
)


@dataclass
class Vectors:
    """Embedded inputs: music ``(modality, key) -> (D,)``, text ``query id -> (D,)``, failures."""

    music: dict[str, dict[str, np.ndarray]]
    text: dict[str, np.ndarray]
    errors: list[dict[str, Any]] = field(default_factory=list)  # ``errors.jsonl`` records


@dataclass
class BenchmarkRun:
    rows: list[dict[str, Any]]
    result: dict[str, Any]
    out: Path
    plot: Path | None = None


def embed_data(
    embed: embedder.Embedder, data: BenchmarkData, cache: embedder.VectorCache, progress: bool
) -> Vectors:
    """Every music file and text query of ``data`` through the cache; bad inputs are recorded."""
    from tqdm.auto import tqdm

    total = sum(len(files) for files in data.music.values()) + len(data.queries)
    bar = tqdm(total=total, desc=f"embed {data.dataset}", unit="item", disable=not progress)
    out = Vectors({}, {})
    for modality, files in data.music.items():
        keys = sorted(files)
        paths = [files[k] for k in keys]
        results = embedder.cached(
            cache,
            [embedder.file_key(p) for p in paths],
            lambda idx, paths=paths: embed.files([paths[i] for i in idx]),
            bar.update,
        )
        out.music[modality] = {}
        for key, path, result in zip(keys, paths, results):
            if isinstance(result, InputError):
                out.errors.append(error_record(path, result.reason, modality=modality, key=key))
            else:
                out.music[modality][key] = result
    texts = [embedder.as_text_file(q.text) for q in data.queries]  # as the official .txt inputs
    results = embedder.cached(
        cache,
        [embedder.text_key(t) for t in texts],
        lambda idx: embed.texts([texts[i] for i in idx]),
        bar.update,
    )
    for query, result in zip(data.queries, results):
        if isinstance(result, InputError):
            out.errors.append(error_record(query.id, result.reason, modality="text", key=query.key))
        else:
            out.text[query.id] = result
    bar.close()
    cache.compact()  # one shard per run: a rerun reads one file, however many chunks it took
    return out


def score(
    dataset: str,
    direction: str,
    text_type: str | None,
    language: str | None,
    queries: list[tuple[str, str, np.ndarray]],
    candidates: dict[str, np.ndarray],
    ties: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """One row and its per-query records; ``queries`` are (query id, key, vector). None when
    no query has a candidate."""
    keys = sorted(candidates)
    column = {k: i for i, k in enumerate(keys)}
    queries = [q for q in queries if q[1] in column]
    if not queries:
        return None
    q = np.stack([v for _, _, v in queries])
    r = np.stack([candidates[k] for k in keys])
    correct = np.array([column[key] for _, key, _ in queries], np.int64)
    greater, tied, sims = metrics.rank_counts_chunked(q, r, correct)
    row = {
        "dataset": dataset,
        "direction": direction,
        "text_type": text_type,
        "language": language,
        "n_queries": len(queries),
        "n_candidates": len(keys),
    }
    row.update(metrics.metrics_from_counts(greater, tied, ties, KS))
    ranks = metrics.ranks_from_counts(greater, tied, ties)
    head = {"direction": direction, "text_type": text_type, "language": language}
    records = [
        {
            **head,
            "query": qid,
            "key": key,
            "rank": float(rank),
            "n_greater": int(g),
            "n_tied": int(t),
            "score": float(s),
        }
        for (qid, key, _), rank, g, t, s in zip(queries, ranks, greater, tied, sims)
    ]
    return row, records


def score_all(data: BenchmarkData, vectors: Vectors, ties: str) -> tuple[list[dict], list[dict]]:
    """Rows and per-query records of every direction (module docstring), in table order."""
    rows, records = [], []
    modalities = [m for m in data.modalities() if vectors.music.get(m)]
    for text_type, language in data.text_groups():
        group = [
            (q.id, q.key, vectors.text[q.id])
            for q in data.queries
            if (q.text_type, q.language) == (text_type, language) and q.id in vectors.text
        ]
        for modality in modalities:
            done = score(
                data.dataset, f"text->{modality}", text_type, language, group, vectors.music[modality], ties
            )
            if done:
                rows.append(done[0])
                records += done[1]
    if data.emergent:
        for a in modalities:
            for b in modalities:
                if a == b:
                    continue
                both = [(k, k, v) for k, v in sorted(vectors.music[a].items()) if k in vectors.music[b]]
                candidates = {k: vectors.music[b][k] for _, k, _ in both}
                done = score(data.dataset, f"{a}->{b}", None, None, both, candidates, ties)
                if done:
                    rows.append(done[0])
                    records += done[1]
    return rows, records


TOWER = {"sheet": "symbolic", "midi": "symbolic", "audio": "audio"}


def without_missing_towers(data: BenchmarkData, model: Clamp3Model) -> BenchmarkData:
    """``data`` without the music modalities ``model`` has no tower for (CLaMP 2: no audio),
    each left out with a note instead of one error per file."""
    have = set(model.config.modalities)
    for modality in list(data.music):
        if TOWER[modality] not in have:
            del data.music[modality]
            data.notes.append(
                f"model {model.config.name!r} has no {TOWER[modality]} tower: {modality} left out"
            )
    return data


def write_outputs(
    out: Path, result: dict[str, Any], records: list[dict], json_out: str | os.PathLike | None, plot: bool
) -> Path | None:
    """Every file of the module docstring, atomically; returns the plot's path (None without)."""
    plain = {"rows": [{k: row[k] for k in ROW_FIELDS} for row in result["rows"]]}
    write_json_atomic(out / "results.json", result)
    write_json_atomic(out / "rows.json", plain)
    if json_out is not None:
        write_json_atomic(json_out, plain)
    write_text_atomic(out / "ranks.jsonl", "".join(json_text(r) + "\n" for r in records))
    write_text_atomic(out / "errors.jsonl", "".join(json_text(e) + "\n" for e in result["errors"]))
    if not plot:
        return None
    from clamp3.evaluate.benchmarks.report import plot_rows

    try:
        return plot_rows(result["rows"], out / "retrieval.png", f"{result['dataset']} / {result['model']}")
    except ImportError as exc:
        log.warning("no plot: %s", exc)
        return None


def run_benchmark(
    dataset: str,
    path: str | os.PathLike,
    model: Clamp3Model | Clamp3Pipeline,
    out: str | os.PathLike,
    *,
    model_label: str,
    subset: str | None = None,
    text_types: Sequence[str] | None = None,
    languages: Sequence[str] | None = ("en",),
    ties: str = "expected",
    published_as: str | None = None,
    json_out: str | os.PathLike | None = None,
    batch_size: int = 32,
    plot: bool = True,
    show_progress: bool = False,
) -> BenchmarkRun:
    """Score ``model`` (a model, or a pipeline around one) on data set ``dataset`` at ``path``
    and write ``out`` (module docstring).

    ``languages=None`` keeps every language the data set has; ``published_as`` (``saas``,
    ``c2``, ...) picks the paper's model whose figures are printed beside ours (None: none).
    Raises :class:`InputError` for a layout that does not match the loader's documentation.
    """
    from clamp3.evaluate.benchmarks import published
    from clamp3.model_identity import identify

    if ties not in metrics.TIE_MODES:
        raise ValueError(f"unknown tie mode {ties!r}; choose from {', '.join(metrics.TIE_MODES)}")
    mod = loader(dataset)
    if subset is not None and subset not in mod.SUBSETS:
        raise InputError(path, f"{dataset} has no subset {subset!r}; choose from {', '.join(mod.SUBSETS)}")
    out = Path(out)
    embed = embedder.Embedder(model, batch_size)
    data = without_missing_towers(
        select_queries(mod.load(Path(path), subset, out / "inputs"), text_types, languages), embed.model
    )
    identity = identify(embed.model)
    # fp16 / bf16 vectors differ from fp32 ones (~1e-3): each precision keeps its own cache.
    cache = embedder.VectorCache(out / "cache", f"{identity.fingerprint}-{embedder.precision(embed.model)}")
    vectors = embed_data(embed, data, cache, show_progress)
    rows, records = score_all(data, vectors, ties)
    if not rows:
        raise InputError(data.source, "nothing to score: no direction has a query with an embedded candidate")
    paper = published.for_model(published_as) if published_as else []
    for row in rows:
        row["published"] = published.match(paper, row)
    result = {"dataset": dataset, "source": str(data.source), "model": model_label}
    result.update(fingerprint=identity.fingerprint, published_as=published_as, ties=ties)
    result.update(subset=subset or mod.SUBSETS[0], rows=rows, notes=data.notes, errors=vectors.errors)
    result["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    picture = write_outputs(out, result, records, json_out, plot)
    return BenchmarkRun(rows, result, out, picture)
