"""Entry point of the ``clamp3`` command: collects the sub-commands of every CLI module, lists
them by stage of the data flow, and is the one place that turns errors into exit statuses.

Exit statuses (every sub-command): 0 done; 1 some inputs failed (each named on stderr and in
the command's ``errors.jsonl``); 2 bad usage, input or setup, printed as one ``error: ...`` line
(the traceback with ``-v``); 130 interrupted (Ctrl-C); 141 stdout closed by its reader
(``| head``). A command may add its own statuses
(``curate``: 3 incomplete, 4 unusable endpoint). What counts as bad input or setup, decided
here once for every command:

- ``ValueError`` and its subclasses: :class:`~clamp3.utils.errors.InputError` (a file and the
  reason), :class:`~clamp3.utils.errors.UsageError` (arguments that cannot work together),
  :class:`~clamp3.utils.errors.CheckpointError`, the corpus's ``ConfigError``, and a library
  function refusing a value it was given (the values all come from the command line);
- a path that is missing, a file where a folder is needed, or not writable
  (``FileNotFoundError``, ``FileExistsError``, ``NotADirectoryError``, ``PermissionError``);
- a missing optional dependency (``ImportError``: its message says which extra to install);
- any exception whose class sets ``exit_status`` (then that status).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from clamp3.utils.reasons import printable

# One module per stage of the data flow; each defines ``register(subparsers)`` for the commands
# listed with it (hidden aliases included). ``clamp3 COMMAND ...`` imports only COMMAND's module:
# importing all of them cost a cold ``clamp3 search`` ~0.1 s (demo, serve, preprocess, ...).
COMMAND_MODULES = {
    "clamp3.cli.model": ("convert-checkpoint", "presets", "train-presets"),
    "clamp3.cli.onnx": ("export-onnx",),
    "clamp3.cli.convert": ("convert",),  # MusicXML/MIDI tree -> ABC/MTF, reverse conversions
    "clamp3.cli.audio": ("extract-audio",),  # MERT features
    "clamp3.cli.embed": ("embed",),
    "clamp3.cli.index": ("index", "index-remove", "search", "score", "eval"),
    "clamp3.cli.train": ("train", "pretrain-m3"),
    "clamp3.cli.corpus": ("build-corpus",),
    "clamp3.cli.demo": ("demo",),
    "clamp3.cli.benchmark": ("benchmark",),  # the paper's data sets, the demo corpus
    "clamp3.cli.serve": ("serve",),
    "clamp3.cli.curate": ("curate",),
    "clamp3.cli.classify": ("probe", "zero-shot", "gen-score"),
}

# How `clamp3 --help` lists the commands. A registered name missing here is a hidden alias
# kept for old scripts (README "Changed").
STAGES = [
    ("prepare", ["convert-checkpoint", "export-onnx", "presets", "convert", "extract-audio"]),
    ("embed", ["embed"]),
    ("index & search", ["index", "index-remove", "search", "score"]),
    ("evaluate", ["eval", "probe", "zero-shot", "gen-score", "benchmark"]),
    ("train", ["train"]),
    ("serve", ["serve"]),
    ("demo & data", ["build-corpus", "demo", "curate"]),
]

USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ImportError,
)


class _Commands:
    """Stands in for argparse's sub-parser action while modules register: argparse would list
    every command in one flat block, so the one-line helps are kept for :data:`STAGES`."""

    def __init__(self, sub: argparse._SubParsersAction):
        self._sub = sub
        self.helps: dict[str, str] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        help_text = kwargs.pop("help", None)
        if help_text:
            self.helps[name] = help_text
            kwargs.setdefault("description", help_text)
        return self._sub.add_parser(name, **kwargs)


def _grouped(helps: dict[str, str]) -> str:
    width = max(len(name) for names in dict(STAGES).values() for name in names) + 2
    lines = ["commands, by stage of the data flow:"]
    for stage, names in STAGES:
        lines.append(f"  {stage}")
        lines.extend(f"    {name:<{width}}{helps.get(name, '')}" for name in names)
    lines.append("\n`clamp3 COMMAND --help` for a command's arguments.")
    return "\n".join(lines)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``clamp3`` parser; with ``command`` (a name of :data:`COMMAND_MODULES`) only that
    command's module registers, else (``--help``, a typo, ``None``) every module does."""
    modules = [m for m, names in COMMAND_MODULES.items() if command in names] or list(COMMAND_MODULES)
    parser = argparse.ArgumentParser(
        prog="clamp3",
        description="CLaMP 3: embed, index, search, evaluate and train on sheet music, MIDI, audio and text.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    parser.add_argument("--version", action=_PrintVersions, help="versions, for a bug report")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", help="one of the commands below")
    commands = _Commands(sub)
    for name in modules:
        importlib.import_module(name).register(commands)
    parser.epilog = _grouped(commands.helps)
    return parser


class _PrintVersions(argparse.Action):
    """``--version``: reads the versions only when asked (argparse's own action wants the text
    up front, ~25 ms of metadata look-ups on every command)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(_versions())
        parser.exit()


def _versions() -> str:
    """``clamp3 X (Python Y; torch Z, transformers ...)``: the packages a bug report needs, read
    from their metadata (nothing is imported)."""
    from importlib import metadata

    from clamp3 import __version__

    found = []
    for name in ("torch", "transformers", "onnxruntime", "faiss-cpu", "pymilvus"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name} {metadata.version(name)}")
    python = ".".join(map(str, sys.version_info[:3]))
    return f"clamp3 {__version__} (Python {python}; {', '.join(found)})"


def main(argv: list[str] | None = None) -> int:
    """Run the sub-command ``argv`` names; returns the exit status (module docstring)."""
    try:
        status = _run(argv)
        sys.stdout.flush()  # output still buffered meets a reader that went away here, not at exit
        return status
    except KeyboardInterrupt:
        # Ctrl-C is a request, not a crash: one line instead of a traceback. 130 = 128 + SIGINT,
        # what shells report for a command stopped by Ctrl-C. Sub-commands that can say what they
        # finished (convert) print it before re-raising.
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`clamp3 search ... | head -3`): stop quietly, as Unix
        # tools do, instead of a traceback; stdout goes to /dev/null so that the interpreter's
        # last flush at exit does not raise again. 141 = 128 + SIGPIPE. Any other broken pipe
        # (a worker's) is a bug and keeps its traceback.
        if not _stdout_is_closed():
            raise
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _stdout_is_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on it). Where
    that cannot be asked (no ``select.poll``, a stdout without a file descriptor), a broken pipe
    is taken to be stdout's."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last
        return True
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _command_name(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names: its first word that is not an option (the top-level
    parser's only option, ``-v``, takes no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def _run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(_command_name(argv))
    args = parser.parse_args(argv)
    # Third-party loggers (FAISS's loader prints 8 INFO lines on import) stay at WARNING;
    # clamp3's own INFO notes (e.g. index calibration) are kept; -v shows everything.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("clamp3").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    shown, warnings.showwarning = warnings.showwarning, _package_warnings_as_log_lines(warnings.showwarning)
    try:
        return int(args.handler(args) or 0)
    except Exception as exc:
        status = exit_status(exc)
        if status is None or args.verbose:
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
            print(printable(f"error: {_message(exc)}"), file=sys.stderr)
        return status
    finally:
        warnings.showwarning = shown


_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _package_warnings_as_log_lines(default):
    """A ``warnings.showwarning`` that prints a warning clamp3's own code raises (a library
    caller can filter or record it) as a log line of the module that raised it, like every other
    warning a command prints; Python's default form adds the file, line and source line, which
    on a command line look like a crash. Other packages' warnings keep ``default``."""

    def show(message, category, filename, lineno, file=None, line=None):
        path = Path(filename).resolve()
        if not path.is_relative_to(_PACKAGE_DIR):
            return default(message, category, filename, lineno, file, line)
        module = ".".join(("clamp3", *path.relative_to(_PACKAGE_DIR).with_suffix("").parts))
        logging.getLogger(module).warning("%s", message)

    return show


def _message(exc: BaseException) -> str:
    """The error line's text: an OS error as ``<path>: <reason>`` (Python's own form,
    ``[Errno 17] File exists: 'out'``, puts the path last and the errno first)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        if isinstance(exc, NotADirectoryError):  # ``OUT/pieces: Not a directory``: name the file in the way
            blocker = next((p for p in Path(exc.filename).parents if p.is_file()), None)
            if blocker is not None:
                return f"{blocker}: is a file, not a folder"
        reason = "exists and is not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        return f"{exc.filename}: {reason}"
    return str(exc)


def exit_status(exc: BaseException) -> int | None:
    """The exit status for ``exc`` when it is bad input or setup (module docstring), else None
    (a bug: the traceback is shown)."""
    status = getattr(type(exc), "exit_status", None)
    if isinstance(status, int):
        return status
    return 2 if isinstance(exc, USER_ERRORS) else None


if __name__ == "__main__":
    sys.exit(main())
