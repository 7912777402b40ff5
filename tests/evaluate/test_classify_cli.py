"""``clamp3 probe train`` / ``clamp3 probe predict`` on embedding folders in the ``clamp3 embed`` layout."""

from __future__ import annotations

import json

import embedding_support
import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.evaluate.probe import LinearProbe
from clamp3.utils.errors import InputError

CLASSES = ["barock", "jazz", "民謡"]


def write_embedding_folder(root, vectors, relpaths, manifest=True):
    """``root/<relpath without extension>.npy`` (1, D) float32 + manifest.jsonl, as ``clamp3 embed`` writes."""
    return embedding_support.write_embedding_folder(
        root, [(rel, "symbolic" if manifest else None, v) for rel, v in zip(relpaths, vectors)]
    )


@pytest.fixture()
def labelled(tmp_path, rng):
    """60 items per class in class folders; clusters well apart."""
    centres = rng.normal(size=(len(CLASSES), 16)) * 4
    y = np.repeat(np.arange(len(CLASSES)), 60)
    x = centres[y] + rng.normal(size=(len(y), 16))
    rel = [f"{CLASSES[c]}/piece{i:03d}.mid" for i, c in enumerate(y)]
    return write_embedding_folder(tmp_path / "emb", x, rel), x, y, rel


def test_probe_train_and_predict_from_folders(labelled, tmp_path):
    emb, x, y, rel = labelled
    out = tmp_path / "probe"
    assert main(["probe", "train", str(emb), str(out), "--labels-from-folders", "--no-progress"]) == 0
    config = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert config["format"] == "clamp3-linear-probe" and config["task"] == "single-label"
    assert config["labels"] == sorted(CLASSES) and config["input_dim"] == 16
    assert config["metrics"]["val"]["accuracy"] >= 0.95
    assert config["data"]["counts"] == {c: 60 for c in CLASSES}
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    preds = tmp_path / "preds.json"
    plot = tmp_path / "test_confusion.png"
    argv = ["probe", "predict", str(out), str(emb), str(preds), "--labels-from-folders", "--plot", str(plot)]
    assert main([*argv, "--no-progress"]) == 0
    result = json.loads(preds.read_text(encoding="utf-8"))
    assert [p["path"] for p in result["predictions"]] == sorted(rel)
    assert all(len(p["top"]) == 3 and p["top"][0]["label"] == p["label"] for p in result["predictions"])
    assert all(abs(sum(t["probability"] for t in p["top"]) - 1) < 1e-4 for p in result["predictions"])
    assert result["metrics"]["accuracy"] >= 0.95 and result["metrics"]["n"] == len(y)
    assert plot.is_file()

    # the saved probe gives exactly the predictions of the CLI
    probe = LinearProbe.load(out)
    order = np.argsort(rel)
    expected = [probe.labels[i] for i in probe.predict(x[order].astype(np.float32))]
    assert [p["label"] for p in result["predictions"]] == expected


def test_probe_with_csv_labels_and_multi_label(tmp_path, rng):
    n, dim, tags = 240, 12, ["calm", "dark", "fast"]
    y = rng.random((n, len(tags))) < 0.4
    x = y.astype(np.float64) @ rng.normal(size=(len(tags), dim)) * 3 + rng.normal(size=(n, dim))
    rel = [f"p{i:03d}.abc" for i in range(n)]
    emb = write_embedding_folder(tmp_path / "emb", x, rel, manifest=False)
    rows = ["path,labels"] + [
        ",".join([r] + [t for t, on in zip(tags, row) if on])
        for r, row in zip(rel, y)  # bare path = no tags
    ]
    csv = tmp_path / "tags.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "tagger"
    argv = ["probe", "train", str(emb), "--labels", str(csv), str(out), "--multi-label", "--no-progress"]
    assert main(argv) == 0
    config = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert config["task"] == "multi-label" and config["thresholds"] == [0.5, 0.5, 0.5]
    assert config["metrics"]["val"]["mAP"] > 0.9
    assert main(["probe", "predict", str(out), str(emb), str(tmp_path / "p.json"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["predictions"][0]
    assert set(record["probabilities"]) == set(tags) and set(record["labels"]) <= set(tags)


def test_probe_predict_rejects_other_dimension(labelled, tmp_path, rng, capsys):
    emb, *_ = labelled
    out = tmp_path / "probe"
    main(["probe", "train", str(emb), str(out), "--labels-from-folders", "--epochs", "2", "--no-progress"])
    other = write_embedding_folder(tmp_path / "other", rng.normal(size=(2, 8)), ["a.mid", "b.mid"])
    assert main(["probe", "predict", str(out), str(other), str(tmp_path / "x.json"), "--no-progress"]) == 2
    assert "dimension 8 differs" in capsys.readouterr().err
    with pytest.raises(InputError, match="dimension 8"):  # -v shows the traceback
        main(["-v", "probe", "predict", str(out), str(other), str(tmp_path / "x.json"), "--no-progress"])


def test_probe_train_uses_the_items_its_labels_name(labelled, tmp_path, capsys, caplog):
    emb, _, _, rel = labelled
    csv, out = tmp_path / "part.csv", tmp_path / "p"
    named = [r for r in rel if int(r[-7:-4]) % 3 == 0]  # a third of each class
    csv.write_text("\n".join(f"{r},{r.split('/')[0]}" for r in named), encoding="utf-8")
    assert main(["probe", "train", str(emb), str(out), "--labels", str(csv), "--no-progress"]) == 0
    data = json.loads((out / "probe.json").read_text(encoding="utf-8"))["data"]
    assert data["n_items"] == len(named) == 60 and data["n_unlabelled"] == 120
    assert data["counts"] == {c: 20 for c in CLASSES}
    assert f"{csv}: 120 of 180 items have no label and are left out of training" in caplog.text

    csv.write_text("jazz/piece060.mid,jazz\n", encoding="utf-8")  # one class left
    assert main(["probe", "train", str(emb), str(tmp_path / "q"), "--labels", str(csv), "--no-progress"]) == 2
    assert f"{csv}: a classifier needs at least two classes, found ['jazz']" in capsys.readouterr().err
    csv.write_text("elsewhere/a.mid,jazz\n", encoding="utf-8")
    assert main(["probe", "train", str(emb), str(tmp_path / "q"), "--labels", str(csv), "--no-progress"]) == 2
    assert f"{csv}: no item of the 180 has a label" in capsys.readouterr().err
    rows = [f"{r},{r.split('/')[0]}" for r in rel]
    rows[5] = rel[5]  # a bare path: no label
    csv.write_text("\n".join(rows), encoding="utf-8")
    assert main(["probe", "train", str(emb), str(tmp_path / "q"), "--labels", str(csv), "--no-progress"]) == 2
    assert f"{rel[5]}: single-label mode needs one label" in capsys.readouterr().err


@pytest.fixture()
def small_probe(labelled, tmp_path):
    emb, *_ = labelled
    out = tmp_path / "probe"
    assert (
        main(
            ["probe", "train", str(emb), str(out), "--labels-from-folders", "--epochs", "2", "--no-progress"]
        )
        == 0
    )
    return emb, out


def test_unreadable_embeddings_are_reported_and_left_out(small_probe, tmp_path, capsys):
    emb, probe = small_probe
    damaged = emb / "jazz" / "piece061.npy"
    damaged.write_bytes(damaged.read_bytes()[:90])
    (emb / "jazz" / "piece062.npy").write_bytes(b"")
    preds = tmp_path / "p.json"
    argv = ["probe", "predict", str(probe), str(emb), str(preds), "--labels-from-folders", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {damaged}: unreadable .npy" in err
    assert "2 embeddings could not be read and are not predicted" in err
    result = json.loads(preds.read_text(encoding="utf-8"))
    assert [f["path"] for f in result["failed"]] == ["jazz/piece061.npy", "jazz/piece062.npy"]
    assert len(result["predictions"]) == result["metrics"]["n"] == 178
    # gen-score and zero-shot read embedding folders through the same reader (evaluate.items)
    scores = tmp_path / "gs.json"
    argv = ["gen-score", "--generated", str(emb), "--reference", str(emb), "--embeddings"]
    assert main([*argv, "--json", str(scores), "--no-progress"]) == 1
    result = json.loads(scores.read_text(encoding="utf-8"))
    for failed in (result["failed_files"], result["frechet"]["failed_files"]):
        assert [f["path"] for f in failed] == ["jazz/piece061.npy", "jazz/piece062.npy"]
    assert result["n_generated"] == result["frechet"]["n_reference"] == 178


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_top_k_must_be_a_positive_integer(small_probe, tmp_path, capsys, value):
    emb, probe = small_probe
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "predict", str(probe), str(emb), str(tmp_path / "p.json"), "--top-k", value])
    assert exit_info.value.code == 2
    assert "argument --top-k" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zero-shot", str(emb), "--embeddings", "--labels", "a,b", "--top-k", value])
    assert not (tmp_path / "p.json").exists()


def test_plot_without_known_labels_is_an_error(small_probe, tmp_path, capsys):
    emb, probe = small_probe
    plot, preds = tmp_path / "cm.png", tmp_path / "p.json"
    assert (
        main(["probe", "predict", str(probe), str(emb), str(preds), "--plot", str(plot), "--no-progress"])
        == 2
    )
    assert "--plot needs known labels" in capsys.readouterr().err
    assert not plot.exists() and not preds.exists()
    argv = ["zero-shot", str(emb), "--embeddings", "--model", str(tmp_path / "absent"), "--labels", "a,b"]
    assert main([*argv, "--plot", str(plot)]) == 2  # refused before the model is looked up
    assert "--plot needs known labels" in capsys.readouterr().err


def test_output_paths_may_create_only_their_own_folder(small_probe, tmp_path, capsys):
    emb, probe = small_probe
    deep = tmp_path / "typo" / "dir" / "x.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "predict", str(probe), str(emb), str(deep), "--no-progress"])
    assert exit_info.value.code == 2
    assert f"folder {tmp_path / 'typo'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
    with pytest.raises(SystemExit):
        main(["probe", "predict", str(probe), str(emb), "/nonexistent-clamp3/dir/x.json"])
    assert "folder /nonexistent-clamp3 does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a probe directory two missing levels deep
        main(["probe", "train", str(emb), str(tmp_path / "runs" / "probe"), "--labels-from-folders"])
    with pytest.raises(SystemExit):
        main(["gen-score", "--generated", str(emb), "--reference", str(emb), "--json", str(deep)])
    with pytest.raises(SystemExit):  # an existing folder is not a file name
        main(["probe", "predict", str(probe), str(emb), str(tmp_path)])
    # one missing folder inside an existing one is created, as users expect for out/preds.json
    fresh = tmp_path / "results" / "preds.json"
    assert main(["probe", "predict", str(probe), str(emb), str(fresh), "--no-progress"]) == 0
    assert fresh.is_file()


def test_multi_label_probe_refuses_a_confusion_plot(tmp_path, rng, capsys):
    x = rng.normal(size=(30, 4))
    rel = [f"p{i}.mid" for i in range(30)]
    emb = write_embedding_folder(tmp_path / "emb", x, rel)
    csv = tmp_path / "tags.csv"
    csv.write_text("\n".join(f"{r},{'a' if i % 2 else 'b'}" for i, r in enumerate(rel)), encoding="utf-8")
    out = tmp_path / "tagger"
    argv = ["probe", "train", str(emb), str(out), "--labels", str(csv), "--multi-label", "--epochs", "2"]
    assert main([*argv, "--no-progress"]) == 0
    argv = ["probe", "predict", str(out), str(emb), str(tmp_path / "p.json"), "--truth", str(csv)]
    assert main([*argv, "--plot", str(tmp_path / "cm.png"), "--no-progress"]) == 2
    assert "this probe is multi-label" in capsys.readouterr().err
