"""``clamp3 index`` / ``clamp3 search`` on folders of numpy vectors, and embed -> index -> search
with the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embedding_support import manifest_record, write_manifest

from clamp3.cli.main import main

pytest.importorskip("faiss")


def _folder(root, rng, n=60, dim=32):
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    records = []
    for i in range(n):
        rel = f"{'a' if i < n // 2 else 'b/c'}/item{i:03d}"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / f"{rel}.npy", vectors[i][None, :])
        modality = "symbolic" if i % 2 else "audio"
        records.append(manifest_record(f"{rel}.mid", f"{rel}.npy", modality))
    write_manifest(root, records)
    return vectors


@pytest.mark.parametrize("approximate", [None, "hnsw"])
def test_index_then_search_finds_the_planted_match(tmp_path, rng, capsys, approximate):
    vectors = _folder(tmp_path / "emb", rng)
    extra = ["--approximate", approximate] if approximate else []
    assert main(["index", str(tmp_path / "emb"), str(tmp_path / "idx"), "--quiet", *extra]) == 0
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["count"] == 60 and meta["kind"] == (approximate or "flat") and meta["model"] == "m"
    # The query is a perturbed copy of item 41, saved as a (1, D) embedding: no model needed.
    np.save(
        tmp_path / "query.npy", (vectors[41] + 0.05 * rng.standard_normal(32)).astype(np.float32)[None, :]
    )
    capsys.readouterr()
    assert main(["search", str(tmp_path / "query.npy"), str(tmp_path / "idx"), "--top-k", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["path"] == "b/c/item041.mid" and results[0]["modality"] == "symbolic"
    assert results[0]["score"] > 0.99 and results[0]["score"] >= results[1]["score"]
    assert main(["search", str(tmp_path / "query.npy"), str(tmp_path / "idx"), "--modality", "audio"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "modality", "path"]
    assert len(table) == 11 and all(line.split()[2] == "audio" for line in table[1:])


def test_index_refuses_overwrite_appends_and_reports_bad_files(tmp_path, rng, capsys):
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    _folder(emb, rng, n=20)
    assert main(["index", str(emb), str(idx), "--quiet"]) == 0
    assert main(["index", str(emb), str(idx), "--quiet"]) == 2
    assert "pass --append" in capsys.readouterr().err
    # New files plus a broken one: append adds the new ones, reports the broken one, exit 1.
    np.save(emb / "new1.npy", rng.standard_normal((1, 32)).astype(np.float32))
    (emb / "broken.npy").write_bytes(b"garbage")
    np.save(emb / "zero.npy", np.zeros((1, 32), np.float32))  # refused alone, as the broken file
    assert main(["index", str(emb), str(idx), "--append", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 added, 20 already there, 2 failed" in err and "broken.npy: unreadable .npy" in err
    assert "zero.npy: embedding is all zeros" in err
    assert json.loads((idx / "meta.json").read_text())["count"] == 21
    assert "broken.npy" in (idx / "errors.jsonl").read_text()
    # A folder of another dimension cannot be appended.
    np.save(tmp_path / "other.npy", np.ones((1, 8), np.float32))
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "other.npy").rename(other / "x.npy")
    assert main(["index", str(other), str(idx), "--append", "--quiet"]) == 2
    assert "dimension 8 differs from the expected 32" in capsys.readouterr().err


def test_append_names_indexed_items_whose_files_changed(tmp_path, rng, capsys):
    """Same keys, other files (an edited and re-embedded file, or another tree with the same
    layout): --append keeps the indexed vectors and says so; --sync replaces them."""
    emb, idx = tmp_path / "emb", tmp_path / "idx"
    _folder(emb, rng, n=6)
    assert main(["index", str(emb), str(idx), "--quiet"]) == 0
    edited = [manifest_record(f"a/item{i:03d}.mid", f"a/item{i:03d}.npy", sha256=f"{i:064x}") for i in (1, 2)]
    write_manifest(emb, edited)  # a rerun of embed appends the newer records
    capsys.readouterr()
    assert main(["index", str(emb), str(idx), "--append", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "0 added, 6 already there" in err
    assert "2 already indexed items have changed files (sha256; e.g. a/item001)" in err
    assert main(["index", str(emb), str(idx), "--sync", "--quiet"]) == 0
    assert "2 replaced" in capsys.readouterr().err
    assert main(["index", str(emb), str(idx), "--append", "--quiet"]) == 0
    assert "changed files" not in capsys.readouterr().err


def test_search_text_without_a_model_is_a_clear_error(tmp_path, rng, capsys):
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "x.npy", rng.standard_normal((1, 8)).astype(np.float32))
    assert main(["index", str(emb), str(tmp_path / "idx"), "--quiet"]) == 0
    assert main(["search", "a calm piano piece", str(tmp_path / "idx")]) == 2
    assert "pass --model" in capsys.readouterr().err


def test_embed_index_search_end_to_end(tiny_model_dir, parity_dir, tmp_path, capsys):
    """Folder -> clamp3 embed (tiny model) -> clamp3 index -> clamp3 search: the planted file first."""
    import shutil

    src, emb, idx = tmp_path / "in", tmp_path / "emb", tmp_path / "idx"
    (src / "scores").mkdir(parents=True)
    (src / "texts").mkdir()
    abc = sorted((parity_dir / "prep" / "abc_interleaved").glob("*.abc"))[:4]
    for path in abc:
        shutil.copy(path, src / "scores" / path.name)
    sentences = {
        "waltz": "a melancholy waltz for solo piano",
        "lied": "ein fröhliches Volkslied in G-Dur",
        "fugue": "une fugue pour orgue en ré mineur",
        "chorale": "Bach chorale harmonisation for four voices",
    }
    for name, text in sentences.items():
        (src / "texts" / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    features = np.random.default_rng(3).standard_normal((1, 5, 32)).astype(np.float32)  # MERT-like rows
    (src / "audio").mkdir()
    np.save(src / "audio" / "track.npy", features)
    np.save(tmp_path / "query_features.npy", features)
    assert main(["embed", str(src), str(emb), "--model", str(tiny_model_dir), "--no-progress"]) == 0
    assert main(["index", str(emb), str(idx), "--quiet"]) == 0
    capsys.readouterr()
    # Text query; the model id comes from the index (the manifest recorded it).
    assert main(["search", sentences["fugue"], str(idx), "--top-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == "texts/fugue.txt" and hits[0]["modality"] == "text"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4) and hits[1]["score"] < hits[0]["score"]
    # Music query: a score file from outside the index finds its copy inside.
    args = [
        "search",
        str(abc[2]),
        str(idx),
        "--model",
        str(tiny_model_dir),
        "--json",
        "--modality",
        "symbolic",
    ]
    assert main(args) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == f"scores/{abc[2].name}" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 4 and {h["modality"] for h in hits} == {"symbolic"}
    # A (1, n, F) .npy query is audio features (not a stored embedding): encoded by the audio tower.
    assert main(["search", str(tmp_path / "query_features.npy"), str(idx), "--json", "--top-k", "1"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == "audio/track.npy" and hits[0]["modality"] == "audio"
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    # One vector of another size: named as such, not as malformed audio features.
    np.save(tmp_path / "other_model.npy", np.ones((1, 16), np.float32))
    assert main(["search", str(tmp_path / "other_model.npy"), str(idx)]) == 2
    assert "holds one 16-d vector; this index holds 32-d embeddings" in capsys.readouterr().err


def test_search_from_another_directory_uses_the_recorded_model(
    tiny_model_dir, tmp_path, monkeypatch, capsys, caplog
):
    """The manifest records the model's absolute path: typed as a relative `tiny`, it still
    loads when `search` runs elsewhere."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "tiny")
    src = tmp_path / "in"
    src.mkdir()
    for name, text in {"waltz": "a melancholy waltz for solo piano", "fugue": "une fugue pour orgue"}.items():
        (src / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["embed", "in", "emb", "--model", "tiny", "--no-progress"]) == 0
    assert main(["index", "emb", "idx", "--quiet"]) == 0
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["model"] == str(tmp_path / "tiny") and meta["model_fingerprint"].startswith("tiny:")
    assert meta["input_root"] == str(src)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["search", "une fugue pour orgue", str(tmp_path / "idx"), "--json", "--top-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == "fugue.txt"
    # Another model's weights (same architecture) for the query: answered, with a warning.
    from clamp3 import Clamp3Model

    other = Clamp3Model.from_preset("tiny", seed=5)
    other.save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "tiny" / "tokenizer.json", tmp_path / "other" / "tokenizer.json")
    args = ["search", "une fugue", str(tmp_path / "idx"), "--model", str(tmp_path / "other"), "--json"]
    with caplog.at_level("WARNING", logger="clamp3"):
        assert main(args) == 0
    assert "is not the model that embedded the index" in caplog.text


def test_search_with_a_model_lacking_the_text_tower_is_one_line(tiny_tokenizer, tmp_path, capsys):
    import torch

    from clamp3 import Clamp3Model
    from clamp3.config import load_preset

    config = load_preset("tiny")
    config.name, config.text = "tiny-no-text", None
    torch.manual_seed(0)
    Clamp3Model(config).save_pretrained(tmp_path / "m3like")
    emb = tmp_path / "emb"
    emb.mkdir()
    np.save(emb / "x.npy", np.ones((1, 32), np.float32))
    assert main(["index", str(emb), str(tmp_path / "idx"), "--quiet"]) == 0
    capsys.readouterr()
    args = ["search", "a calm piano piece", str(tmp_path / "idx"), "--model", str(tmp_path / "m3like")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model 'tiny-no-text' has no text tower" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--top-k", "0"], "must be at least 1"), (["--modality", "sheet"], "invalid choice: 'sheet'")],
)
def test_search_rejects_bad_options(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        main(["search", "a waltz", str(tmp_path), *extra])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_cli_logs_no_library_info_lines_but_keeps_its_own(tmp_path, rng):
    """FAISS's loader logs INFO lines on import; `clamp3 index` shows only clamp3's own INFO."""
    import os
    import subprocess
    import sys

    _folder(tmp_path / "emb", rng, n=40)
    cmd = [sys.executable, "-m", "clamp3.cli.main", "index", str(tmp_path / "emb"), str(tmp_path / "idx")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*cmd, "--quiet", "--approximate", "hnsw"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    info = [line for line in run.stderr.splitlines() if " INFO " in line]
    assert info and all(" INFO clamp3." in line for line in info)
    verbose = subprocess.run(
        [*cmd[:3], "-v", *cmd[3:-1], str(tmp_path / "idx2")], env=env, capture_output=True, text=True
    )
    assert verbose.returncode == 0 and " DEBUG faiss.loader" in verbose.stderr
