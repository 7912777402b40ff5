"""``clamp3 index``, ``search``, ``score`` and ``eval``: embedding folders -> answers.

Handlers only parse, call :mod:`clamp3.index` / :mod:`clamp3.evaluate` and print. Exit status:
0 success, 1 some inputs failed (reported), 2 bad usage or input (a one-line error).
"""

from __future__ import annotations

import argparse
import json
import sys

from clamp3.cli.args import (
    add_captioner_argument,
    add_model_arguments,
    add_model_mismatch_flag,
    add_quiet_flag,
    pipeline_of,
    positive_int,
    print_first_failures,
)
from clamp3.utils.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    _register_index(sub)
    _register_remove(sub)
    _register_search(sub)
    _register_score(sub)
    _register_eval(sub)


def _register_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="build, extend or sync a cosine index (FAISS or Milvus) over an embedding folder",
        description=(
            "Index every .npy embedding below EMB_DIR (the `clamp3 embed` layout) into INDEX_DIR. FAISS "
            "(default): index.faiss + ids.jsonl (row -> key, path, modality, npy, n_items, sha256, model, "
            "catalogue columns) + meta.json. Milvus (--backend milvus --uri FILE.db | http://host:19530): "
            "the collection holds vectors and metadata, INDEX_DIR/meta.json says where. Exact by default. "
            "Unreadable embeddings are skipped, listed, and logged to INDEX_DIR/errors.jsonl (exit status 1)."
        ),
    )
    p.add_argument("emb_dir", metavar="EMB_DIR")
    p.add_argument("index_dir", metavar="INDEX_DIR")
    p.add_argument(
        "--approximate",
        choices=["hnsw", "ivf"],
        default=None,
        help="approximate index for large collections, tuned for recall@10 >= 0.95",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--append", action="store_true", help="add files not yet in INDEX_DIR (no rebuild)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing index")
    group.add_argument(
        "--sync",
        action="store_true",
        help="make INDEX_DIR hold exactly EMB_DIR: add new, replace changed (sha256), delete vanished",
    )
    p.add_argument("--backend", choices=["faiss", "milvus"], default=None, help="default: faiss (new index)")
    p.add_argument(
        "--uri", default=None, help="Milvus: a Milvus Lite file (./library.db) or http://host:19530"
    )
    p.add_argument("--collection", default=None, help="Milvus collection (default: INDEX_DIR's name)")
    p.add_argument(
        "--token-env", default=None, metavar="VAR", help="Milvus: environment variable holding the token"
    )
    p.add_argument(
        "--index-type",
        default=None,
        help="Milvus index type of the kind (HNSW_SQ, IVF_SQ8; default HNSW / IVF_FLAT)",
    )
    p.add_argument(
        "--catalogue",
        default=None,
        metavar="FILE",
        help="CSV/JSONL of item metadata joined by key/id or path (columns become --where filters)",
    )
    add_quiet_flag(p)
    p.set_defaults(handler=_index)


def _register_remove(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index-remove",
        help="remove chosen items (by key or path) from an index, FAISS or Milvus",
        description=(
            "Remove the items named by ITEM (a key, as `search` prints it, the item's original path or its "
            ".npy path) from INDEX_DIR, and their metadata rows with them. Every name is checked first: one "
            "that is not indexed is an error (exit status 2) and nothing is removed; one removed before is "
            "passed over, so a rerun succeeds. Atomic on FAISS (one "
            "meta.json swap); journalled on Milvus, so a removal killed half-way is hidden at once and a "
            "rerun finishes it. Removed items stay out of later `index --append` and `--sync` runs (their "
            "embeddings are still in the folder) until `--undo` readmits them. `clamp3 index --sync` removes "
            "what vanished from the embedding folder instead."
        ),
    )
    p.add_argument("items", nargs="*", metavar="ITEM")
    p.add_argument("index_dir", metavar="INDEX_DIR")
    p.add_argument(
        "--from", dest="from_file", default=None, metavar="FILE", help="more items, one per line (- : stdin)"
    )
    p.add_argument(
        "--undo",
        action="store_true",
        help="readmit items removed before: the next `index --append` or `--sync` indexes them again",
    )
    p.set_defaults(handler=_remove)


def _register_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search an index with text, a music file, an image or a .npy embedding",
        description=(
            "QUERY is text in any language, a music file (.abc .xml .mxl .mid .mtf .wav ...), an image (.png .jpg "
            ".jpeg .webp: searched by its caption, which is printed on stderr), MERT features "
            "(.npy, (1, n, 768)) or a stored embedding (.npy, (1, D)). Prints a ranked table with cosine scores "
            "(equal scores ordered by key). --model defaults to the model recorded in the index (its absolute "
            "path or tag, from the embedding manifest)."
        ),
    )
    p.add_argument("query", metavar="QUERY")
    p.add_argument("index_dir", metavar="INDEX_DIR")
    p.add_argument("--top-k", type=positive_int, default=10, help="results to show (default 10)")
    p.add_argument(
        "--modality",
        choices=("text", "symbolic", "audio"),
        default=None,
        help="only results of this modality",
    )
    p.add_argument(
        "--where",
        default=None,
        metavar="EXPR",
        help="""filter on metadata, e.g. 'modality == "audio" and year >= 1950 and composer in ["Bach"]'""",
    )
    add_model_arguments(p, default=None)
    add_captioner_argument(p)
    p.add_argument("--json", action="store_true", help="print a JSON list: rank, path, score, modality, ...")
    p.set_defaults(handler=_search)


def _add_folder_pair(p: argparse.ArgumentParser) -> None:
    """Q_DIR R_DIR, two embedding folders compared by their match keys, and the override for
    two folders of different models (score, eval)."""
    p.add_argument("query_dir", metavar="Q_DIR")
    p.add_argument("reference_dir", metavar="R_DIR")
    add_model_mismatch_flag(p, "the two folders were embedded by different models")


def _register_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="cosine between matched files of two embedding folders (or between folder means)",
        description=(
            "Pairwise (default): each query file is matched to the reference with the same relative folder "
            "and file-name prefix before the first dot; writes one JSON line per pair (query, reference, key, "
            "score). Unmatched files are listed on stderr. --group: cosine of the mean query vector and the "
            "mean reference vector."
        ),
    )
    _add_folder_pair(p)
    p.add_argument("--group", action="store_true", help="score the two folders' mean vectors")
    p.add_argument("--out", default=None, metavar="FILE", help="write JSONL (pairwise) / JSON (group) here")
    p.set_defaults(handler=_score)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="retrieval evaluation: MRR and Hit@1/10/100 of Q_DIR against R_DIR",
        description=(
            "For every query embedding, rank all references by cosine and find the one with the same "
            "match key (relative folder + file-name prefix before the first dot). Every query key must "
            "have a reference and vice versa. Ties are broken at random in expectation by default (MRR = "
            "E[1/rank], Hit@k = P(rank <= k); the per-query rank is the expected rank 1 + greater + tied/2); "
            "--ties optimistic reproduces the official script (the correct reference wins every tie)."
        ),
    )
    _add_folder_pair(p)
    p.add_argument("--ties", choices=["expected", "optimistic"], default="expected")
    p.add_argument("--ranks", default=None, metavar="FILE", help="per-query ranks as JSONL")
    p.add_argument("--json", default=None, metavar="FILE", help="metrics as JSON")
    p.add_argument(
        "--plot", default=None, metavar="FILE", help="Hit@k curve + rank histogram (needs matplotlib)"
    )
    add_quiet_flag(p)
    p.set_defaults(handler=_eval)


def _index(args: argparse.Namespace) -> int:
    from clamp3.index import build_index

    milvus = {"uri": args.uri, "collection": args.collection, "token_env": args.token_env}
    milvus["index_type"] = args.index_type
    if args.backend != "milvus" and any(milvus.values()):
        raise InputError(
            args.index_dir, "--uri, --collection, --token-env and --index-type need --backend milvus"
        )
    report = build_index(
        args.emb_dir,
        args.index_dir,
        approximate=args.approximate,
        append=args.append,
        overwrite=args.overwrite,
        sync=args.sync,
        backend=args.backend,
        milvus={k: v for k, v in milvus.items() if v},
        catalogue=args.catalogue,
        progress=not args.quiet,
    )
    synced = f", {report.replaced} replaced, {report.removed} removed" if args.sync else ""
    print(
        f"{report.index_dir}: {report.backend} {report.kind} index of {report.total} vectors "
        f"({report.added} added{synced}, {report.already_indexed} already there, {len(report.errors)} failed)",
        file=sys.stderr,
    )
    if unmatched := report.catalogue_unmatched:
        rows = "1 catalogue row" if len(unmatched) == 1 else f"{len(unmatched)} catalogue rows"
        join = f"joined on {report.catalogue_join}; e.g. {unmatched[0]!r}"
        print(f"  {rows} matched no item ({join})", file=sys.stderr)
    if report.stale:
        print(
            f"  {len(report.stale)} already indexed items have changed files (sha256; e.g. "
            f"{report.stale[0]}): --append keeps their old vectors, --sync replaces them",
            file=sys.stderr,
        )
    if report.withheld:
        print(
            f"  {report.withheld} left out: removed with index-remove (`index-remove --undo` readmits)",
            file=sys.stderr,
        )
    print_first_failures([f"  {err}" for err in report.errors], report.index_dir / "errors.jsonl")
    return 1 if report.errors else 0


def _remove(args: argparse.Namespace) -> int:
    from clamp3.index.removal import readmit_items, remove_items

    names = list(args.items)
    if args.from_file is not None:
        from clamp3.utils.io import read_text

        text = sys.stdin.read() if args.from_file == "-" else read_text(args.from_file)
        names += [line.strip() for line in text.splitlines() if line.strip()]
    if args.undo:
        report = readmit_items(args.index_dir, names)
        print(
            f"{report.index_dir}: {len(report.removed)} readmitted; `clamp3 index EMB_DIR "
            f"{report.index_dir} --append` (or --sync) indexes them again",
            file=sys.stderr,
        )
        return 0
    report = remove_items(args.index_dir, names)
    print(
        f"{report.index_dir}: {report.backend} index: {len(report.removed)} removed, {report.total} left",
        file=sys.stderr,
    )
    if before := report.removed_before:
        print(f"  {len(before)} removed before, left as they are (e.g. {before[0]})", file=sys.stderr)
    return 0


def _search(args: argparse.Namespace) -> int:
    from clamp3.index import SearchIndex
    from clamp3.index.query import is_image_query, needs_model, search

    index = SearchIndex.load(args.index_dir)
    where = (
        index.where(args.where) if args.where is not None else None
    )  # a bad filter fails before any model loads
    model = None
    if needs_model(args.query, index.dim):
        model = pipeline_of(args, index=index, one_shot=True)  # one query, then the process ends
    results = search(args.query, index, model=model, top_k=args.top_k, modality=args.modality, where=where)
    if model is not None and is_image_query(args.query):  # remembered: not captioned a second time
        print(f"the image is searched as: {model.captioner.caption(args.query)}", file=sys.stderr)
    if not results:  # a blank table alone reads like a failure
        kept = [f"--modality {args.modality}"] if args.modality else []
        kept += [f"--where {args.where!r}"] if where else []
        reason = f"no item passes {' and '.join(kept)}" if kept else "the index is empty"
        print(f"no results: {reason}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
        return 0
    print(f"{'rank':>4}  {'score':>7}  {'modality':<9} path")
    for r in results:
        print(f"{r['rank']:>4}  {r['score']:>7.4f}  {str(r['modality'] or '-'):<9} {r['path']}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from clamp3.evaluate.items import check_output_file
    from clamp3.evaluate.score import score_groups, score_pairs
    from clamp3.utils.io import write_json_atomic, write_text_atomic

    if args.out:
        check_output_file(args.out)  # before the work, as eval does
    if args.group:
        result = score_groups(args.query_dir, args.reference_dir, args.allow_model_mismatch)
        if args.out:
            write_json_atomic(args.out, result)
        print(json.dumps(result))
        return 0
    scores = score_pairs(args.query_dir, args.reference_dir, args.allow_model_mismatch)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scores.records)
    if args.out:
        write_text_atomic(args.out, lines)
        mean = sum(r["score"] for r in scores.records) / len(scores.records)
        print(f"{len(scores.records)} pairs, mean cosine {mean:.4f} -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    for label, files in (("query", scores.unmatched_queries), ("reference", scores.unmatched_references)):
        if files:
            shown = ", ".join(files[:10]) + (f" ... and {len(files) - 10} more" if len(files) > 10 else "")
            print(f"unmatched {label} files ({len(files)}): {shown}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from clamp3.evaluate.items import check_output_file
    from clamp3.evaluate.score import evaluate_retrieval
    from clamp3.utils.io import write_json_atomic, write_text_atomic
    from clamp3.utils.plotting import check_figure_path

    for output in filter(None, (args.ranks, args.json, args.plot)):  # before the work, not after
        check_output_file(output)
    if args.plot:
        check_figure_path(args.plot)
    result = evaluate_retrieval(
        args.query_dir,
        args.reference_dir,
        ties=args.ties,
        progress=not args.quiet,
        allow_model_mismatch=args.allow_model_mismatch,
    )
    if args.ranks:
        write_text_atomic(
            args.ranks, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.records)
        )
    if args.json:
        write_json_atomic(args.json, result.summary())
    if args.plot:
        from clamp3.evaluate.plots import plot_retrieval

        plot_retrieval(result, args.plot, title=f"{args.query_dir} -> {args.reference_dir}")
    print(f"{result.n_queries} queries, {result.n_references} references, ties: {result.ties}")
    print(f"{'metric':<8} {'value':>7}")
    for name, value in result.metrics.items():
        print(f"{name:<8} {value:>7.4f}")
    return 0
