"""Sheet music: MusicXML -> standard ABC -> interleaved ABC, and ABC -> MusicXML.

The official pipeline (implementation notes §3.1) runs Wim Vree's ``xml2abc.py`` (version 143,
vendored by the official repository and shipped unchanged in ``abctoolkit`` 0.0.4) as one
subprocess per file with ``-d 8 -x`` and keeps its standard output; then it interleaves the
voices with ``abctoolkit`` 0.0.4 functions. Here the same converter runs in-process: the
script's ``__main__`` block is replaced by :func:`musicxml_to_abc`, which builds the same
options object, opens the file as the script does (first non-``META`` ``*.xml`` member of an
``.mxl`` zip) and sets the one piece of module state the script relies on (the global
``abcOut`` writer). Everything else in ``xml2abc`` is created per call, so repeated calls give
identical output; a lock serialises calls inside one process (worker processes each have
their own copy of the module).

``abctoolkit`` is pinned to 0.0.4: 0.0.6 added barlines (``"||:"``, ``":||"``, ...) to the list
the interleaving uses, which changes its output.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import optparse
import os
import re
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from clamp3.inputs import extensions
from clamp3.utils.errors import InputError

logger = logging.getLogger(__name__)

MUSICXML_EXTENSIONS = extensions(kinds=("musicxml",))

# Lines dropped before interleaving (official ``batch_interleaved_abc.py``).
_DROPPED_FIELDS = ["X:", "T:", "C:", "W:", "w:", "Z:", "%%MIDI"]
_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_ABC_INCLUDE = re.compile(r"^(%%abc-include|I:abc-include).*$", re.MULTILINE)

_LOCK = threading.RLock()  # xml2abc / abc2xml keep module-level state; one call at a time


def _xml2abc_options() -> optparse.Values:
    """The option values ``xml2abc.py -d 8 -x`` parses to (defaults of its option parser)."""
    return optparse.Values(
        {
            "u": None, "m": 0, "c": 0, "d": 8, "n": 0, "b": 0, "o": "", "v": 0, "x": True,
            "p": [], "j": None, "t": None, "s": None, "v1": None, "ped": True, "stm": False,
            "i": None,
        }
    )  # fmt: skip


# A compressed score is inflated in memory (and parsed into a tree several times its size), so a
# few hundred KB of .mxl could otherwise claim gigabytes: one 306 KB file held 300 MB of XML. The
# largest real scores measured unpack to about 1 MB (ratios up to ~36x), so 64 MB is generous.
MAX_UNPACKED_BYTES = 64 * 2**20
_unpack_cap: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "clamp3_mxl_unpack_cap", default=None
)


@contextlib.contextmanager
def unpacked_size_limit(max_bytes: int) -> Iterator[None]:
    """Inside the block (this thread or task only), a ``.mxl`` member read by
    :func:`musicxml_to_abc` may unpack to at most ``max_bytes`` bytes instead of
    :data:`MAX_UNPACKED_BYTES`; a service sets it from its upload limit."""
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    token = _unpack_cap.set(max_bytes)
    try:
        yield
    finally:
        _unpack_cap.reset(token)


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """The bytes of member ``name`` (``KeyError`` when absent), refused with ``InputError``
    when its declared or its actually inflated size passes the unpack cap."""
    cap = _unpack_cap.get()
    limit = MAX_UNPACKED_BYTES if cap is None else cap
    info = archive.getinfo(name)
    too_big = f"compressed MusicXML unpacks to more than {limit / 2**20:g} MB"
    if info.file_size > limit:
        raise InputError(path, too_big)
    with archive.open(info) as member:
        # The declared size is the archive's claim; the stream is read with a limit as well.
        data = member.read(limit + 1)
    if len(data) > limit:
        raise InputError(path, too_big)
    return data


_ZIP_MAGIC = b"PK\x03\x04"  # a local file header: how every .mxl archive begins


def is_compressed_score(head: bytes) -> bool:
    """True when a score file's first bytes are a zip archive's: a compressed MusicXML score,
    whatever its name says (the converter and the service's renderer decide by this)."""
    return head[:4] == _ZIP_MAGIC


def _read_score(path: Path) -> bytes:
    """The MusicXML bytes ``xml2abc.py`` would parse.

    A compressed score (a zip archive, whatever its extension: ``.mxl``, or an ``.xml`` that
    is one) is unpacked; the script takes the first member whose name does not start with
    ``META`` and ends with ``.xml``. When there is none (e.g. the score is stored as ``.musicxml``)
    the script fails; here the root file named in ``META-INF/container.xml`` is used instead.
    Members are read up to the unpack cap (:data:`MAX_UNPACKED_BYTES` or
    :func:`unpacked_size_limit`); a larger one raises ``InputError``.
    """
    try:
        data = path.read_bytes()  # once: a score's archive is small (the cap is on what it unpacks)
        if not is_compressed_score(data):  # by content, not name: a plain score saved as .mxl reads too
            markup = data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
            if path.suffix.lower() == ".mxl" and not markup:
                reason = "not a valid compressed MusicXML (.mxl) archive (no zip header), nor XML"
                raise InputError(path, reason)
            return data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:  # as is a compressed one saved as .xml
            names = archive.namelist()
            for name in names:
                if name[:4] != "META" and name[-4:].lower() == ".xml":
                    return _read_member(archive, name, path)
            rootfile = _container_rootfile(archive, path)
            if rootfile is None:
                raise InputError(path, f"no MusicXML file inside the .mxl archive (members: {names[:5]})")
            return _read_member(archive, rootfile, path)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InputError(path, f"not a valid compressed MusicXML (.mxl) archive: {exc}") from exc
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc


def _container_rootfile(archive: zipfile.ZipFile, path: Path) -> str | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(_read_member(archive, "META-INF/container.xml", path))
    except (KeyError, ET.ParseError):
        return None
    for element in root.iter():
        if element.tag.endswith("rootfile") and element.get("full-path"):
            return element.get("full-path")
    return None


@contextlib.contextmanager
def _quiet(module: object, messages: list[str]) -> Iterator[None]:
    """Collect the converter's ``info`` messages (stderr in the script) instead of printing."""
    original = module.info  # type: ignore[attr-defined]
    module.info = lambda s, warn=1: messages.append(s)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.info = original  # type: ignore[attr-defined]


def musicxml_to_abc(path: str | os.PathLike) -> str:
    """A MusicXML file (``.xml``, ``.musicxml`` or ``.mxl``) -> standard ABC text.

    Byte-identical to the official ``xml2abc.py -d 8 -x <file>`` standard output decoded as
    UTF-8 (one voice per line, ``L:1/8``, ends with an empty line). Raises ``InputError``
    naming the file when it cannot be read, a ``.mxl`` member unpacks past the cap (see
    :func:`unpacked_size_limit`), or the converter produces nothing (the official batch script
    logs empty output as an error).
    """
    from abctoolkit import xml2abc

    path = Path(path)
    _check_readable(path)
    options = _xml2abc_options()
    messages: list[str] = []
    data = _read_score(path)
    source = io.BytesIO(data)
    with _LOCK, _quiet(xml2abc, messages):
        writer = xml2abc.ABCoutput(str(path.with_suffix("")) + ".abc", "", 0, options)
        out = io.StringIO()
        writer.outfile = out  # the script writes to sys.stdout
        xml2abc.abcOut = writer  # module global the parser writes through
        try:
            xml2abc.Parser(options).parse(source)
        except Exception as exc:  # the script catches everything here and writes nothing
            raise InputError(path, _diagnose(data, f"{type(exc).__name__}: {exc}")) from exc
        finally:
            xml2abc.abcOut = None
    text = out.getvalue()
    if not text:
        raise InputError(path, _diagnose(data, "; ".join(messages) or "no output"))
    return text


def _check_readable(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(path, f"cannot read file: {exc.strerror or exc}") from exc
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(path, "cannot read file: permission denied")


def _diagnose(data: bytes, detail: str) -> str:
    """Explain an empty conversion: not XML, not MusicXML, or MusicXML without notes."""
    import xml.etree.ElementTree as ET

    try:
        root_tag = next(ET.iterparse(io.BytesIO(data), events=("start",)))[1].tag
    except Exception as exc:
        return f"not a readable XML file ({type(exc).__name__}: {exc})"
    if root_tag not in ("score-partwise", "score-timewise"):
        return f"XML but not MusicXML (root element <{root_tag}>)"
    if root_tag == "score-timewise":
        return "timewise MusicXML is not supported by xml2abc (convert it to partwise)"
    return f"conversion produced no ABC ({detail})"


def interleave_abc(abc: str, name: str = "<abc>") -> str:
    """Standard ABC (xml2abc output) -> interleaved ABC, as the official pipeline does.

    Steps (abctoolkit 0.0.4): drop blank lines and ``X: T: C: W: w: Z: %%MIDI`` lines, strip
    bar-number comments, remove escaped quotes and quoted strings containing a barline, strip
    empty leading/trailing bars, then rotate: one line per bar holding every voice
    (``[V:1]...|[V:2]...|``). ``abc`` is taken as text read from a file (universal newlines).
    Raises ``InputError(name, reason)`` when voices have unequal bar counts, no bar has notes,
    or the text has no ``V:1`` tune body. Unequal bar durations only log a warning (the
    official pipeline keeps such files).
    """
    text, found = interleave_abc_checked(abc, name)
    for warning in found:
        logger.debug("%s: %s", name, warning)
    return text


def interleave_abc_checked(abc: str, name: str = "<abc>") -> tuple[str, list[str]]:
    """:func:`interleave_abc` that also returns the alignment warnings it found."""
    from abctoolkit.check import check_alignment_unrotated
    from abctoolkit.rotate import rotate_abc
    from abctoolkit.utils import remove_bar_no_annotations, remove_information_field

    lines = [line for line in io.StringIO(abc, newline=None).readlines() if line.strip() != ""]
    if not any(line.strip() == "V:1" for line in lines):
        raise InputError(name, "no tune body starting with a 'V:1' line (not xml2abc-style ABC)")
    lines = remove_information_field(abc_lines=lines, info_fields=_DROPPED_FIELDS)
    lines = _remove_quoted_barlines(remove_bar_no_annotations(lines))
    printed = io.StringIO()
    with _LOCK, contextlib.redirect_stdout(printed):  # abctoolkit prints its diagnostics
        try:
            stripped, _ = _strip_empty_bars(lines, name)
            _, equal_counts, equal_durations = check_alignment_unrotated(stripped)
            rotated = rotate_abc(stripped)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(name, f"interleaving failed ({type(exc).__name__}: {exc})") from exc
    found = [] if equal_counts else ["unequal bar number"]
    if not equal_durations:
        found.append("unequal bar duration (voices not aligned): " + _odd_bars(printed.getvalue()))
    return "".join(rotated), found


def _remove_quoted_barlines(lines: list[str]) -> list[str]:
    """Body lines: drop ``\\"`` and every ``"..."`` holding a barline symbol.

    Mirrors the official loop exactly, including its quirk: when a quoted string is removed,
    the line is rebuilt from the original text, so its ``\\"`` removal is undone.
    """
    from abctoolkit.utils import Barlines, Quote_re

    out = list(lines)
    for i, line in enumerate(lines):
        if _FIELD_LINE.search(line) or line.startswith("%"):
            continue
        out[i] = line.replace('\\"', "")
        for quoted in re.findall(Quote_re, line):
            for barline in Barlines:
                if barline in quoted:
                    line = line.replace(quoted, "")
                    out[i] = line
    return out


def _strip_empty_bars(lines: list[str], name: str) -> tuple[list[str], int]:
    from abctoolkit.utils import extract_barline_and_bartext_dict, strip_empty_bars

    stripped, count = strip_empty_bars(lines)
    if stripped is not None:
        return stripped, count
    _, _, _, bars, _ = extract_barline_and_bartext_dict(lines)
    counts = {voice: len(texts) for voice, texts in bars.items()}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{voice} {n}" for voice, n in counts.items())
        raise InputError(name, f"voices have unequal bar counts ({listed})")
    raise InputError(name, "no bar contains notes (empty piece)")


def _odd_bars(printed: str) -> str:
    found = re.findall(r"Odd bar duration\s+(\S+)\s+bar\s+(\d+)", printed)
    shown = ", ".join(f"{voice} bar {bar}" for voice, bar in found[:5])
    return shown + (f" and {len(found) - 5} more" if len(found) > 5 else "")


_TUNE_START = re.compile(r"^X:", re.MULTILINE)


def count_tunes(abc: str) -> int:
    """How many tunes ``abc`` holds: each ABC tune starts with its ``X:`` reference field (a
    tune book holds hundreds). Text without one counts as one tune."""
    return max(1, len(_TUNE_START.findall(abc)))


def abc_to_musicxml(abc: str) -> str:
    """ABC (standard or interleaved) -> MusicXML text, with abctoolkit's ``abc2xml`` (version 238).

    The first tune of ``abc`` is converted, as ``abc2xml.py`` does without options; the result
    is the document the script prints (XML declaration, DOCTYPE, score) without its final
    newline. ``%%abc-include`` lines are ignored (they would read arbitrary files). Raises
    ``ValueError`` with the converter's messages when it produces no score.
    """
    abc = _ABC_INCLUDE.sub("", abc)
    messages: list[str] = []
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # abc2xml uses pyparsing's old names
        from abctoolkit import abc2xml

        with _quiet(abc2xml, messages):
            docs = abc2xml.getXmlDocs(abc)
        if not docs:
            raise ValueError("abc2xml produced no MusicXML: " + ("; ".join(messages) or "no tune found"))
        return abc2xml.fixDoctype(docs[0])
