"""One-line reasons for error logs (``errors.jsonl``) and messages, and text safe to print."""

from __future__ import annotations


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
