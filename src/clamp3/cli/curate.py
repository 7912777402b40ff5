"""``clamp3 curate``: retrieval-augmented annotation and translation of a catalogue with an LLM."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING

from clamp3.cli.args import (
    add_quiet_flag,
    fraction,
    http_url,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from clamp3.curate import ChatClient, EmbeddingClient

# Exit codes: 0 every item finished; 1 finished, but catalogue rows or documents could not be read;
# 3 some items pending (budget spent, server unavailable): rerun to continue; 2 bad input; 4 an
# endpoint (chat or embeddings) refuses every request (URL, model or key).
EXIT_INCOMPLETE, EXIT_INPUT, EXIT_ENDPOINT = 3, 2, 4
# Spelled out rather than imported from clamp3.curate.retrieve, which needs the curate extra:
# registering the sub-command must not, or `clamp3 --help` would fail without it.
RETRIEVAL_MODES = ("bm25", "dense", "hybrid")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "curate",
        help="annotate and translate a catalogue with an LLM and retrieved documents -> M4-RAG JSONL",
        description="Retrieve passages for each catalogue item (BM25, dense embeddings or both fused), "
        "ask an OpenAI-compatible LLM for "
        "annotation fields as JSON, check grounding and languages, translate, and write training JSONL. "
        "Reruns continue where a previous run stopped.",
    )
    p.add_argument("catalogue", help="CSV or JSONL: id, filepaths, title, artists/composer, other metadata")
    p.add_argument("documents", help="folder of .txt/.md/.html files, or a JSONL dump of {id, title, text}")
    p.add_argument("output", help="output JSONL (M4-RAG format); side files are written next to it")
    _add_llm_arguments(p)
    _add_retrieval_arguments(p)
    _add_content_arguments(p)
    p.add_argument(
        "--prompts", default=None, help="folder overriding the prompt templates / annotation schema"
    )
    p.add_argument("--report", default=None, help="report JSON path (default: OUT.report.json)")
    add_quiet_flag(p)
    p.set_defaults(handler=_curate)


def _add_llm_arguments(p: argparse.ArgumentParser) -> None:
    """Where the LLM is and how to talk to it."""
    p.add_argument(
        "--llm-url",
        required=True,
        type=http_url,
        help="API root of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1",
    )
    p.add_argument("--llm-model", required=True, help="model name sent with each request")
    p.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (unset = none)",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        help="requests in flight at once (default: 4)",
    )
    p.add_argument(
        "--max-requests",
        type=non_negative_int,
        default=None,
        help="request budget for this run, retries included",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=120.0,
        help="seconds per HTTP request (default: 120)",
    )
    p.add_argument(
        "--retries",
        type=non_negative_int,
        default=5,
        help="retries on 429/5xx/timeouts (default: 5)",
    )
    p.add_argument(
        "--max-backoff",
        type=non_negative_float,
        default=60.0,
        help="longest wait between retries, seconds (default: 60)",
    )
    p.add_argument(
        "--no-json-mode", action="store_true", help="do not send response_format (for servers that reject it)"
    )


def _add_retrieval_arguments(p: argparse.ArgumentParser) -> None:
    """How passages are found; dense and hybrid use an OpenAI-compatible /embeddings endpoint."""
    p.add_argument(
        "--retrieval",
        choices=RETRIEVAL_MODES,
        default="bm25",
        help="bm25, dense (embedding cosine) or hybrid (reciprocal rank fusion of both) (default: bm25)",
    )
    p.add_argument("--embed-model", default=None, help="embedding model name (needed by dense and hybrid)")
    p.add_argument(
        "--embed-url",
        type=http_url,
        default=None,
        help="API root of the embedding server (default: --llm-url)",
    )
    p.add_argument(
        "--embed-api-key-env",
        default=None,
        help="environment variable of its API key (default: --api-key-env)",
    )
    p.add_argument(
        "--embed-batch-size",
        type=positive_int,
        default=64,
        help="passages per embedding request (default: 64)",
    )


def _add_content_arguments(p: argparse.ArgumentParser) -> None:
    """Settings that decide what the records contain (a resumed run must keep them)."""
    p.add_argument(
        "--languages",
        default="",
        help="comma-separated translation targets, one chosen per item (default: none)",
    )
    p.add_argument(
        "--source-language", default="en", help="language the annotations are written in (default: en)"
    )
    p.add_argument(
        "--translate-fields",
        default="background,analysis,description,scene",
        help="comma-separated fields to translate",
    )
    p.add_argument(
        "--top-k-passages",
        dest="top_k",
        type=non_negative_int,
        default=5,
        help="passages retrieved per item (default: 5)",
    )
    p.add_argument("--passage-words", type=positive_int, default=200, help="words per passage (default: 200)")
    p.add_argument(
        "--min-support",
        type=fraction,
        default=0.8,
        help="share of names that must be grounded (default: 0.8)",
    )
    p.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        help="answers asked per request before rejecting (default: 3)",
    )


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _clients(args: argparse.Namespace) -> tuple[ChatClient, EmbeddingClient | None]:
    """The chat client and, when ``--embed-model`` names one, the embedding client (dense and
    hybrid retrieval need it: ``curate`` says so). They share one budget (so --max-requests caps
    the whole run), the retry policy, timeout and concurrency."""
    from clamp3.curate import ChatClient, EmbeddingClient, RequestBudget, RetryPolicy

    shared = {
        "timeout": args.timeout,
        "concurrency": args.concurrency,
        "budget": RequestBudget(args.max_requests),
        "retry": RetryPolicy(max_retries=args.retries, base_delay=1.0, max_delay=args.max_backoff),
    }
    api_key = os.environ.get(args.api_key_env) or None
    client = ChatClient(
        args.llm_url, args.llm_model, api_key=api_key, json_mode=not args.no_json_mode, **shared
    )
    if args.retrieval == "bm25" or not args.embed_model:
        return client, None
    if args.embed_api_key_env:
        api_key = os.environ.get(args.embed_api_key_env) or None
    embedder = EmbeddingClient(
        args.embed_url or args.llm_url,
        args.embed_model,
        api_key=api_key,
        batch_size=args.embed_batch_size,
        **shared,
    )
    return client, embedder


def _curate(args: argparse.Namespace) -> int:
    from clamp3.cli.args import settings_from
    from clamp3.curate import CurateSettings, curate

    if not args.verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    settings = settings_from(
        CurateSettings, args, languages=_split(args.languages), translate_fields=_split(args.translate_fields)
    )
    # The clients and curate() check their settings (ValueError, InputError): exit 2, and a wrong
    # endpoint (LLMConfigError) 4, through cli.main.
    client, embedder = _clients(args)
    with client, embedder or contextlib.nullcontext():
        report = curate(
            args.catalogue,
            args.documents,
            args.output,
            client,
            settings,
            embedder=embedder,
            prompts_dir=args.prompts,
            report_path=args.report,
            show_progress=not args.quiet,
        )
    summary = {k: report[k] for k in ("items", "kept", "rejected", "pending", "stopped")}
    print(json.dumps(summary, ensure_ascii=False))
    return _status(args.catalogue, report)


def _status(catalogue: str, report: dict) -> int:
    """3 while items are pending; else, as every batch command, 1 when catalogue rows or
    documents could not be read (each was named above) and 0 when all were; a catalogue none
    of whose rows can be used is bad input (2)."""
    from clamp3.cli.args import failures_status
    from clamp3.utils.errors import InputError

    rows, documents = len(report["catalogue_errors"]), len(report["document_errors"])
    if report["items"] == 0 and rows:
        raise InputError(catalogue, f"no catalogue row can be used ({rows} rejected; reasons above)")
    if not report["complete"]:
        return EXIT_INCOMPLETE
    return failures_status(rows + documents, "catalogue rows or documents could not be read and are left out")
