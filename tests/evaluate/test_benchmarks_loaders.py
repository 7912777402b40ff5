"""Each benchmark loader on a small replica of its documented layout (tests/benchmark_support.py):
what it finds, its subsets, and the clear error a missing or renamed field gives."""

from __future__ import annotations

import json

import pytest
from benchmark_support import manifest, midicaps, musiccaps, song_describer, wikimt, wikimt_x

from clamp3.evaluate.benchmarks import DATASETS, loader
from clamp3.evaluate.benchmarks.layout import select_queries
from clamp3.utils.errors import InputError


def _load(name, path, tmp_path, subset=None):
    return loader(name).load(path, subset, tmp_path / "work")


def test_every_dataset_has_a_loader_with_its_documented_names():
    assert DATASETS == ("wikimt-x", "song-describer", "midicaps", "wikimt", "musiccaps", "manifest")
    for name in DATASETS:
        mod = loader(name)
        assert name == mod.NAME and mod.SUBSETS
        assert "layout" in mod.__doc__.lower()  # each loader documents the files it reads


def test_wikimt_x_four_text_types_translations_and_three_modalities(tmp_path):
    data = _load("wikimt-x", wikimt_x(tmp_path / "wx", n=5), tmp_path)
    assert data.modalities() == ["sheet", "midi", "audio"]
    assert sorted(data.music["sheet"]) == ["0001", "0002", "0003", "0004", "0005"]
    assert data.music["sheet"]["0003"].read_text(encoding="utf-8").startswith("X:3")
    assert data.music["audio"]["0002"].name == "yt001xYz.wav"
    assert data.text_groups() == [
        ("background", "en"),
        ("analysis", "en"),
        ("description", "en"),
        ("scene", "en"),
        ("background", "de"),
    ]
    assert data.emergent
    german = [q for q in data.queries if q.language == "de"]
    assert [q.key for q in german] == ["0001", "0002", "0003", "0004", "0005"] and german[0].text.startswith(
        "[de] "
    )
    only = select_queries(data, ["scene"], ["en"])
    assert {(q.text_type, q.language) for q in only.queries} == {("scene", "en")} and len(only.queries) == 5


def test_wikimt_x_missing_field_names_file_line_and_field(tmp_path):
    root = wikimt_x(tmp_path / "wx", n=3, translations=(), with_midi=False)
    lines = (root / "wikimt-x-public.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[1])
    record["lead_sheet"] = record.pop("leadsheet")  # renamed
    lines[1] = json.dumps(record)
    (root / "wikimt-x-public.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"wikimt-x-public\.jsonl:2: missing field 'leadsheet'.*lead_sheet"):
        _load("wikimt-x", root, tmp_path)


def test_wikimt_x_without_audio_id_or_with_short_translation_fails_loudly(tmp_path):
    root = wikimt_x(tmp_path / "wx", n=3, translations=("ru",), with_midi=False)
    path = root / "wikimt-x-public.ru.jsonl"
    path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ru\.jsonl: has 1 records but wikimt-x-public\.jsonl has 3"):
        _load("wikimt-x", root, tmp_path)
    path.unlink()
    lines = [
        json.loads(line) for line in (root / "wikimt-x-public.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    del lines[0]["id"]
    (root / "wikimt-x-public.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8"
    )
    with pytest.raises(InputError, match=r":1: no audio id: none of the fields audio, youtube_id, ytid, id"):
        _load("wikimt-x", root, tmp_path)


def test_song_describer_valid_subset_several_captions_per_track(tmp_path):
    root = song_describer(tmp_path / "sdd", tracks=4)
    valid = _load("song-describer", root, tmp_path)
    everything = _load("song-describer", root, tmp_path, "all")
    assert len(valid.queries) == 4 and len(everything.queries) == 6
    assert sorted(everything.music["audio"]) == ["1000", "1001", "1002", "1003"]
    assert everything.music["audio"]["1002"] == root / "audio" / "00" / "1002.2min.mp3"
    assert [q.key for q in everything.queries].count("1000") == 2
    assert {q.id for q in everything.queries} == {str(i) for i in range(6)}


def test_song_describer_renamed_column_and_missing_audio_folder(tmp_path):
    root = song_describer(tmp_path / "sdd", tracks=2)
    csv_path = root / "song_describer.csv"
    csv_path.write_text(
        csv_path.read_text(encoding="utf-8").replace("track_id", "trackid", 1), encoding="utf-8"
    )
    with pytest.raises(
        InputError,
        match=r"song_describer\.csv: missing column\(s\) track_id; the header has: caption_id, trackid",
    ):
        _load("song-describer", root, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=r"no song_describer\.csv here"):
        _load("song-describer", empty, tmp_path)


def test_midicaps_test_split_by_default(tmp_path):
    root = midicaps(tmp_path / "mc", n=6)
    test = _load("midicaps", root, tmp_path)
    assert len(test.queries) == 4 and set(test.music) == {"midi"}
    assert all(p.is_file() for p in test.music["midi"].values())
    assert len(_load("midicaps", root, tmp_path, "all").queries) == 6
    path = root / "train.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"caption"', '"captions"', 1), encoding="utf-8")
    with pytest.raises(InputError, match=r"train\.json:1: missing field 'caption'"):
        _load("midicaps", root, tmp_path)


def test_wikimt_reads_melody_and_text(tmp_path):
    data = _load("wikimt", wikimt(tmp_path / "wm", n=4), tmp_path)
    assert data.text_groups() == [("text", "en")] and len(data.music["sheet"]) == 4
    path = tmp_path / "wm" / "wikimusictext.jsonl"
    path.write_text(path.read_text(encoding="utf-8").replace('"melody"', '"abc"'), encoding="utf-8")
    with pytest.raises(InputError, match="missing field 'melody'"):
        _load("wikimt", tmp_path / "wm", tmp_path)


def test_musiccaps_leaves_out_clips_not_downloaded_and_subsets(tmp_path):
    root = musiccaps(tmp_path / "mcaps", n=5, missing=1)
    data = _load("musiccaps", root, tmp_path)
    assert len(data.queries) == 4 and any("1 rows left out" in note for note in data.notes)
    assert [q.key for q in _load("musiccaps", root, tmp_path, "eval").queries] == [
        "-mc00_Ab",
        "-mc01_Ab",
        "-mc02_Ab",
    ]
    assert [q.key for q in _load("musiccaps", root, tmp_path, "balanced").queries] == ["-mc00_Ab", "-mc02_Ab"]


def test_manifest_several_texts_translations_and_absolute_paths(tmp_path):
    data = _load("manifest", manifest(tmp_path / "m", n=4), tmp_path)
    assert data.modalities() == ["sheet", "audio"]
    assert len([q for q in data.queries if q.language == "en"]) == 6  # two texts for p1 and p3
    assert {q.id for q in data.queries if q.key == "p1" and q.language == "en"} == {"p1#1", "p1#2"}
    with pytest.raises(InputError, match="no text type lyrics in manifest; it has: caption"):
        select_queries(data, ["lyrics"], None)


@pytest.mark.parametrize("dataset, maker", [("manifest", manifest), ("song-describer", song_describer)])
def test_a_data_file_saved_with_a_mark_or_as_utf16_loads_as_the_plain_one(tmp_path, dataset, maker):
    root = maker(tmp_path / "plain")  # the data file itself, or the folder holding it
    data_file = root if root.is_file() else next(p for p in sorted(root.rglob("*")) if p.suffix == ".csv")
    plain = _load(dataset, root, tmp_path)
    text = data_file.read_text(encoding="utf-8")
    for encoded in (b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16")):
        data_file.write_bytes(encoded)
        again = _load(dataset, root, tmp_path)
        assert again.queries == plain.queries and again.music == plain.music
    data_file.write_bytes(text.encode().replace(b"\n", b"\n\xe9", 1))  # Latin-1 after line 1
    with pytest.raises(InputError, match="not UTF-8 text") as info:
        _load(dataset, root, tmp_path)
    assert info.value.path == str(data_file)


def test_manifest_unknown_modality_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"id": "a", "music": {"score": "a.abc"}, "texts": {"t": "x"}}) + "\n", encoding="utf-8"
    )
    with pytest.raises(InputError, match=r"bad\.jsonl:1: music modalities must be among sheet, midi, audio"):
        _load("manifest", path, tmp_path)


def test_modalities_without_a_tower_are_left_out_with_a_note(tmp_path):
    from types import SimpleNamespace

    from clamp3.evaluate.benchmarks.runner import without_missing_towers

    data = _load("wikimt-x", wikimt_x(tmp_path / "wx", n=2, translations=()), tmp_path)
    clamp2_like = SimpleNamespace(config=SimpleNamespace(name="clamp2", modalities=("text", "symbolic")))
    kept = without_missing_towers(data, clamp2_like)
    assert kept.modalities() == ["sheet", "midi"]
    assert "model 'clamp2' has no audio tower: audio left out" in kept.notes


def test_multi_line_texts_are_embedded_as_the_official_txt_inputs():
    from clamp3.evaluate.benchmarks.embedder import as_text_file

    assert as_text_file("one line") == "one line"
    assert as_text_file("first\nsecond\n\nfirst\n") == "first</s>second"


def test_vector_cache_survives_reopening_a_bad_shard_and_compaction(tmp_path):
    import numpy as np

    from clamp3.evaluate.benchmarks.embedder import VectorCache, cached, file_key, text_key

    calls = []

    def compute(idx):
        calls.append(list(idx))
        return [np.full(4, float(i), np.float32) if i != 2 else InputError("x", "bad") for i in idx]

    keys = [text_key(f"t{i}") for i in range(5)]
    cache = VectorCache(tmp_path, "tiny:abc-float32")
    first = cached(cache, keys, compute)
    assert isinstance(first[2], InputError) and first[4][0] == 4.0
    (cache.folder / "broken.npz").write_bytes(b"not a zip")
    again = VectorCache(tmp_path, "tiny:abc-float32")  # a rerun: the bad shard is skipped, the rest read
    assert len(again) == 4
    second = cached(again, keys, compute)
    assert calls[-1] == [2]  # only the failed input is tried again
    assert [float(v[0]) for i, v in enumerate(second) if i != 2] == [0.0, 1.0, 3.0, 4.0]
    again.add([text_key("extra")], [np.zeros(4, np.float32)])
    again.compact()
    assert len([p for p in again.folder.glob("*.npz") if p.name != "broken.npz"]) == 1
    assert len(VectorCache(tmp_path, "tiny:abc-float32")) == 5
    assert file_key(tmp_path / "a.wav") != file_key(tmp_path / "b.wav")
