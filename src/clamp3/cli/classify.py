"""``clamp3 probe train|predict``, ``clamp3 zero-shot`` and ``clamp3 gen-score``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clamp3.cli.args import (
    add_captioner_argument,
    add_model_arguments,
    add_model_mismatch_flag,
    add_quiet_flag,
    failures_status,
    non_negative_float,
    non_negative_int,
    pipeline_of,
    positive_float,
    positive_int,
    require_existing,
    settings_from,
)
from clamp3.utils.errors import InputError, UsageError


def _output_file(text: str) -> str:
    """argparse type: an output file whose missing folders are at most its own (see ``check_output_file``)."""
    from clamp3.evaluate.items import check_output_file

    try:
        check_output_file(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _output_dir(text: str) -> str:
    """argparse type: an output folder that may be created, inside an existing folder."""
    _output_file(str(Path(text) / "probe.json"))
    return text


def _add_label_source(p: argparse.ArgumentParser, flag: str, required: bool, what: str) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument(
        flag, dest="labels_csv", default=None, metavar="CSV", help=f"{what}: CSV path,label[,label...]"
    )
    group.add_argument(
        "--labels-from-folders",
        action="store_true",
        help=f"{what}: the first folder of each path (DIR/<label>/...)",
    )


def _add_known_labels(p: argparse.ArgumentParser) -> None:
    """--truth / --labels-from-folders (optional: for metrics) and --plot, which needs them
    (:func:`clamp3.evaluate.runs.check_plot`)."""
    _add_label_source(p, "--truth", False, "known labels for metrics")
    p.add_argument("--plot", default=None, metavar="PNG", help="confusion matrix (needs known labels)")


def register(sub: argparse._SubParsersAction) -> None:
    _register_probe(sub)
    _register_zero_shot(sub)
    _register_gen_score(sub)


def _register_probe(sub: argparse._SubParsersAction) -> None:
    probe = sub.add_parser("probe", help="linear probe on frozen embeddings: train, predict")
    probe_sub = probe.add_subparsers(dest="probe_command", metavar="ACTION", required=True)

    p = probe_sub.add_parser(
        "train",
        help="train a linear classifier on an embedding folder",
        description="Standardises features, balances classes, trains mini-batches with early stopping on a "
        "stratified validation split, and writes OUT_PROBE/probe.json, probe.safetensors, confusion.png. "
        "Items the --labels CSV does not name are left out (counted in a warning); every embedding must be "
        "readable.",
    )
    p.add_argument("emb_dir", help="embedding folder from 'clamp3 embed'")
    p.add_argument("out_probe", type=_output_dir, help="output probe directory")
    _add_label_source(p, "--labels", True, "labels")
    p.add_argument("--multi-label", action="store_true", help="tagging: several labels per item (BCE, mAP)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction (0: none; default 0.2)")
    p.add_argument(
        "--balance", choices=("weight", "sample", "none"), default="weight", help="class balancing"
    )
    p.add_argument(
        "--epochs",
        dest="max_epochs",
        type=positive_int,
        default=200,
        help="maximum epochs (default 200)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        default=15,
        help="early-stopping patience in epochs (default 15)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--weight-decay", type=non_negative_float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tune-thresholds", action="store_true", help="multi-label: F1-optimal threshold per label"
    )
    add_quiet_flag(p)
    p.set_defaults(handler=_probe_train)

    p = probe_sub.add_parser(
        "predict",
        help="apply a saved probe to an embedding folder",
        description="An embedding that cannot be read is reported (error: FILE: REASON) and left out. Exit "
        "status: 0 all predicted, 1 some embeddings failed, 2 bad usage or input.",
    )
    p.add_argument("probe_dir", help="directory written by 'clamp3 probe train'")
    p.add_argument("emb_dir", help="embedding folder from 'clamp3 embed'")
    p.add_argument("output", type=_output_file, help="predictions JSON")
    p.add_argument("--top-k", type=positive_int, default=3, help="labels listed per item (single-label)")
    _add_known_labels(p)
    add_model_mismatch_flag(p)
    add_quiet_flag(p)
    p.set_defaults(handler=_probe_predict)


def _register_zero_shot(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zero-shot",
        help="classify files against label prompts in any language",
        description="Each label becomes one prompt per --template ('{label}' is replaced); a label's vector "
        "is the renormalised mean of its normalised prompt embeddings; items get cosine scores. A file "
        "that cannot be read is reported (error: FILE: REASON) and left out. Exit status: 0 all classified, "
        "1 some files failed, 2 bad usage or input.",
    )
    p.add_argument("inputs", nargs="+", help="files or folders (or embedding folders with --embeddings)")
    add_model_arguments(p)
    add_captioner_argument(p)
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", default=None, help='comma-separated, e.g. "jazz,classical,rock"')
    labels.add_argument("--labels-file", default=None, help="one label per line (UTF-8)")
    p.add_argument(
        "--template", action="append", default=None, help='repeatable, e.g. "a piece of {label} music"'
    )
    p.add_argument("--templates-file", default=None, help="one template per line")
    p.add_argument("--top-k", type=positive_int, default=3)
    _add_known_labels(p)
    p.add_argument(
        "--embeddings", action="store_true", help="inputs are embedding folders from 'clamp3 embed'"
    )
    add_model_mismatch_flag(p)
    p.add_argument(
        "--json", type=_output_file, default=None, metavar="OUT", help="write predictions and metrics here"
    )
    p.add_argument("--batch-size", type=positive_int, default=32)
    add_quiet_flag(p)
    p.set_defaults(handler=_zero_shot)


def _register_gen_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gen-score",
        help="score generated music: CLaMP 3 score vs prompts, Fréchet distance vs a reference set",
        description="Prints the CLaMP 3 score and/or the Fréchet distance as JSON. A piece that cannot be "
        "read is reported (error: FILE: REASON) and left out of both. Exit status: 0 all scored, 1 some "
        "files failed, 2 bad usage or input.",
    )
    p.add_argument("--prompts", default=None, help="JSONL {id, prompt} or CSV id,prompt")
    p.add_argument("--generated", required=True, help="folder of generated pieces (audio or symbolic)")
    p.add_argument("--reference", default=None, help="folder of reference pieces for the Fréchet distance")
    add_model_arguments(p)
    p.add_argument("--embeddings", action="store_true", help="--generated/--reference are embedding folders")
    p.add_argument(
        "--modality",
        choices=("symbolic", "audio"),
        default=None,
        help="score only pieces of this modality (default: the one the folder holds; a mix is refused)",
    )
    add_model_mismatch_flag(p)
    p.add_argument(
        "--bootstrap",
        dest="n_bootstrap",
        type=non_negative_int,
        default=1000,
        help="resamples for the score's CI (default 1000)",
    )
    p.add_argument(
        "--fd-bootstrap",
        type=non_negative_int,
        default=100,
        help="resamples for the Fréchet CI (default 100)",
    )
    p.add_argument(
        "--fd-normalize",
        dest="normalize_fd",
        action="store_true",
        help="L2-normalise embeddings before the Fréchet distance",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--json", type=_output_file, default=None, metavar="OUT")
    add_quiet_flag(p)
    p.set_defaults(handler=_gen_score)


def _probe_train(args: argparse.Namespace) -> int:
    from clamp3.evaluate.probe_train import ProbeSettings
    from clamp3.evaluate.runs import run_probe_train

    settings = settings_from(ProbeSettings, args)
    info = run_probe_train(
        args.emb_dir,
        args.out_probe,
        args.labels_csv,
        args.labels_from_folders,
        settings,
        not args.quiet,
    )
    split = "val" if "val" in info["metrics"] else "train"
    metrics = info["metrics"][split]
    keys = ("micro_f1", "macro_f1", "mAP") if settings.multi_label else ("accuracy", "macro_f1")
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)
    print(
        f"wrote {args.out_probe} ({info['data']['n_train']} train / {info['data']['n_val']} val); {split}: {shown}"
    )
    return 0


def _probe_predict(args: argparse.Namespace) -> int:
    from clamp3.evaluate.runs import run_probe_predict

    result = run_probe_predict(
        args.probe_dir,
        args.emb_dir,
        args.output,
        args.top_k,
        args.labels_csv,
        args.labels_from_folders,
        args.plot,
        not args.quiet,
        allow_model_mismatch=args.allow_model_mismatch,
    )
    print(f"wrote {args.output} ({len(result['predictions'])} predictions)")
    _print_metrics(result.get("metrics"))
    return failures_status(len(result["failed"]), "embeddings could not be read and are not predicted")


def _zero_shot(args: argparse.Namespace) -> int:
    from clamp3.evaluate.labels import read_lines
    from clamp3.evaluate.runs import check_plot, run_zero_shot
    from clamp3.evaluate.zeroshot import build_prompts

    check_plot(args.plot, args.labels_csv, args.labels_from_folders)  # before the model loads
    labels = read_lines(args.labels_file, "labels") if args.labels_file else args.labels.split(",")
    templates = list(args.template or [])
    if args.templates_file:
        templates += read_lines(args.templates_file, "templates")
    templates = templates or ["{label}"]
    build_prompts(labels, templates)  # bad labels or templates fail before the model loads
    require_existing(*args.inputs, args.labels_csv)
    result = run_zero_shot(
        args.inputs,
        pipeline_of(args),
        labels,
        templates,
        top_k=args.top_k,
        truth_csv=args.labels_csv,
        truth_from_folders=args.labels_from_folders,
        embeddings=args.embeddings,
        json_out=args.json,
        plot=args.plot,
        batch_size=args.batch_size,
        show_progress=not args.quiet,
        allow_model_mismatch=args.allow_model_mismatch,
    )
    if args.json is None:
        for record in result["predictions"]:
            top = "  ".join(f"{t['label']} {t['score']:.4f}" for t in record["top"])
            print(f"{record['path']}\t{top}")
    else:
        print(f"wrote {args.json} ({len(result['predictions'])} predictions)")
    _print_metrics(result.get("metrics"))
    return failures_status(len(result["failed"]), "files could not be read and are not classified")


def _gen_score(args: argparse.Namespace) -> int:
    from clamp3.evaluate.genscore import GenScoreSettings, run_gen_score

    if args.prompts is None and args.reference is None:
        raise UsageError("give --prompts, --reference or both")
    needs_model = args.prompts is not None or not args.embeddings
    require_existing(args.generated, args.prompts, args.reference)  # before the model loads
    settings = settings_from(GenScoreSettings, args)
    result = run_gen_score(
        args.generated,
        pipeline_of(args) if needs_model else None,
        prompts_file=args.prompts,
        reference=args.reference,
        embeddings=args.embeddings,
        settings=settings,
        allow_model_mismatch=args.allow_model_mismatch,
        json_out=args.json,
        show_progress=not args.quiet,
    )
    summary = {k: v for k, v in result.items() if k in ("clamp3_score", "frechet")}
    if "clamp3_score" in summary:
        score = dict(summary["clamp3_score"])
        score["unmatched_files"] = len(score["unmatched_files"])
        score["prompts_without_files"] = len(score["prompts_without_files"])
        summary["clamp3_score"] = score
    if "frechet" in summary:
        summary["frechet"] = {**summary["frechet"], "failed_files": len(summary["frechet"]["failed_files"])}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    failed = len(result["failed_files"]) + len(result.get("frechet", {}).get("failed_files", []))
    return failures_status(failed, "files could not be read and are not scored")


def _print_metrics(metrics: dict | None) -> None:
    if not metrics:
        return
    keys = ("accuracy", "macro_f1", "top3_accuracy", "top5_accuracy", "micro_f1", "mAP")
    print("  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics) + f"  (n={metrics['n']})")
