"""MusicCaps (Agostinelli et al., 2023) and its remakes: expert captions of 10-s AudioSet clips.

Expected layout (``musiccaps-public.csv`` from Kaggle / Hugging Face ``google/MusicCaps``; the
clips are downloaded by the user, e.g. with yt-dlp, cut to ``start_s``..``end_s``)::

    PATH/musiccaps-public.csv   columns ytid, start_s, end_s, caption (also aspect_list,
                                audioset_positive_labels, author_id, is_balanced_subset,
                                is_audioset_eval)
    PATH/audio/<ytid>.<ext>     one clip per row: .wav .mp3 .flac .ogg, or MERT features .npy

A remake (the paper's "MusicCaps-Remake") is scored the same way: give its CSV (these columns)
as PATH, with the clips in ``audio/`` beside it. Subsets: ``all`` (default), ``eval``
(``is_audioset_eval``), ``balanced`` (``is_balanced_subset``). Clips that were not downloaded
are left out and counted. Direction: caption -> audio.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import BenchmarkData, TextQuery, read_csv_rows, table_and_audio, truthy
from clamp3.evaluate.benchmarks.media import files_by_stem
from clamp3.utils.errors import InputError

NAME = "musiccaps"
CSV = "musiccaps-public.csv"
COLUMNS = ("ytid", "start_s", "end_s", "caption")
SUBSETS = ("all", "eval", "balanced")
TEXT_TYPES = ("caption",)
_FLAGS = {"eval": "is_audioset_eval", "balanced": "is_balanced_subset"}


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    clips_layout = "the clips as audio/<ytid>.<wav|mp3|flac|ogg|npy>"
    csv_path, audio = table_and_audio(path, CSV, f"the MusicCaps captions ({CSV})", clips_layout)
    subset = subset or "all"
    flag = _FLAGS.get(subset)
    clips = files_by_stem(audio)
    music: dict[str, Path] = {}
    queries, absent = [], 0
    for where, row in read_csv_rows(csv_path, COLUMNS + ((flag,) if flag else ())):
        if flag and not truthy(row[flag]):
            continue
        ytid, caption = row["ytid"].strip(), row["caption"].strip()
        if not ytid or not caption:
            raise InputError(where, "empty ytid or caption")
        if ytid not in clips:
            absent += 1
            continue
        music[ytid] = clips[ytid]
        queries.append(TextQuery(ytid, ytid, caption, "caption"))
    if not queries:
        raise InputError(csv_path, f"no row of subset {subset!r} has its clip in {audio}")
    notes = [f"subset {subset}: {len(queries)} clips"]
    if absent:
        notes.append(f"{absent} rows left out: no clip in {audio}")
    return BenchmarkData(NAME, csv_path, {"audio": music}, queries, notes)
