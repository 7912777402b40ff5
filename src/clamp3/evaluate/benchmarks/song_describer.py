"""Song Describer (SDD; Manco et al., 2023): human captions of MTG-Jamendo tracks.

Expected layout, as the Zenodo release unpacks::

    PATH/song_describer.csv     columns caption_id, track_id, caption, is_valid_subset,
                                familiarity, artist_id, album_id, path, duration
                                (``path`` is ``<dir>/<track_id>.mp3``)
    PATH/audio/<dir>/<track_id>.2min.mp3    the 2-minute excerpts (``audio.zip``); a file named
                                exactly as ``path`` is accepted too

Subsets: ``valid`` (default; rows with ``is_valid_subset`` true: the 746 captions of 546 tracks
the paper scores, per the dataset card) or ``all`` (1,106 captions, 706 tracks). Several
captions describe one track: each caption is one query, the candidates are the distinct
tracks. Direction: caption -> audio.
"""

from __future__ import annotations

from pathlib import Path

from clamp3.evaluate.benchmarks.layout import BenchmarkData, TextQuery, read_csv_rows, table_and_audio, truthy
from clamp3.utils.errors import InputError

NAME = "song-describer"
CSV = "song_describer.csv"
COLUMNS = ("caption_id", "track_id", "caption", "is_valid_subset", "path")
SUBSETS = ("valid", "all")
TEXT_TYPES = ("caption",)


def audio_file(audio: Path, track_id: str, rel: str) -> Path:
    """``audio/<dir>/<track_id>.2min.mp3``, else ``audio/<path>`` when that exists."""
    excerpt = audio / Path(rel).parent / f"{track_id}.2min.mp3"
    if excerpt.is_file() or not (audio / rel).is_file():
        return excerpt  # a missing excerpt is reported by name when it is embedded
    return audio / rel


def load(path: Path, subset: str | None, work: Path) -> BenchmarkData:
    excerpts_layout = "the unpacked audio.zip (audio/<dir>/<track_id>.2min.mp3)"
    csv_path, audio = table_and_audio(path, CSV, f"the Song Describer captions ({CSV})", excerpts_layout)
    subset = subset or "valid"
    tracks: dict[str, Path] = {}
    queries = []
    for where, row in read_csv_rows(csv_path, COLUMNS):
        if subset == "valid" and not truthy(row["is_valid_subset"]):
            continue
        track, caption = row["track_id"].strip(), row["caption"].strip()
        if not track or not caption:
            raise InputError(where, "empty track_id or caption")
        tracks.setdefault(track, audio_file(audio, track, row["path"].strip()))
        queries.append(TextQuery(row["caption_id"].strip(), track, caption, "caption"))
    if not queries:
        raise InputError(csv_path, f"no caption in subset {subset!r}")
    notes = [f"subset {subset}: {len(queries)} captions of {len(tracks)} tracks"]
    return BenchmarkData(NAME, csv_path, {"audio": tracks}, queries, notes)
