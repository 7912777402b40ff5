"""Small replicas of the downloaded layouts of the benchmark data sets (docs/benchmarks.md):
the same file names and fields, a handful of items, music made in a few milliseconds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

SR = 22050  # not the front-end's 24 kHz, so every file goes through the resampler


def tone(path: Path, pitch: int, seconds: float = 1.5) -> Path:
    """A decaying two-partial tone (wav, mp3, flac or ogg by suffix)."""
    import soundfile as sf

    t = np.arange(int(seconds * SR)) / SR
    freq = 110.0 * 2 ** (pitch / 12)
    wave = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)) * np.exp(-t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.4 * wave).astype(np.float32), SR)
    return path


def midi(path: Path, pitch: int) -> Path:
    import mido

    song = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    song.tracks.append(track)
    for step in range(6):
        note = 48 + (pitch * 5 + step * (pitch % 4 + 1)) % 36
        track.append(mido.Message("note_on", note=note, velocity=80, time=0))
        track.append(mido.Message("note_off", note=note, velocity=0, time=240 + 60 * (pitch % 3)))
    path.parent.mkdir(parents=True, exist_ok=True)
    song.save(path)
    return path


def abc(n: int) -> str:
    """A short single-voice ABC tune, different for every ``n``."""
    notes = "CDEFGABcdefg"
    bars = "|".join(
        "".join(notes[(n * 3 + i * (n % 5 + 1) + j) % len(notes)] for j in range(4)) for i in range(4)
    )
    return f"X:{n + 1}\nT:tune {n}\nL:1/8\nM:4/4\nK:{'CGDAE'[n % 5]}\n{bars}|]\n"


WORDS = [
    "calm",
    "fast",
    "dark",
    "bright",
    "folk",
    "waltz",
    "piano",
    "violin",
    "sad",
    "joyful",
    "slow",
    "loud",
]


def sentence(n: int, kind: str = "") -> str:
    return f"{kind} a {WORDS[n % 12]} {WORDS[(n * 5 + 3) % 12]} piece number {n}".strip()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------- layouts
def wikimt_x(root: Path, n: int = 5, translations: tuple[str, ...] = ("de",), with_midi: bool = True) -> Path:
    records = []
    for i in range(n):
        ytid = f"yt{i:03d}xYz"
        records.append(
            {
                "title": f"tune {i}",
                "artists": ["someone"],
                "genre": "Folk",
                "leadsheet": abc(i),
                "id": ytid,
                **{t: sentence(i, t) for t in ("background", "analysis", "description", "scene")},
            }
        )
        tone(root / "audio" / f"{ytid}.wav", i * 2)
        if with_midi:
            midi(root / "midi" / f"{i + 1:04d}.mid", i)
    write_jsonl(root / "wikimt-x-public.jsonl", records)
    for lang in translations:
        write_jsonl(
            root / f"wikimt-x-public.{lang}.jsonl",
            [{"background": f"[{lang}] {r['background']}"} for r in records],
        )
    return root


SDD_HEADER = [
    "caption_id",
    "track_id",
    "caption",
    "is_valid_subset",
    "familiarity",
    "artist_id",
    "album_id",
    "path",
    "duration",
]


def song_describer(root: Path, tracks: int = 4) -> Path:
    """Two captions for even tracks, one for odd; the last caption of each track is not in the
    valid subset, except for single-caption tracks."""
    rows, cid = [], 0
    for t in range(tracks):
        track = str(1000 + t)
        folder = f"{t % 2:02d}"
        tone(root / "audio" / folder / f"{track}.2min.mp3", 3 * t)
        for c in range(2 if t % 2 == 0 else 1):
            valid = c == 0
            rows.append(
                [
                    cid,
                    track,
                    sentence(t * 2 + c, "caption"),
                    str(valid),
                    1,
                    7,
                    8,
                    f"{folder}/{track}.mp3",
                    120.0,
                ]
            )
            cid += 1
    write_csv(root / "song_describer.csv", SDD_HEADER, rows)
    return root


def midicaps(root: Path, n: int = 6) -> Path:
    records = []
    for i in range(n):
        location = f"lmd_full/{i % 2}/{i:032x}.mid"
        midi(root / location, i)
        records.append(
            {
                "location": location,
                "caption": sentence(i, "caption"),
                "genre": ["pop"],
                "mood": ["happy"],
                "key": "C major",
                "time_signature": "4/4",
                "tempo": 120,
                "test_set": i % 3 != 0,
            }
        )
    write_jsonl(root / "train.json", records)
    return root


def wikimt(root: Path, n: int = 5) -> Path:
    records = [
        {"title": f"t{i}", "artist_name": "a", "genre": "Jazz", "melody": abc(i), "text": sentence(i, "wiki")}
        for i in range(n)
    ]
    return write_jsonl(root / "wikimusictext.jsonl", records).parent


MC_HEADER = [
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
]


def musiccaps(root: Path, n: int = 5, missing: int = 1) -> Path:
    """``n`` rows; the clips of the last ``missing`` rows are not downloaded."""
    rows = []
    for i in range(n):
        ytid = f"-mc{i:02d}_Ab"
        if i < n - missing:
            tone(root / "audio" / f"{ytid}.flac", 5 * i + 1)
        rows.append(
            [ytid, 30, 40, "/m/04rlf", "['calm']", sentence(i, "caption"), 4, str(i % 2 == 0), str(i < 3)]
        )
    write_csv(root / "musiccaps-public.csv", MC_HEADER, rows)
    return root


def manifest(root: Path, n: int = 4) -> Path:
    records = []
    for i in range(n):
        (root / "scores").mkdir(parents=True, exist_ok=True)
        (root / "scores" / f"p{i}.abc").write_text(abc(i), encoding="utf-8")
        tone(root / "rec" / f"p{i}.wav", 4 * i)
        texts = {"caption": [sentence(i, "cap"), sentence(i + 20, "cap")] if i % 2 else sentence(i, "cap")}
        records.append(
            {
                "id": f"p{i}",
                "music": {"sheet": f"scores/p{i}.abc", "audio": str(root / "rec" / f"p{i}.wav")},
                "texts": texts,
                "translations": {"fr": {"caption": f"[fr] {sentence(i, 'cap')}"}},
            }
        )
    return write_jsonl(root / "set.jsonl", records)
