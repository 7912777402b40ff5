"""``clamp3 embed``: layout, manifest, errors, resume after SIGKILL, shards, parity through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.utils.io import read_jsonl


def _text_tree(root: Path, n: int) -> None:
    words = ["waltz", "chorale", "fugue", "lullaby", "march", "nocturne", "Volkslied", "canción"]
    for i in range(n):
        sub = root / f"group{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        line = " ".join(words[(i + k) % len(words)] for k in range(1 + i % 5))
        (sub / f"t{i:03d}.txt").write_text(f"{line}\nnumber {i}\n", encoding="utf-8")


def test_folder_layout_manifest_and_bad_files(tiny_model_dir, parity_dir, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "scores").mkdir(parents=True)
    shutil.copy(parity_dir / "prep/abc_interleaved/bach_bwv66_6.abc", src / "scores/chorale.abc")
    shutil.copy(parity_dir / "inputs/midi/m21_test12.mid", src / "scores/perf.mid")
    np.save(src / "feat.npy", np.ones((4, 32), dtype=np.float32))
    (src / "query.txt").write_text("a calm chorale\n", encoding="utf-8")
    (src / "empty.txt").write_text("", encoding="utf-8")
    (src / "scores/broken.mid").write_bytes(b"MThd\x00\x00")
    (src / "scores/zero.xml").write_bytes(b"")
    (src / "scores/chorale.mtf").write_text("ticks_per_beat 480\nnote_on 0 0 60 90", encoding="utf-8")
    (src / "notes.docx").write_bytes(b"ignored: not a supported extension")

    code = main(["embed", str(src), str(out), "--model", str(tiny_model_dir), "--no-progress"])
    assert code == 1  # some files failed
    arrays = {p.relative_to(out).as_posix(): np.load(p) for p in out.rglob("*.npy")}
    assert sorted(arrays) == ["feat.npy", "query.npy", "scores/chorale.npy", "scores/perf.npy"]
    assert all(a.shape == (1, 32) and a.dtype == np.float32 for a in arrays.values())
    manifest = {r["path"]: r for r in read_jsonl(out / "manifest.jsonl")}
    assert manifest["scores/perf.mid"]["modality"] == "symbolic"
    assert manifest["feat.npy"]["n_items"] == 6 and manifest["feat.npy"]["modality"] == "audio"
    assert len(manifest["query.txt"]["sha256"]) == 64
    errors = {r["path"]: r["reason"] for r in read_jsonl(out / "errors.jsonl")}
    assert set(errors) == {"empty.txt", "scores/broken.mid", "scores/zero.xml", "scores/chorale.mtf"}
    assert "already belongs to scores/chorale.abc" in errors["scores/chorale.mtf"]
    stderr = capsys.readouterr().err
    assert "scores/broken.mid" in stderr and "failed 4" in stderr

    # A rerun skips everything already embedded and reports the same failures.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert main(["embed", str(src), str(out), "--model", str(tiny_model_dir), "--no-progress"]) == 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")} == before
    assert "embedded 0, skipped 4" in capsys.readouterr().err


def test_sigkilled_embed_resumes_to_the_same_result(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    _text_tree(src, 120)
    cmd = [sys.executable, "-m", "clamp3.cli.main", "embed", str(src)]
    opts = ["--model", str(tiny_model_dir), "--no-progress", "--chunk-size", "4", "--batch-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "reference"
    subprocess.run([*cmd, str(reference), *opts], check=True, env=env, capture_output=True)

    out = tmp_path / "out"
    proc = subprocess.Popen(
        [*cmd, str(out), *opts], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while len(list(out.rglob("*.npy"))) < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = {p: p.stat().st_mtime_ns for p in out.rglob("*.npy")}
    assert 0 < len(partial) < 120, "the kill should land mid-run"
    for p in partial:
        assert np.load(p).shape == (1, 32)  # no truncated .npy

    subprocess.run([*cmd, str(out), *opts], check=True, env=env, capture_output=True)
    finished = sorted(p.relative_to(out) for p in out.rglob("*.npy"))
    assert finished == sorted(p.relative_to(reference) for p in reference.rglob("*.npy"))
    for rel in finished:
        np.testing.assert_allclose(np.load(out / rel), np.load(reference / rel), atol=1e-6)
    assert {p: p.stat().st_mtime_ns for p in partial} == partial  # finished files were not redone
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert len({r["path"] for r in read_jsonl(out / "manifest.jsonl")}) == 120


def test_shards_together_equal_one_process(tiny_model_dir, tmp_path):
    from clamp3 import Clamp3Model
    from clamp3.embed_folder import embed_folder

    src = tmp_path / "in"
    _text_tree(src, 10)
    model = Clamp3Model.from_pretrained(tiny_model_dir)
    single = embed_folder(model, src, tmp_path / "one", show_progress=False)
    assert single.embedded == 10
    for rank in range(3):
        embed_folder(model, src, tmp_path / "sharded", shard=(rank, 3), show_progress=False)
    assert (tmp_path / "sharded" / "manifest.rank-2.jsonl").is_file()
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npy"))
    three = sorted(p.relative_to(tmp_path / "sharded") for p in (tmp_path / "sharded").rglob("*.npy"))
    assert one == three
    for rel in one:
        np.testing.assert_allclose(
            np.load(tmp_path / "one" / rel), np.load(tmp_path / "sharded" / rel), atol=1e-6
        )


@pytest.mark.parity
def test_cli_embed_reproduces_the_official_global_vectors(parity_checkpoint, parity_dir, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(parity_dir / "prep" / "abc_interleaved", src / "abc")
    shutil.copytree(parity_dir / "prep" / "mtf", src / "mtf")
    shutil.copytree(parity_dir / "model" / "inputs" / "audio", src / "audio")
    out = tmp_path / "out"
    assert main(["embed", str(src), str(out), "--model", str(parity_checkpoint), "--no-progress"]) == 0
    entries = json.loads((parity_dir / "model" / "manifest.json").read_text())
    checked = 0
    for entry in entries:
        if entry["modality"] == "text":
            continue  # text parity inputs are token ids (no XLM-R tokenizer offline): see test_model_parity
        folder = {"symbolic": "abc" if entry["input"].endswith(".abc") else "mtf", "audio": "audio"}[
            entry["modality"]
        ]
        got = np.load(out / folder / f"{entry['name']}.npy")
        assert got.shape == (1, 768) and got.dtype == np.float32
        np.testing.assert_allclose(got, np.load(parity_dir / entry["expected_global"]), atol=1e-4, rtol=1e-4)
        checked += 1
    assert checked == 21
