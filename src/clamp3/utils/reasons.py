"""One-line reasons for error logs (``errors.jsonl``) and messages, and text safe to print."""

from __future__ import annotations

import os
from pathlib import Path

from clamp3.utils.errors import InputError


def describe_exception(exc: BaseException) -> str:
    """``"<Type>: <message>"``, readable even when the message is empty.

    Parsers raise a bare ``EOFError()`` when a file stops in the middle of a structure (mido
    does for truncated MIDI files), which would otherwise read ``"EOFError: "``; other empty
    messages give the type name alone.
    """
    message = str(exc).strip()
    if not message and isinstance(exc, EOFError):
        message = "the file ends early"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def printable(text: str) -> str:
    """``text`` with lone surrogates (file-name bytes that are not UTF-8, as ``os.fsdecode``
    keeps them) written as ``\\udcXX``, so that it can go to any UTF-8 stream: ``sys.stderr``
    escapes them itself, but a redirected or captured stream may be strict and raise."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def audio_decode_error(path: str | os.PathLike, exc: Exception) -> InputError:
    """``InputError(path, "cannot decode audio (<reason>)")`` from a decoder's exception, for
    every reader of audio (``clamp3.audio``, the service's checks; torch-free, as the service
    with an ONNX export is). The reason drops the ``Error opening '<path>': `` libsndfile puts
    first (the error names the file already) and replaces its "File does not exist or is not a
    regular file", which it also says of an existing file whose content it cannot read (an MP3
    with a garbled tag, say)."""
    reason = str(exc).replace(f"Error opening {str(path)!r}: ", "")
    if "does not exist or is not a regular file" in reason and Path(path).is_file():
        kind = Path(path).suffix.lstrip(".").upper() or "audio"
        reason = f"its content is not {kind} that libsndfile can read"
    if not type(exc).__module__.startswith("soundfile"):  # a decoder bug: its type says more
        reason = f"{type(exc).__name__}: {reason}"
    return InputError(path, f"cannot decode audio ({reason})")
