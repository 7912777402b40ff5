"""Files per second of symbolic preprocessing: in-process vs one subprocess per file.

MusicXML -> standard ABC -> interleaved ABC, and MIDI -> MTF, on pieces of the music21 corpus
(MusicXML files as shipped; MIDI renderings of a sample of them written by music21 first, plus
the MIDI files shipped inside music21). Measured side by side in one run:

- ``subprocess``: the official way, ``python xml2abc.py -d 8 -x <file>`` per file (abctoolkit's
  copy of the script) then the interleaving in-process; for MIDI a ``python`` subprocess per
  file that imports mido and converts (the official MIDI script has no subprocess, so this is
  the per-file-process baseline the brief asks for);
- ``in-process``: ``musicxml_to_abc`` + ``interleave_abc`` / ``midi_to_mtf`` in this process;
- ``pool``: ``clamp3.preprocess.convert_tree`` with ``--workers`` processes (writes the files).

Outputs of the subprocess and in-process paths are compared byte for byte.

    .venv/bin/python benchmarks/preprocess_throughput.py --n-xml 300 --n-midi 100 --workers 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIDI_CHILD = r"""
import sys, mido
drop = {"text", "copyright", "track_name", "instrument_name", "lyrics", "marker", "cue_marker", "device_name"}
mid = mido.MidiFile(sys.argv[1])
lines = ["ticks_per_beat " + str(mid.ticks_per_beat)]
for msg in mid.merged_track:
    if msg.is_meta and msg.type in drop:
        continue
    lines.append(" ".join(str(v) for v in msg.dict().values()).strip().encode("unicode_escape").decode("utf-8"))
sys.stdout.write("\n".join(lines))
"""


def sample(paths: list[Path], n: int) -> list[Path]:
    """``n`` paths spread evenly over the sorted list (all composers, not the first folder)."""
    paths = sorted(paths)
    if n >= len(paths):
        return paths
    return [paths[round(i * (len(paths) - 1) / max(n - 1, 1))] for i in range(n)]


def corpus_musicxml(n: int) -> list[Path]:
    from music21 import corpus

    found = [Path(p) for p in corpus.getPaths() if Path(p).suffix.lower() in (".xml", ".mxl", ".musicxml")]
    return sample(found, n)


def midi_files(n_rendered: int, pieces: list[Path], work: Path) -> list[Path]:
    """MIDI files shipped with music21 plus renderings of up to ``n_rendered`` corpus pieces."""
    import music21

    shipped = sorted(Path(music21.__file__).parent.rglob("*.mid"))
    out = work / "midi"
    out.mkdir(parents=True, exist_ok=True)
    rendered = []
    for path in sample(pieces, n_rendered):
        target = out / f"{path.parent.name}_{path.stem}.mid"
        if not target.exists():
            try:
                music21.converter.parse(path).write("midi", fp=str(target))
            except Exception as exc:  # a few corpus pieces do not render; skip them
                print(f"  (skip {path.name}: {type(exc).__name__})", file=sys.stderr)
                continue
        rendered.append(target)
    return shipped + rendered


def run_xml_subprocess(paths: list[Path]) -> tuple[float, list[str | None]]:
    from abctoolkit import xml2abc

    from clamp3.preprocess import interleave_abc

    script = xml2abc.__file__
    outs: list[str | None] = []
    start = time.perf_counter()
    for path in paths:
        done = subprocess.run([sys.executable, script, "-d", "8", "-x", str(path)], capture_output=True)
        standard = done.stdout.decode("utf-8")
        try:
            outs.append(interleave_abc(standard) if standard else None)
        except ValueError:
            outs.append(None)
    return time.perf_counter() - start, outs


def run_xml_inprocess(paths: list[Path]) -> tuple[float, list[str | None]]:
    from clamp3.preprocess import interleave_abc, musicxml_to_abc

    outs: list[str | None] = []
    start = time.perf_counter()
    for path in paths:
        try:
            outs.append(interleave_abc(musicxml_to_abc(path)))
        except ValueError:
            outs.append(None)
    return time.perf_counter() - start, outs


def run_midi_subprocess(paths: list[Path]) -> tuple[float, list[str | None]]:
    outs: list[str | None] = []
    start = time.perf_counter()
    for path in paths:
        done = subprocess.run([sys.executable, "-c", MIDI_CHILD, str(path)], capture_output=True)
        outs.append(done.stdout.decode("utf-8") if done.returncode == 0 else None)
    return time.perf_counter() - start, outs


def run_midi_inprocess(paths: list[Path]) -> tuple[float, list[str | None]]:
    from clamp3.preprocess import midi_to_mtf

    outs: list[str | None] = []
    start = time.perf_counter()
    for path in paths:
        try:
            outs.append(midi_to_mtf(path))
        except ValueError:
            outs.append(None)
    return time.perf_counter() - start, outs


def run_pool(paths: list[Path], work: Path, workers: int) -> float:
    """``convert_tree`` over a tree of symlinks to ``paths`` (fresh output directory)."""
    from clamp3.preprocess import convert_tree

    tree = Path(tempfile.mkdtemp(dir=work, prefix="tree_"))
    for i, path in enumerate(paths):
        (tree / f"{i:04d}_{path.name}").symlink_to(path.resolve())
    start = time.perf_counter()
    convert_tree(tree, Path(tempfile.mkdtemp(dir=work, prefix="out_")), workers=workers, show_progress=False)
    return time.perf_counter() - start


def report(kind: str, n: int, seconds: dict[str, float], same: int, compared: int) -> None:
    base = seconds["subprocess"]
    for mode, secs in seconds.items():
        print(f"| {kind:8s} | {mode:22s} | {n:5d} | {secs:8.2f} | {n / secs:8.1f} | {base / secs:6.2f}x |")
    print(
        f"|          | identical outputs      | {same}/{compared} (subprocess vs in-process, both succeeded) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-xml", type=int, default=300, help="MusicXML pieces")
    parser.add_argument(
        "--n-midi", type=int, default=100, help="pieces rendered to MIDI (plus music21's own)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "clamp3_bench_preprocess"
    )
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)

    xml = corpus_musicxml(args.n_xml)
    midi = midi_files(args.n_midi, xml, args.work_dir)
    print(f"cpu count {os.cpu_count()}, workers {args.workers}, load average {os.getloadavg()[0]:.1f}")
    print("| input    | mode                   | files | seconds |  files/s | vs subprocess |")
    print("|----------|------------------------|-------|---------|----------|---------------|")
    for kind, paths, sub, inproc in [
        ("MusicXML", xml, run_xml_subprocess, run_xml_inprocess),
        ("MIDI", midi, run_midi_subprocess, run_midi_inprocess),
    ]:
        t_sub, out_sub = sub(paths)
        t_in, out_in = inproc(paths)
        t_pool = run_pool(paths, args.work_dir, args.workers)
        both = [(a, b) for a, b in zip(out_sub, out_in) if a is not None and b is not None]
        seconds = {"subprocess": t_sub, "in-process": t_in, f"pool ({args.workers} workers)": t_pool}
        report(kind, len(paths), seconds, sum(a == b for a, b in both), len(both))
        pairs = list(zip(out_sub, out_in))
        sub_only = sum(a is None and b is not None for a, b in pairs)
        inproc_only = sum(a is not None and b is None for a, b in pairs)
        both_failed = sum(a is None and b is None for a, b in pairs)
        print(
            f"|          | failed: by both {both_failed}, only by subprocess {sub_only}, "
            f"only in-process {inproc_only} |"
        )


if __name__ == "__main__":
    main()
