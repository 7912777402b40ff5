"""``clamp3 serve INDEX_DIR --media-root DIR``: the search service and web page (``clamp3.serve``)."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from clamp3.cli.args import (
    add_captioner_argument,
    add_model_arguments,
    add_model_mismatch_flag,
    add_quiet_flag,
    add_timeout_argument,
    pipeline_of,
    positive_float,
    positive_int,
    timeout_of,
)
from clamp3.serve.content import MAX_AUDIO_SECONDS  # numpy only: no web stack for --help
from clamp3.serve.settings import MAX_IMAGE_PIXELS
from clamp3.utils.errors import UsageError

ADMIN_TOKEN_ENV = "CLAMP3_ADMIN_TOKEN"


def tcp_port(text: str) -> int:
    """argparse type: a TCP port, 1-65535 (uvicorn would fail later with a traceback)."""
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {port}")
    return port


def check_port_free(host: str, port: int) -> None:
    """Refuse, before a model is loaded, an address this process cannot listen on (a port in
    use, a privileged port, a host that is not this machine's): uvicorn only finds out after
    startup and exits 3 with a log line. ``UsageError`` naming ``host:port`` and the reason."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as err:
        reason = err.strerror or str(err)
        raise UsageError(
            f"cannot serve on {host}:{port}: {reason}; choose another --port or --host"
        ) from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an index over HTTP: JSON API + a search page (text, uploaded file, more like this)",
        description=(
            "Serves INDEX_DIR (built by `clamp3 index`) on http://HOST:PORT/ with a search page and a JSON API "
            "(schema at /openapi.json). MEDIA_ROOT is the folder that was embedded: index paths are relative to it, "
            "and only indexed files below it are ever served. The admin endpoint /api/admin/reload (re-read "
            "INDEX_DIR after `clamp3 index --append`, `--sync` or `index-remove`) is enabled when the environment "
            f"variable {ADMIN_TOKEN_ENV} holds a token."
        ),
    )
    p.add_argument("index_dir", metavar="INDEX_DIR")
    p.add_argument("--media-root", required=True, metavar="DIR", help="the folder that was embedded")
    add_model_arguments(p, default=None)
    p.add_argument("--no-model", action="store_true", help="serve without a model (only 'more like this')")
    add_model_mismatch_flag(p, "the index was embedded by another model than --model")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=tcp_port, default=8000, help="TCP port, 1-65535 (default 8000)")
    p.add_argument(
        "--max-upload-mb", type=positive_float, default=50.0, help="largest query upload (default 50)"
    )
    p.add_argument(
        "--max-audio-seconds",
        type=positive_float,
        default=MAX_AUDIO_SECONDS,
        help=f"longest uploaded recording, read from its header before decoding (default "
        f"{MAX_AUDIO_SECONDS:.0f}: 126 five-second windows, one segment of the audio tower)",
    )
    add_captioner_argument(p)
    p.add_argument(
        "--max-image-megapixels",
        type=positive_float,
        default=MAX_IMAGE_PIXELS / 1e6,
        help="largest uploaded image, width x height in millions of pixels, read from its header before "
        f"decoding (default {MAX_IMAGE_PIXELS / 1e6:g}: a 600-dpi scan of an A4 page is ~35)",
    )
    add_timeout_argument(
        p,
        60.0,
        "converting an uploaded score or MIDI file (in a process of its own)",
        zero="no limit, converted in the request's thread",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for query encoding, torch's or (an ONNX export) ONNX Runtime's (default: their "
        "choice; 1 is best on a shared or busy machine)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="extra Host name to answer (repeatable); default: localhost names and --host",
    )
    add_quiet_flag(p, "log warnings and errors only (no startup and request lines)")
    p.set_defaults(handler=_serve)


def _allowed_hosts(args: argparse.Namespace) -> frozenset[str] | None:
    from clamp3.serve.settings import LOCAL_HOSTS

    extra = set(args.allowed_host or ())
    if args.host in ("0.0.0.0", "::") and not extra:
        return None  # listening everywhere without named hosts: any Host header is expected
    return frozenset(LOCAL_HOSTS | {args.host} | extra)


def _one_faiss_thread_per_search() -> None:
    """Requests already search in parallel threads; FAISS's own OpenMP threads on top of them
    oversubscribe the cores (measured: 25 ms -> 78 ms per 100k x 768 query on 2 busy cores)."""
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass


def _use_threads(pipeline, threads: int) -> None:
    """``--threads`` for query encoding: the ONNX Runtime sessions of an export (they open
    later, when the app is built; torch is not imported for an export) or torch's pool."""
    from clamp3.onnx.runtime import OnnxModel

    if isinstance(pipeline.model, OnnxModel):
        pipeline.model.threads = threads
        return
    import torch

    torch.set_num_threads(threads)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from clamp3.serve.logs import use_json_logging
        from clamp3.serve.service import build_app
        from clamp3.serve.settings import Settings
    except ImportError as exc:
        raise ImportError(
            f"clamp3 serve needs the serve extra ({exc.name}): pip install 'clamp3[serve]'"
        ) from exc
    from clamp3.index import SearchIndex

    check_port_free(args.host, args.port)
    settings = Settings(
        max_upload_bytes=max(1, int(args.max_upload_mb * 2**20)),
        max_audio_seconds=args.max_audio_seconds,
        max_image_pixels=max(1, int(args.max_image_megapixels * 1e6)),
        admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
        allowed_hosts=_allowed_hosts(args),
        conversion_timeout=timeout_of(args),
        allow_model_mismatch=args.allow_model_mismatch,
    )
    model = None
    if not args.no_model:
        model = pipeline_of(args, index=SearchIndex.load(args.index_dir))
        if args.threads:
            _use_threads(model, args.threads)
    app = build_app(args.index_dir, args.media_root, model, settings)
    quiet = logging.WARNING if args.quiet else logging.INFO
    use_json_logging(logging.DEBUG if getattr(args, "verbose", False) else quiet)
    _one_faiss_thread_per_search()
    # One process: the model and the index live in memory once, and admin swaps reach every request.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_config=None, timeout_keep_alive=15)
    return 0
