"""One rendering, run as its own process: ``python -I -m clamp3.serve.render_job FORMAT PAGE PATH``.

Prints one JSON object on stdout: ``{"ok": true, "svg": "...", "pages": n}`` or
``{"ok": false, "error": "...", "pages": n | null}``. ``FORMAT`` is ``musicxml``, ``mxl``,
``abc``, ``midi`` or ``mtf``; ``PAGE`` is 1-based (scores only).

Why a process per rendering: verovio is C++ and crashes the whole interpreter on some inputs
(it segfaults on interleaved ABC, for one); a crash, a runaway score or a memory blow-up here
costs one failed request, never the server. CPU time and address space are capped below.
"""

from __future__ import annotations

import base64
import codecs
import json
import sys
from pathlib import Path

CPU_SECONDS = 60
MEMORY_BYTES = 3 << 30
PAGE_OPTIONS = {
    "pageWidth": 2100,
    "pageHeight": 2970,
    "adjustPageHeight": True,
    "scale": 40,
    "breaks": "auto",
    "footer": "none",
    "svgViewBox": True,
}


class RenderFailure(Exception):
    def __init__(self, message: str, pages: int | None = None):
        super().__init__(message)
        self.pages = pages


def _limit_resources() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    except (ImportError, ValueError, OSError):  # not POSIX, or a lower hard limit already set
        pass


def _decode_xml(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def render_score(path: Path, fmt: str, page: int) -> tuple[str, int]:
    """MusicXML / compressed MusicXML / ABC -> (SVG of ``page``, page count) with verovio."""
    import verovio

    from clamp3.preprocess.abc import abc_to_musicxml, is_compressed_score

    verovio.enableLog(verovio.LOG_OFF)
    toolkit = verovio.toolkit()
    toolkit.setOptions(PAGE_OPTIONS)
    data = None if fmt == "abc" else path.read_bytes()  # an ABC is read as text, once, below
    if data is not None and is_compressed_score(data):  # by content, as the converter reads it
        loaded = toolkit.loadZipDataBase64(base64.b64encode(data).decode("ascii"))
    else:
        if data is None:
            # Through MusicXML: verovio's own ABC reader crashes on interleaved ABC.
            from clamp3.inputs import read_input_text

            try:  # read as it was embedded (a byte-order mark dropped, UTF-16 decoded)
                text = abc_to_musicxml(read_input_text(path))
            except ValueError as exc:  # InputError too
                raise RenderFailure(f"cannot read this ABC: {getattr(exc, 'reason', exc)}") from exc
        else:
            text = _decode_xml(data)
        toolkit.setInputFrom("musicxml")  # never let verovio guess the format
        loaded = toolkit.loadData(text)
    if not loaded:
        raise RenderFailure("verovio could not read this score")
    pages = int(toolkit.getPageCount())
    if pages < 1:
        raise RenderFailure("the score has no pages to draw", 0)
    if page > pages:
        raise RenderFailure(f"page {page} does not exist; the score has {pages}", pages)
    return toolkit.renderToSVG(page), pages


def render_midi(path: Path, fmt: str) -> str:
    """A MIDI or MTF file -> piano-roll SVG."""
    import mido

    from clamp3.serve.pianoroll import midi_notes, render_svg

    try:
        if fmt == "mtf":
            from clamp3.inputs import read_input_text
            from clamp3.preprocess.mtf import line_to_message

            try:
                lines = read_input_text(path).splitlines()
            except ValueError as exc:  # InputError: not text, empty
                raise RenderFailure(f"cannot read this MTF file: {exc.reason}") from exc
            head = lines[0].split(" ") if lines else []
            if len(head) != 2 or head[0] != "ticks_per_beat" or not head[1].isdigit():
                raise RenderFailure("not an MTF file (line 1 must be 'ticks_per_beat <n>')")
            midi = mido.MidiFile(type=0, ticks_per_beat=int(head[1]))
            midi.tracks.append(mido.MidiTrack(line_to_message(line) for line in lines[1:] if line.strip()))
        else:
            midi = mido.MidiFile(path)
        notes, duration, truncated = midi_notes(midi)
    except RenderFailure:
        raise
    except Exception as exc:  # mido raises many types on damaged files
        raise RenderFailure(f"cannot read this MIDI file ({type(exc).__name__}: {exc})") from exc
    return render_svg(notes, duration, truncated)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print(json.dumps({"ok": False, "error": "usage: render_job FORMAT PAGE PATH", "pages": None}))
        return 2
    fmt, page, path = argv[0], int(argv[1]), Path(argv[2])
    _limit_resources()
    try:
        if fmt in ("midi", "mtf"):
            if page != 1:
                raise RenderFailure(f"page {page} does not exist; a piano roll has 1", 1)
            svg, pages = render_midi(path, fmt), 1
        elif fmt in ("musicxml", "mxl", "abc"):
            svg, pages = render_score(path, fmt, max(page, 1))
        else:
            raise RenderFailure(f"unknown format {fmt!r}")
    except RenderFailure as exc:
        print(json.dumps({"ok": False, "error": str(exc), "pages": exc.pages}))
        return 1
    except Exception as exc:  # the child's whole job is to turn any failure into an answer
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}", "pages": None}))
        return 1
    sys.stdout.write(json.dumps({"ok": True, "svg": svg, "pages": pages}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
