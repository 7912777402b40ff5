"""Atomic output: a file is either absent or complete, never truncated.

Every stage that writes results (conversions, embeddings, indexes, checkpoints) writes to a
temporary file in the destination directory and renames it into place, so a killed run
leaves no partial output and a rerun can trust every file it finds.

The readers every stage shares live here too: JSON lines (``read_jsonl``), CSV rows with their
line numbers (``csv_rows``) and the decoding of the text files people write (``read_text``).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from clamp3.utils.errors import InputError

# Lone surrogates: what ``os.fsdecode`` (and so ``os.walk``, ``Path``) makes of file-name bytes that
# are not valid UTF-8 (``b"caf\xe9.mid"`` -> ``"caf\udce9.mid"``).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# mkstemp creates files readable by the owner only; outputs should get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in blocks (embedding manifests, tokenizer sidecars)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it to ``path``.

    A ``path`` that is an existing folder raises ``IsADirectoryError`` naming it, before anything
    is written (the rename would fail only after the work, with the temporary's name).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the file asked for, not the temporary's random name
        raise type(exc)(exc.errno, f"cannot write here ({exc.strerror})", str(target)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def remove_stale_temporaries(top: str | os.PathLike, suffixes: tuple[str, ...], older_than: float) -> int:
    """Delete temporaries that a killed writer left under ``top``: files named as
    :func:`atomic_path` names them, for targets ending in one of ``suffixes`` (e.g. ``".npy"``),
    last modified before ``older_than`` (a ``time.time()``; files of writers running now are
    newer and are left alone). Returns how many were removed."""
    removed = 0
    if not Path(top).is_dir():
        return 0
    for root, _, files in os.walk(top):  # not utils.walk: the temporaries are hidden files
        for name in files:
            if not (name.startswith(".") and name.endswith(".tmp")):
                continue
            target = name[1:].rsplit(".", 2)[0]  # ".<target>.<random>.tmp" -> "<target>"
            path = Path(root) / name
            if target.endswith(suffixes) and path.stat().st_mtime < older_than:
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_text(data: Any, indent: int | None = None) -> str:
    """``json.dumps`` that can always be written as UTF-8, whatever file names ``data`` holds.

    Non-ASCII text stays readable (``ensure_ascii=False``), but lone surrogates, which UTF-8
    cannot encode, are written as ``\\udcXX`` escapes: ``json.loads`` turns them back into the
    same string, so a path read back from a log equals the ``str`` path it was written from
    (and ``os.fsencode`` gives the original bytes).
    """
    text = json.dumps(data, indent=indent, ensure_ascii=False)
    # Surrogates only occur inside JSON strings, where a \uXXXX escape means the same character.
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json_text(data, indent=2) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it to disk (logs and manifests that survive a kill).

    A line is written with a single ``write`` call in append mode, under an exclusive advisory
    lock (``flock``, where the platform has it) that every writer through this function takes.
    A kill can at worst leave a final line without its newline, which :func:`read_jsonl`
    skips; the next append cuts such a remnant off before writing. (Writing after it would put
    a broken line in the middle of the file, which :func:`read_jsonl` must refuse: the file
    would stay unreadable.) Any path can be recorded, including file names that are not valid
    UTF-8 (see :func:`json_text`).
    """
    line = (json_text(record) + "\n").encode("utf-8")
    with open(path, "ab") as handle, _locked(handle):
        end = handle.seek(0, os.SEEK_END)
        if end > 0 and _last_byte(path) != b"\n":
            handle.truncate(_after_last_newline(path))
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def _locked(handle: Any) -> Iterator[None]:
    """An exclusive ``flock`` on ``handle`` for the block (no lock where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: appends are not serialised there
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _last_byte(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _after_last_newline(path: str | os.PathLike, block: int = 1 << 16) -> int:
    """The offset just after the file's last ``\n`` (0 when it has none), read from the end."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            found = handle.read(end - start).rfind(b"\n")
            if found >= 0:
                return start + found + 1
            end = start
    return 0


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, in file order (``[]`` for a missing file).

    A last line without its newline that does not parse is what a killed :func:`append_jsonl`
    leaves: it is ignored. Any other line that is not a JSON object (or not UTF-8) raises
    ``InputError`` naming the file and the line number: the file is damaged, and skipping the
    line would silently drop a record. Blank lines are skipped. Lines end at ``\\n`` only
    (``str.splitlines`` would also split inside strings holding U+2028 or other separators).
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if number == len(lines):  # no newline after it: an interrupted append
                break
            raise InputError(p, f"line {number}: not valid JSON ({exc})") from exc
        if not isinstance(record, dict):
            raise InputError(p, f"line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def jsonl_objects(
    path: str | os.PathLike, lines: Iterable[str]
) -> tuple[list[tuple[int, dict]], list[InputError]]:
    """The lenient reading of a user's JSONL input (catalogues, document dumps), where one bad
    line should be reported and skipped, not stop the run (unlike :func:`read_jsonl`).

    Returns ``(line number, object)`` per line that holds a JSON object (1-based; blank lines
    skipped) and one ``InputError("<path>:line N", reason)`` per other line.
    """
    rows: list[tuple[int, dict]] = []
    errors: list[InputError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(InputError(f"{path}:line {number}", f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(row, dict):
            errors.append(InputError(f"{path}:line {number}", "not a JSON object"))
            continue
        rows.append((number, row))
    return rows, errors


_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def read_text(path: str | os.PathLike) -> str:
    """The text of a file a person wrote or exported: an input, a label list, a catalogue, a
    prompt file. UTF-8 with a leading byte-order mark dropped (Windows editors and Excel's "CSV
    UTF-8" write one), or UTF-16 with a mark (Windows PowerShell's ``>``, "Unicode text"
    exports); ``\\r\\n`` and ``\\r`` become ``\\n``, as Python's text mode reads.

    ``InputError(path, reason)`` when the file cannot be read, holds a NUL byte (binary data
    under a text name) or is not valid UTF-8 (UTF-16), naming the byte offset."""
    return decode_text(read_bytes(path), path)


def read_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``; ``InputError(path, "cannot read file: ...")`` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc


def decode_text(raw: bytes, path: str | os.PathLike) -> str:
    """:func:`read_text` of bytes already read from ``path`` (named in the errors)."""
    encoding = "utf-16" if raw.startswith(_UTF16_MARKS) else "utf-8-sig"
    nul = raw.find(b"\0") if encoding == "utf-8-sig" else -1
    if nul >= 0:
        raise InputError(path, f"binary data, not text (a NUL byte at offset {nul})")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise InputError(path, f"not {name} text ({exc.reason} at offset {exc.start})") from exc
    if "\0" in text:  # UTF-16 text holds none; UTF-32 (FF FE 00 00) or binary data after FF FE does
        raise InputError(path, f"binary data, not text (a NUL character at character {text.index(chr(0))})")
    return text.replace("\r\n", "\n").replace("\r", "\n")


CSV_DELIMITERS = (",", ";", "\t")


def header_delimiter(text: str) -> str:
    """The delimiter of CSV ``text`` whose first non-blank line is a header: of ``,``, ``;`` and
    tab, the one that line holds most often outside quotes (a comma on a tie or when it holds
    none). Spreadsheets in locales with a decimal comma save ``;``; a header-less file (a label
    list) has no line to tell by and stays comma-separated."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    unquoted = re.sub(r'"[^"]*"', "", first)
    best = max(CSV_DELIMITERS, key=unquoted.count)  # the first of equals: the comma
    return best if unquoted.count(best) else ","


def csv_rows(text: str, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """The rows of CSV ``text``, each with the line it starts on (blank rows come as ``[]``).

    A quoted cell may span lines and keeps its line breaks. ``csv.reader`` fed
    ``text.splitlines()`` drops them (``"two\nlines"`` became ``"twolines"``), and numbering
    rows by position shifts every line number after such a cell.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1
