"""``clamp3 embed``: layout, manifest, errors, resume after SIGKILL, shards, parity through the CLI."""

from __future__ import annotations

import contextlib
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

import clamp3.encode
from clamp3.cli.main import main
from clamp3.embed_folder import read_manifests
from clamp3.utils.errors import CheckpointError, InputError
from clamp3.utils.io import read_jsonl

_PREPARE_SYMBOLIC = clamp3.encode.prepare_symbolic_file


def _text_tree(root: Path, n: int) -> None:
    words = ["waltz", "chorale", "fugue", "lullaby", "march", "nocturne", "Volkslied", "canción"]
    for i in range(n):
        sub = root / f"group{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        line = " ".join(words[(i + k) % len(words)] for k in range(1 + i % 5))
        (sub / f"t{i:03d}.txt").write_text(f"{line}\nnumber {i}\n", encoding="utf-8")


def _save_tiny(directory: Path, tokenizer, seed: int = 0, without: tuple[str, ...] = ()) -> Path:
    """A saved tiny model; ``without`` drops towers (a model like CLaMP 2 or M3)."""
    import torch

    from clamp3 import Clamp3Model
    from clamp3.config import load_preset

    config = load_preset("tiny")
    for tower in without:
        setattr(config, tower, None)
    config.name = "tiny" + "".join(f"-no-{t}" for t in without)
    torch.manual_seed(seed)
    Clamp3Model(config).save_pretrained(directory)
    tokenizer.save(directory)
    return directory


def _crash_on_marker(path, config, timeout=None):
    """Stands in for the symbolic preparation in workers: a file named *crash* kills its worker
    as a segfaulting converter or the OOM killer would."""
    if "crash" in Path(path).name:
        os._exit(1)
    return _PREPARE_SYMBOLIC(path, config, timeout)


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
    # A file counts as finished once the manifest records it: its .npy is written first, so a
    # kill between the two leaves a vector that the rerun writes again (at most one chunk's).
    recorded = {out / record.npy for record in read_manifests(out).values()}
    assert recorded <= set(partial) and len(partial) - len(recorded) <= 4
    finished_before = {p: partial[p] for p in recorded}

    subprocess.run([*cmd, str(out), *opts], check=True, env=env, capture_output=True)
    finished = sorted(p.relative_to(out) for p in out.rglob("*.npy"))
    assert finished == sorted(p.relative_to(reference) for p in reference.rglob("*.npy"))
    for rel in finished:
        np.testing.assert_allclose(np.load(out / rel), np.load(reference / rel), atol=1e-6)
    assert {p: p.stat().st_mtime_ns for p in recorded} == finished_before  # finished files were not redone
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
    # Indexed, the shards give the same rows and metadata as one process (rank 1 and 2's
    # manifests included: paths and modalities of every file).
    pytest.importorskip("faiss")
    from clamp3.index import build_index

    for name in ("one", "sharded"):
        build_index(tmp_path / name, tmp_path / f"{name}_idx", progress=False)
    ids = {name: read_jsonl(tmp_path / f"{name}_idx" / "ids.jsonl") for name in ("one", "sharded")}
    assert ids["sharded"] == ids["one"] and {r["modality"] for r in ids["one"]} == {"text"}
    assert all(r["path"].endswith(".txt") for r in ids["one"])
    metas = [json.loads((tmp_path / f"{n}_idx" / "meta.json").read_text()) for n in ("one", "sharded")]
    for field in ("model", "model_fingerprint", "input_root"):
        assert metas[0][field] == metas[1][field] and metas[0][field]


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


def test_errors_survive_a_pickle_round_trip():
    import pickle

    err = pickle.loads(pickle.dumps(InputError("a/b.mid", "corrupt MIDI file")))
    assert type(err) is InputError and (err.path, err.reason) == ("a/b.mid", "corrupt MIDI file")
    assert str(err) == "a/b.mid: corrupt MIDI file"
    ckpt = pickle.loads(pickle.dumps(CheckpointError("w.pth: missing keys: x")))
    assert type(ckpt) is CheckpointError and str(ckpt) == "w.pth: missing keys: x"


def test_workers_turn_bad_and_crashing_files_into_per_file_errors(
    tiny_model_dir, parity_dir, tmp_path, capsys, monkeypatch
):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    midi = parity_dir / "inputs/midi/m21_test12.mid"
    for name in ("a_good.mid", "b_crash.mid", "c_good.mid", "e_good.mid"):
        shutil.copy(midi, src / name)
    (src / "d_corrupt.mid").write_bytes(np.random.default_rng(0).bytes(3000))
    # An InputError raised in a worker reaches the parent (it once broke the pool on unpickling).
    args = ["embed", str(src), str(out), "--model", str(tiny_model_dir), "--workers", "2", "--no-progress"]
    monkeypatch.setattr(clamp3.encode, "prepare_symbolic_file", _crash_on_marker)
    assert main(args) == 1
    errors = {r["path"]: r["reason"] for r in read_jsonl(out / "errors.jsonl")}
    assert set(errors) == {"b_crash.mid", "d_corrupt.mid"}
    assert "worker process" in errors["b_crash.mid"] and "MIDI" in errors["d_corrupt.mid"]
    assert sorted(p.name for p in out.glob("*.npy")) == ["a_good.npy", "c_good.npy", "e_good.npy"]
    reference = tmp_path / "reference"
    monkeypatch.undo()
    assert main(["embed", str(src), str(reference), "--model", str(tiny_model_dir), "--no-progress"]) == 1
    for name in ("a_good.npy", "c_good.npy", "e_good.npy"):
        np.testing.assert_allclose(np.load(out / name), np.load(reference / name), atol=1e-6)
    assert "embedded 3, skipped 0 already done, failed 2" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_conversion_that_hangs_fails_that_file_after_the_timeout(
    tiny_model_dir, parity_dir, tmp_path, capsys, monkeypatch, workers
):
    import clamp3.preprocess

    real = clamp3.preprocess.load_symbolic

    def stuck_on_marker(path, config):
        if "stuck" in Path(path).name:
            while True:  # a converter that never returns and swallows what it can
                with contextlib.suppress(Exception):
                    time.sleep(60)
        return real(path, config)

    monkeypatch.setattr(clamp3.preprocess, "load_symbolic", stuck_on_marker)
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in ("a.mid", "b_stuck.mid", "c.mid"):
        shutil.copy(parity_dir / "inputs/midi/m21_test12.mid", src / name)
    args = ["embed", str(src), str(out), "--model", str(tiny_model_dir), "--no-progress"]
    start = time.monotonic()
    assert main([*args, "--workers", workers, "--timeout", "1"]) == 1
    assert time.monotonic() - start < 30
    errors = {r["path"]: r["reason"] for r in read_jsonl(out / "errors.jsonl")}
    assert errors == {"b_stuck.mid": "conversion took longer than 1 s (timeout)"}
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "c.npy"]


def test_resume_refuses_another_model_or_pooling(tiny_model_dir, tiny_tokenizer, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    _text_tree(src, 4)
    base = ["embed", str(src), str(out), "--no-progress", "--model"]
    assert main([*base, str(tiny_model_dir)]) == 0
    record = read_jsonl(out / "manifest.jsonl")[0]
    assert record["model"] == str(tiny_model_dir.resolve()) and record["pooled"] is True
    assert record["model_fingerprint"].startswith("tiny:") and record["input_root"] == str(src.resolve())

    assert main([*base, str(tiny_model_dir), "--unpooled"]) == 2
    err = capsys.readouterr().err
    assert "holds pooled embeddings, not unpooled; use a new folder or --overwrite" in err
    other = _save_tiny(tmp_path / "other", tiny_tokenizer, seed=1)
    assert main([*base, str(other)]) == 2
    err = capsys.readouterr().err
    assert f"come from model {tiny_model_dir.resolve()} [fingerprint tiny:" in err
    assert f"but this run from model {other.resolve()}" in err and "use a new folder or --overwrite" in err
    # The same weights at another path are the same model: the rerun skips everything.
    shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert main([*base, str(tmp_path / "copy")]) == 0
    assert "embedded 0, skipped 4" in capsys.readouterr().err
    # --overwrite replaces every output and record.
    assert main([*base, str(other), "--unpooled", "--overwrite"]) == 0
    records = read_jsonl(out / "manifest.jsonl")
    assert len(records) == 4 and all(r["model"] == str(other.resolve()) and not r["pooled"] for r in records)
    assert all(np.load(out / r["npy"]).ndim == 3 for r in records)


def test_output_and_earlier_outputs_inside_the_input_are_not_embedded(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "in"
    _text_tree(src, 5)
    base = ["--model", str(tiny_model_dir), "--no-progress"]
    assert main(["embed", str(src), str(src / "old_emb"), *base]) == 0
    assert main(["embed", str(src), str(src / "emb"), *base]) == 0
    assert "embedded 5, skipped 0 already done, failed 0 (of 5)" in capsys.readouterr().err
    assert main(["embed", str(src), str(src / "emb"), *base]) == 0
    assert "embedded 0, skipped 5 already done, failed 0 (of 5)" in capsys.readouterr().err
    assert sorted(r["path"] for r in read_jsonl(src / "emb" / "manifest.jsonl"))[0].startswith("group0/")
    # OUT = IN: a (1, D) vector passes for (1, n, D) features, so a rerun would embed the outputs
    # and overwrite them; refused before anything is written (also through another spelling)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    for out in (src, src / "group0" / ".."):
        assert main(["embed", str(src), str(out), *base]) == 2
        assert "the output folder is the input folder" in capsys.readouterr().err
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
    # ``embed one.txt one.npy`` expects a file; it made a folder named one.npy: refused instead.
    one = next(p for p in src.rglob("*.txt"))
    assert main(["embed", str(one), str(tmp_path / "one.npy"), *base]) == 2
    assert "one.npy: the output is a folder (it holds <name>.npy" in capsys.readouterr().err
    assert not (tmp_path / "one.npy").exists()


def test_failures_are_logged_when_they_happen_and_reruns_keep_only_current_ones(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import clamp3.embed_folder as embed_module
    from clamp3 import Clamp3Model, Clamp3Pipeline

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a_empty.txt").write_text("\n", encoding="utf-8")
    (src / "b_good.txt").write_text("a calm chorale\n", encoding="utf-8")
    (src / "c_empty.txt").write_text("", encoding="utf-8")
    model = Clamp3Model.from_pretrained(tiny_model_dir)
    seen_while_running = []
    real_embed = Clamp3Pipeline.embed_prepared

    def watching(*args, **kwargs):  # runs while b_good.txt is embedded, before the run ends
        seen_while_running.append(
            ([r["path"] for r in read_jsonl(out / "errors.jsonl")], capsys.readouterr().err)
        )
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(Clamp3Pipeline, "embed_prepared", watching)
    report = embed_module.embed_folder(model, src, out, chunk_size=1, show_progress=False)
    assert report.failed == 2 and report.embedded == 1
    logged, printed = next(entry for entry in seen_while_running if entry[0])
    assert logged == ["a_empty.txt"] and "error: a_empty.txt: empty file" in printed

    (src / "a_empty.txt").write_text("fixed now\n", encoding="utf-8")
    report = embed_module.embed_folder(model, src, out, chunk_size=1, show_progress=False)
    assert (report.embedded, report.skipped, report.failed) == (1, 1, 1)
    assert [r["path"] for r in read_jsonl(out / "errors.jsonl")] == ["c_empty.txt"]


def test_embed_one_file_and_an_empty_folder(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    query = tmp_path / "in" / "query.txt"
    query.write_text("a calm chorale\n", encoding="utf-8")
    base = ["--model", str(tiny_model_dir), "--no-progress"]
    assert main(["embed", str(query), str(tmp_path / "one"), *base]) == 0
    assert np.load(tmp_path / "one" / "query.npy").shape == (1, 32)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.docx").write_bytes(b"PK")
    capsys.readouterr()
    assert main(["embed", str(tmp_path / "empty"), str(tmp_path / "out"), *base]) == 1
    err = capsys.readouterr().err
    assert "warning:" in err and "no supported files to embed" in err
    assert main(["embed", str(tmp_path / "missing"), str(tmp_path / "out"), *base]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_a_model_without_the_tower_fails_per_file(tiny_tokenizer, parity_dir, tmp_path):
    from clamp3 import Clamp3Model
    from clamp3.embed_folder import embed_folder

    no_audio = _save_tiny(tmp_path / "no_audio", tiny_tokenizer, without=("audio",))
    src = tmp_path / "in"
    src.mkdir()
    np.save(src / "features.npy", np.ones((1, 4, 32), np.float32))
    (src / "query.txt").write_text("a calm chorale\n", encoding="utf-8")
    shutil.copy(parity_dir / "inputs/midi/m21_test12.mid", src / "perf.mid")
    report = embed_folder(Clamp3Model.from_pretrained(no_audio), src, tmp_path / "out", show_progress=False)
    assert report.embedded == 2
    [(path, reason)] = report.failures
    assert path == "features.npy" and "model 'tiny-no-audio' has no audio tower" in reason


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--batch-size", "0", "must be at least 1"),
        ("--chunk-size", "-3", "must be at least 1"),
        ("--workers", "-1", "0 or more"),
    ],
)
def test_embed_rejects_bad_counts(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as info:
        main(["embed", str(tmp_path), str(tmp_path / "out"), option, value])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_unavailable_device_is_a_one_line_error(tiny_model_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _text_tree(tmp_path / "in", 1)
    args = ["embed", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    assert main([*args, "--device", "cuda"]) == 2
    assert "error: device cuda: CUDA is not available" in capsys.readouterr().err
    assert main([*args, "--device", "gpu"]) == 2
    assert "error: device gpu: not a device name" in capsys.readouterr().err


def test_embed_many_isolates_an_item_the_towers_reject(tmp_path):
    """A batch that fails is embedded item by item: only the item at fault fails, in its place."""
    import numpy as np

    from clamp3.encode import Preparer
    from clamp3.inputs import Prepared

    class Picky:  # a pipeline whose towers refuse the item holding 13
        def prepare_file(self, path, modality=None, timeout=None):
            return Prepared("text", np.array([int(path.read_text())]))

        def embed_prepared(self, items, batch_size=32, pooled=True):
            if any(int(item.data[0]) == 13 for item in items):
                raise RuntimeError("index out of range")
            return [np.full(2, float(item.data[0])) for item in items]

    files = []
    for value in (1, 13, 2):
        files.append(tmp_path / f"{value}.txt")
        files[-1].write_text(str(value))
    outcomes = Preparer(Picky()).embed_many([*files, tmp_path / "missing.txt"])
    assert [o[1][0] for o in (outcomes[0], outcomes[2])] == [1.0, 2.0]
    assert outcomes[1].path == str(files[1]) and outcomes[1].reason == "embedding failed: index out of range"
    assert outcomes[3].path == str(tmp_path / "missing.txt")  # a preparation failure, in its place
    assert outcomes[3].reason.startswith("preparation failed (FileNotFoundError")
