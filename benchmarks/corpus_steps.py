"""Where the demo corpus's build time goes, and FluidSynth with and without lazy sample loading.

    python benchmarks/corpus_steps.py [--pieces 40] [--renders 5] [--work /tmp/corpus-steps]

Side by side in one process, on one quiet machine:

- steps: ``--pieces`` pieces of the demo's selection (a seeded sample of its first 400), built
  one after another in this process with the demo's settings (20 s audio, ``mini`` features);
  the seconds spent in each step (parse, describe, MusicXML, ABC, MIDI, MTF, audio, features)
  and their shares of the total;
- FluidSynth: the same cut MIDI files rendered ``--renders`` times each, alternately with
  ``-o synth.dynamic-sample-loading=1`` (the corpus's setting) and without it; the median
  seconds per render of each, and whether the two WAV files are equal byte for byte.

The figures in docs/corpus.md (the FluidSynth setting) and in the closing notes come from this
script. Every piece is built from scratch: ``--work`` is emptied first.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import clamp3.corpus.piece as piece
from clamp3.corpus.assemble import FILES, PIECES_DIR
from clamp3.corpus.options import BuildOptions
from clamp3.corpus.render import SAMPLE_RATE, find_fluidsynth, find_soundfont, truncate_midi
from clamp3.corpus.select import select_pieces
from clamp3.demo.pipeline import FEATURES

DEMO_PIECES = 400
SECONDS = 20.0


def timed(name: str, fn, totals: collections.Counter):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


def step_times(refs, work: Path) -> collections.Counter:
    """Seconds per build step over ``refs``, each built from scratch under ``work``."""
    totals: collections.Counter = collections.Counter()
    piece._parse = timed("parse", piece._parse, totals)
    piece._describe = timed("describe", piece._describe, totals)
    for name, step in list(piece._STEPS.items()):
        piece._STEPS[name] = timed(name, step, totals)
    options = BuildOptions(seconds_max=SECONDS, features=FEATURES)
    for ref in refs:
        try:
            piece.build_piece(ref, str(work), options)
        except piece.PieceError as err:
            print(f"  failed (left out): {err}")
    return totals


def render(cut: Path, wav: Path, lazy: bool) -> float:
    cmd = [find_fluidsynth() or "fluidsynth", "-ni", "-q"]
    cmd += ["-o", "synth.dynamic-sample-loading=1"] if lazy else []
    cmd += ["-F", str(wav), "-r", str(SAMPLE_RATE), str(find_soundfont()), str(cut)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def fluidsynth_times(midis: list[Path], renders: int) -> None:
    times: dict[bool, list[float]] = {True: [], False: []}
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for i, midi in enumerate(midis):
            cut = Path(tmp) / f"cut{i}.mid"
            truncate_midi(midi, cut, SECONDS)
            digests = {}
            for rep in range(renders):
                for lazy in (rep % 2 == 0, rep % 2 != 0):  # alternate which one goes first
                    wav = Path(tmp) / f"{i}-{lazy}.wav"
                    times[lazy].append(render(cut, wav, lazy))
                    digests[lazy] = hashlib.md5(wav.read_bytes()).hexdigest()
            same = same and digests[True] == digests[False]
    eager, lazy = statistics.median(times[False]), statistics.median(times[True])
    print(f"FluidSynth, {len(midis)} files x {renders} renders each, median s per render:")
    print(f"  all samples loaded {eager:.3f}   lazy loading {lazy:.3f}   ratio {lazy / eager:.2f}")
    print(f"  same WAV bytes with and without: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pieces", type=int, default=40)
    parser.add_argument("--renders", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "corpus-steps")
    args = parser.parse_args()
    if find_fluidsynth() is None or find_soundfont() is None:
        raise SystemExit("needs FluidSynth and a soundfont: apt-get install fluidsynth fluid-soundfont-gm")
    shutil.rmtree(args.work, ignore_errors=True)
    refs = select_pieces(DEMO_PIECES)
    random.Random(0).shuffle(refs)
    refs = refs[: args.pieces]
    start = time.perf_counter()
    totals = step_times(refs, args.work)
    wall = time.perf_counter() - start
    print(f"{len(refs)} pieces built in {wall:.1f} s in one process ({wall / len(refs):.2f} s a piece):")
    total = sum(totals.values())
    for name, seconds in totals.most_common():
        print(f"  {name:9s} {seconds:6.1f} s  {100 * seconds / total:4.1f} %")
    midis = sorted(args.work.glob(f"{PIECES_DIR}/*/{FILES['midi']}"))[:10]
    fluidsynth_times(midis, args.renders)


if __name__ == "__main__":
    main()
