"""``clamp3 embed`` reruns over a library that lost files: listed and kept, or ``--prune``d, and
an index ``--sync`` afterwards takes them out of search."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.embed_folder import embed_folder, read_manifests
from clamp3.formats import read_manifest
from clamp3.utils.errors import InputError


def _library(root, n: int = 4):
    for i in range(n):
        (root / f"album{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"album{i % 2}" / f"song{i}.txt").write_text(f"a song number {i}\n", encoding="utf-8")


def test_a_rerun_lists_files_gone_from_the_input_and_keeps_their_embeddings(tiny_model_dir, tmp_path, capsys):
    lib, emb = tmp_path / "lib", tmp_path / "emb"
    _library(lib)
    assert main(["embed", str(lib), str(emb), "--model", str(tiny_model_dir), "--quiet"]) == 0
    (lib / "album1" / "song1.txt").unlink()
    capsys.readouterr()
    assert main(["embed", str(lib), str(emb), "--model", str(tiny_model_dir), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"warning: 1 file embedded before is gone from {lib} (e.g. album1/song1.txt)" in err
    assert (emb / "album1" / "song1.npy").is_file() and "album1/song1.txt" in read_manifests(emb)


def test_prune_deletes_records_and_vectors_and_a_sync_takes_them_out_of_the_index(
    tiny_model_dir, tmp_path, capsys
):
    lib, emb, idx = tmp_path / "lib", tmp_path / "emb", tmp_path / "idx"
    _library(lib)
    model = ["--model", str(tiny_model_dir), "--quiet"]
    assert main(["embed", str(lib), str(emb), *model]) == 0
    assert main(["index", str(emb), str(idx), "--quiet"]) == 0
    (lib / "album0" / "song0.txt").unlink()
    (lib / "album1" / "song3.txt").rename(lib / "album1" / "song3-live.txt")  # a rename is a new file
    kept = np.load(emb / "album0" / "song2.npy")
    capsys.readouterr()
    assert main(["embed", str(lib), str(emb), *model, "--prune"]) == 0
    err = capsys.readouterr().err
    assert f"pruned the embeddings of 2 files gone from {lib} (e.g. album0/song0.txt)" in err
    assert "embedded 1, skipped 2 already done" in err
    assert set(read_manifests(emb)) == {"album0/song2.txt", "album1/song1.txt", "album1/song3-live.txt"}
    assert not (emb / "album0" / "song0.npy").exists() and not (emb / "album1" / "song3.npy").exists()
    np.testing.assert_array_equal(np.load(emb / "album0" / "song2.npy"), kept)  # the rest untouched
    assert main(["index", str(emb), str(idx), "--sync", "--quiet"]) == 0
    assert "1 added, 0 replaced, 2 removed" in capsys.readouterr().err
    assert main(["search", "a song", str(idx), "--top-k", "10", "--json"]) == 0
    found = {hit["path"] for hit in json.loads(capsys.readouterr().out)}
    assert found == {"album0/song2.txt", "album1/song1.txt", "album1/song3-live.txt"}
    assert main(["embed", str(lib), str(emb), *model, "--prune"]) == 0  # nothing left to prune
    assert "pruned" not in capsys.readouterr().err


def test_prune_keeps_a_vector_another_file_took_over_and_what_other_inputs_embedded(
    tiny_model_dir, tmp_path
):
    from clamp3 import Clamp3Pipeline

    pipeline = Clamp3Pipeline.from_pretrained(tiny_model_dir)
    lib, other, emb = tmp_path / "lib", tmp_path / "other", tmp_path / "emb"
    _library(lib, 2)
    (other / "extra").mkdir(parents=True)
    (other / "extra" / "notes.txt").write_text("liner notes\n", encoding="utf-8")
    embed_folder(pipeline, lib, emb, show_progress=False)
    embed_folder(pipeline, other, emb, show_progress=False)  # another input into the same folder
    (lib / "album0" / "song0.txt").unlink()  # embedded again without --prune: its record stays,
    (lib / "album0" / "song0.abc").write_text("X:1\nL:1/8\nK:C\nCDEF|\n")  # and this takes song0.npy
    assert embed_folder(pipeline, lib, emb, show_progress=False).embedded == 1
    taken = np.load(emb / "album0" / "song0.npy")
    report = embed_folder(pipeline, lib, emb, show_progress=False, prune=True)
    assert report.vanished == ["album0/song0.txt"] and report.pruned and report.embedded == 0
    assert read_manifests(emb)["album0/song0.abc"].npy == "album0/song0.npy"
    np.testing.assert_array_equal(np.load(emb / "album0" / "song0.npy"), taken)  # not deleted
    paths = {r.path for r in read_manifest(emb)}
    assert "album0/song0.txt" not in paths and "extra/notes.txt" in paths  # not this input's to judge
    assert (emb / "extra" / "notes.npy").is_file()


def test_prune_refuses_an_empty_input_and_a_distributed_launch(tiny_model_dir, tmp_path):
    from clamp3 import Clamp3Pipeline

    pipeline = Clamp3Pipeline.from_pretrained(tiny_model_dir)
    lib, emb = tmp_path / "lib", tmp_path / "emb"
    _library(lib, 2)
    embed_folder(pipeline, lib, emb, show_progress=False)
    for path in sorted(lib.rglob("*"), reverse=True):  # as an unmounted drive shows it: empty
        path.unlink() if path.is_file() else path.rmdir()
    refused = "is empty: --prune would delete the 2 embeddings made from it"
    with pytest.raises(InputError, match=refused) as info:
        embed_folder(pipeline, lib, emb, show_progress=False, prune=True)
    assert info.value.path == str(lib) and len(read_manifests(emb)) == 2
    with pytest.raises(InputError, match="--prune runs in one process"):
        embed_folder(pipeline, lib, emb, show_progress=False, prune=True, shard=(1, 2))
    report = embed_folder(pipeline, lib, emb, show_progress=False)  # without --prune: listed only
    assert report.vanished == ["album0/song0.txt", "album1/song1.txt"] and not report.pruned
