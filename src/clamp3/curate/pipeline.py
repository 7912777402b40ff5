"""``curate``: catalogue + documents + an LLM -> M4-RAG training JSONL, resumable.

Files written next to the output ``OUT.jsonl`` (``OUT`` = the path without ``.jsonl``):

* ``OUT.jsonl`` — the kept records in catalogue order, written atomically at the end of every run
  (so a partial run already gives a usable file, and a completed run rewrites it whole). Fields:
  ``id``, ``filepaths`` (relative to this folder), ``language``, ``title``, ``artists``, the
  annotation fields, ``translations``. Nothing else, because the trainer reads every other
  str/list field as training text (``official-implementation.md`` §3.5).
* ``OUT.provenance.jsonl`` — one line per finished item in catalogue order: status, rejection
  reason, retrieved passages with scores and a ``used`` flag, grounding and language checks.
* ``OUT.report.json`` (or ``report_path``) — counts of kept and rejected items per reason, pending
  items, requests, input errors.
* ``OUT.curate/`` — the resume state (:mod:`clamp3.curate.state`).
* ``OUT.embeddings/`` — with dense or hybrid retrieval, the passage vectors
  (:mod:`clamp3.curate.embedding_cache`), reused by reruns and by later runs with the same model.

Duplicates are decided at the end, in catalogue order: a kept item whose generated texts match
an earlier kept item's (``quality.duplicate_key``) is rejected as ``duplicate``. Deciding there
rather than while items finish keeps the output independent of completion order and of where a
run was interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from clamp3.curate.annotator import Annotator, CurateSettings, Outcome, annotation_texts
from clamp3.curate.catalogue import CatalogueItem, read_catalogue
from clamp3.curate.documents import Passage, read_documents
from clamp3.curate.embedding_cache import PassageVectors, embed_passages
from clamp3.curate.embeddings import EmbeddingClient
from clamp3.curate.llm import ChatClient
from clamp3.curate.quality import duplicate_key, supported_languages
from clamp3.curate.retrieve import RETRIEVAL_MODES, Bm25Retriever, DenseRetriever, HybridRetriever, Retriever
from clamp3.curate.schema import translation_schema
from clamp3.curate.state import RunState
from clamp3.curate.templates import load_prompts
from clamp3.curate.transport import BudgetExhausted, LLMConfigError, LLMUnavailable
from clamp3.utils.errors import InputError
from clamp3.utils.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"
CATALOGUE_ERROR = "catalogue_error"
# After this many items in a row fail for transport reasons the server is taken to be down.
MAX_CONSECUTIVE_FAILURES = 8


def output_paths(output: str | os.PathLike) -> dict[str, Path]:
    """The files of one run: ``output``, ``provenance``, ``report``; folders ``state``, ``embeddings``."""
    output = Path(output).resolve()
    stem = output.with_suffix("") if output.suffix == ".jsonl" else output
    return {
        "output": output,
        "provenance": stem.with_name(stem.name + ".provenance.jsonl"),
        "report": stem.with_name(stem.name + ".report.json"),
        "state": stem.with_name(stem.name + ".curate"),
        "embeddings": stem.with_name(stem.name + ".embeddings"),
    }


def curate(
    catalogue: str | os.PathLike,
    documents: str | os.PathLike,
    output: str | os.PathLike,
    client: ChatClient,
    settings: CurateSettings,
    *,
    embedder: EmbeddingClient | None = None,
    prompts_dir: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Curate every catalogue item not finished by an earlier run; return the report (also written).

    ``embedder`` is needed by ``settings.retrieval`` ``"dense"`` and ``"hybrid"``; give it the
    client's :class:`RequestBudget` to cap the requests of both. Raises :class:`InputError` for
    unusable inputs (no catalogue, bad prompts, unknown language, changed settings, dense retrieval
    without an embedder) and ``LLMConfigError`` when an endpoint refuses every request; bad rows,
    documents and answers are reported and the run goes on.
    """
    started = time.monotonic()
    paths = output_paths(output)
    prompts = load_prompts(prompts_dir)
    _check_settings(settings, prompts.annotation_schema, embedder)
    items, catalogue_errors = read_catalogue(catalogue)
    passages, n_documents, document_errors = read_documents(documents, settings.passage_words)
    for error in (*catalogue_errors, *document_errors):  # reported, and the run goes on
        log.warning("%s", error)
    embedder = embedder if settings.retrieval != "bm25" else None  # bm25 never asks it
    fingerprint = {**asdict(settings), "model": client.model, "prompts": prompts.fingerprint}
    fingerprint["embed_model"] = embedder and embedder.model  # a changed setting refuses to resume
    state = RunState(paths["state"], json.loads(json.dumps(fingerprint)))
    done = state.open()
    pending = [item for item in items if item.id not in done]
    log.info("%d items, %d finished earlier, %d to do; %d passages", len(items), len(items) - len(pending),
             len(pending), len(passages))  # fmt: skip
    stopped, failures, config_error, vectors = None, {}, None, None
    try:  # an empty ``pending`` falls through: the report of a finished run is written again
        if pending:
            retriever, vectors = _retriever(passages, settings, embedder, paths["embeddings"], show_progress)
            annotator = Annotator(client, prompts, retriever, settings, paths["output"].parent)
            stopped, failures = _run(annotator, pending, state, done, len(items), client, show_progress)
    except LLMConfigError as exc:
        stopped, config_error = f"endpoint refused the requests: {exc}", exc
    except (BudgetExhausted, LLMUnavailable) as exc:
        # Only passage embedding lets these out (``_run`` handles them per item). The vectors
        # embedded so far are cached, so the rerun continues from there.
        stopped = f"passage embedding stopped: {exc}; rerun to continue"
    report = _finalise(items, done, paths, prompts.annotation_schema)
    report.update(complete=report["pending"] == 0, stopped=stopped, failures=failures)
    report.update(catalogue_errors=list(map(str, catalogue_errors)), documents=n_documents)
    report.update(document_errors=list(map(str, document_errors)))
    report.update(passages=len(passages), retrieval=settings.retrieval)
    report["requests"] = {**dict(client.stats), "budget": client.budget.limit, "used": client.budget.used}
    report["embedding"] = _embedding_report(embedder, vectors) if embedder else None
    report["elapsed_seconds"] = round(time.monotonic() - started, 2)
    report["rejected"][CATALOGUE_ERROR] = len(catalogue_errors)
    write_json_atomic(report_path or paths["report"], report)
    if config_error is not None:
        raise config_error
    return report


def _check_settings(
    settings: CurateSettings, schema: dict[str, Any], embedder: EmbeddingClient | None
) -> None:
    if settings.retrieval not in RETRIEVAL_MODES:
        raise InputError(
            "--retrieval", f"unknown mode {settings.retrieval!r} (one of {', '.join(RETRIEVAL_MODES)})"
        )
    if settings.retrieval != "bm25" and embedder is None:
        raise InputError(
            f"--retrieval {settings.retrieval}",
            "needs an embedding model (--embed-model; in Python, curate(..., embedder=EmbeddingClient(...)))",
        )
    known = supported_languages()
    for code in (*settings.languages, settings.source_language):
        if code not in known:
            raise InputError(code, "language not supported by the language detector (py3langid)")
    try:
        translation_schema(schema, list(settings.translate_fields))
    except ValueError as exc:
        raise InputError("--translate-fields", str(exc)) from exc
    if settings.max_attempts < 1 or settings.top_k < 0 or not 0.0 <= settings.min_support <= 1.0:
        raise InputError("settings", "need max_attempts >= 1, top_k >= 0 and 0 <= min_support <= 1")


def _retriever(
    passages: list[Passage],
    settings: CurateSettings,
    embedder: EmbeddingClient | None,
    cache_root: Path,
    show_progress: bool,
) -> tuple[Retriever, PassageVectors | None]:
    """The retriever of ``settings.retrieval`` (BM25 when ``embedder`` is ``None``); dense modes
    first embed the passages the cache lacks."""
    if embedder is None:
        return Bm25Retriever(passages), None
    vectors = embed_passages(passages, embedder, cache_root, show_progress=show_progress)
    dense = DenseRetriever(passages, vectors.vectors, embedder)
    if settings.retrieval == "dense":
        return dense, vectors
    return HybridRetriever(Bm25Retriever(passages), dense), vectors


def _embedding_report(embedder: EmbeddingClient, vectors: PassageVectors | None) -> dict[str, Any]:
    """Model, url, requests; passages read from the cache / embedded / refused when embedding ran."""
    report: dict[str, Any] = {"model": embedder.model, "url": embedder.url}
    if vectors is not None:
        report.update(cached=vectors.cached, embedded=vectors.embedded, refused=vectors.refused)
    report["requests"] = dict(embedder.stats)
    return report


def _run(
    annotator: Annotator,
    pending: list[CatalogueItem],
    state: RunState,
    done: dict[str, dict],
    total: int,
    client: ChatClient,
    show_progress: bool,
) -> tuple[str | None, dict[str, str]]:
    """Process ``pending`` with ``client.concurrency`` workers; ``(stop reason, {id: failure})``.

    Items are submitted a few at a time (not all at once) so that a stop — budget spent, server
    down — leaves the rest untouched, and memory stays flat for a catalogue of millions.
    """
    workers = client.concurrency
    queue = iter(pending)
    running: dict[Future, CatalogueItem] = {}
    failures: dict[str, str] = {}
    stopped: str | None = None
    consecutive_failures = 0
    bar = tqdm(
        total=total, initial=total - len(pending), desc="curate", unit="item", disable=not show_progress
    )
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curate") as pool, bar:
        while True:
            while stopped is None and len(running) < 2 * workers and (item := next(queue, None)) is not None:
                running[pool.submit(annotator.process, item)] = item
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                try:
                    outcome = future.result()
                except BudgetExhausted:
                    stopped = f"request budget of {client.budget.limit} spent; rerun to continue"
                    continue
                except LLMConfigError:
                    raise  # wrong URL, model or key: every other item would fail the same way
                except Exception as exc:  # LLMUnavailable, or a bug: one item must not end the run
                    failures[item.id] = f"{type(exc).__name__}: {exc}"
                    log.warning("item %r failed, will be retried by the next run: %s", item.id, exc)
                    consecutive_failures += 1
                    if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                        stopped = f"{consecutive_failures} items in a row failed; last: {exc}"
                    continue
                consecutive_failures = 0
                entry = _state_entry(outcome)
                state.append(entry)
                done[item.id] = entry
                bar.update()
    return stopped, failures


def _state_entry(outcome: Outcome) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "status": outcome.status,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "record": outcome.record,
        "provenance": outcome.provenance,
    }


def _finalise(
    items: list[CatalogueItem], done: dict[str, dict], paths: dict[str, Path], schema: dict[str, Any]
) -> dict[str, Any]:
    """Write the output and provenance in catalogue order; return the counts."""
    records: list[str] = []
    provenance: list[str] = []
    first_with_key: dict[str, str] = {}
    rejected: Counter[str] = Counter()
    pending = 0
    for item in items:
        entry = done.get(item.id)
        if entry is None:
            pending += 1
            continue
        status, reason, detail = entry["status"], entry["reason"], entry["detail"]
        if status == "kept":
            key = duplicate_key(annotation_texts(entry["record"], schema))
            if key in first_with_key:
                status, reason, detail = "rejected", DUPLICATE, f"same texts as {first_with_key[key]!r}"
            else:
                first_with_key[key] = item.id
                records.append(json.dumps(entry["record"], ensure_ascii=False))
        if status == "rejected":
            rejected[reason] += 1
        line = {"id": item.id, "status": status, "reason": reason, "detail": detail, **entry["provenance"]}
        provenance.append(json.dumps(line, ensure_ascii=False))
    write_text_atomic(paths["output"], "".join(r + "\n" for r in records))
    write_text_atomic(paths["provenance"], "".join(p + "\n" for p in provenance))
    return {
        "output": str(paths["output"]),
        "provenance": str(paths["provenance"]),
        "items": len(items),
        "kept": len(records),
        "rejected": dict(sorted(rejected.items())),
        "pending": pending,
    }
