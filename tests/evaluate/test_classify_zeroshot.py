"""Zero-shot classification: prompts, ensembling, planted classes, and the CLI with the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embedding_support import InMemoryModel

from clamp3.cli.main import main
from clamp3.evaluate.runs import run_zero_shot
from clamp3.evaluate.zeroshot import (
    build_prompts,
    ensemble_prompts,
    top_k,
    zero_shot_classify,
    zero_shot_scores,
)

LABELS = ["jazz", "classical", "摇滚"]


class LookupModel(InMemoryModel):
    """Stands in for a Clamp3Pipeline: texts and file names -> fixed vectors from a table."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table
        self.calls = []

    def _lookup(self, inputs, kind, normalize):
        self.calls.append((list(inputs), kind))
        out = np.stack([self.table[x] for x in inputs]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out

    def encode_texts(self, texts, batch_size=32, normalize=True, show_progress=False):
        return self._lookup(texts, "text", normalize)

    def encode_files(self, paths, modality=None, batch_size=32, normalize=True, show_progress=False):
        return self._lookup(paths, "files", normalize)


def test_build_prompts_any_language():
    prompts = build_prompts(["jazz", "民謡"], ["a piece of {label} music", "un morceau de {label} {{sic}}"])
    assert prompts == [
        "a piece of jazz music",
        "un morceau de jazz {{sic}}",
        "a piece of 民謡 music",
        "un morceau de 民謡 {{sic}}",
    ]
    with pytest.raises(ValueError, match="placeholder"):
        build_prompts(["jazz"], ["no placeholder"])
    with pytest.raises(ValueError, match="unique"):
        build_prompts(["jazz", "jazz"])
    with pytest.raises(ValueError, match=r"label 3 of 3 is empty \(a stray comma\?\)"):
        build_prompts(["jazz", "rock", ""])  # "jazz,rock," split at its commas
    with pytest.raises(ValueError, match="label 2 of 3 is empty"):
        build_prompts(["jazz", " ", "rock"])
    with pytest.raises(ValueError, match="at least one label"):
        build_prompts([])


def test_ensemble_is_mean_of_normalised_prompts_renormalised(rng):
    prompts = rng.normal(size=(6, 5)) * rng.uniform(0.5, 3, size=(6, 1))
    classes = ensemble_prompts(prompts, 3)
    unit = prompts / np.linalg.norm(prompts, axis=1, keepdims=True)
    expected = unit.reshape(3, 2, 5).mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(classes, expected, rtol=1e-5, atol=1e-6)


def test_planted_class_wins_and_ensembling_fixes_a_bad_template(rng):
    dim = 12
    axes = np.eye(dim)[: len(LABELS)]
    templates = ["{label}", "a piece of {label} music", "music: {label}"]
    table = {}
    for c, label in enumerate(LABELS):
        for t, template in enumerate(templates):
            vector = axes[c] + 0.05 * rng.normal(size=dim)
            if c == 0 and t == 0:  # one misleading prompt: "jazz" alone points at "classical"
                vector = axes[1] + 0.3 * axes[0]
            table[template.replace("{label}", label)] = vector
    truth = np.array([0, 1, 2] * 5)
    items = axes[truth] * rng.uniform(0.5, 4, size=(len(truth), 1)) + 0.1 * rng.normal(size=(len(truth), dim))
    for i, item in enumerate(items):
        table[f"item{i}.abc"] = item
    model = LookupModel(table)
    inputs = [f"item{i}.abc" for i in range(len(truth))]

    scores, names = zero_shot_classify(model, inputs, LABELS, templates)
    assert names == LABELS and scores.shape == (len(truth), 3)
    assert (scores.argmax(axis=1) == truth).all()
    assert model.calls[0][1] == "text"  # prompts are always encoded as text
    single, _ = zero_shot_classify(model, inputs, LABELS, templates[:1])
    assert (single.argmax(axis=1) != truth).any()  # the bad template alone gets jazz wrong

    # precomputed embeddings give the same scores
    classes = ensemble_prompts(model.encode_texts(build_prompts(LABELS, templates)), len(LABELS))
    np.testing.assert_allclose(zero_shot_scores(items, classes), scores, atol=1e-6)
    best = top_k(scores, LABELS, 2)
    assert [b[0]["label"] for b in best] == [LABELS[t] for t in truth]
    assert all(b[0]["score"] >= b[1]["score"] for b in best)


@pytest.fixture()
def abc_tree(tmp_path):
    """Two class folders of small ABC tunes (the tiny model reads symbolic files)."""
    tunes = {
        "reel": [
            "X:1\nL:1/8\nM:4/4\nK:D\nd2fd AdFA|d2fd g2fe|]\n",
            "X:1\nL:1/8\nM:4/4\nK:G\nGABc dBGB|c2ec B2dB|]\n",
        ],
        "waltz": ["X:1\nL:1/4\nM:3/4\nK:C\nC E G|c2 G|E3|]\n", "X:1\nL:1/4\nM:3/4\nK:F\nF A c|f2 c|A3|]\n"],
    }
    for label, texts in tunes.items():
        (tmp_path / "music" / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "music" / label / f"t{i}.abc").write_text(text, encoding="utf-8")
    return tmp_path / "music"


def test_zero_shot_cli_with_tiny_model(tiny_model_dir, abc_tree, tmp_path):
    out, plot = tmp_path / "zs.json", tmp_path / "zs.png"
    argv = ["zero-shot", str(abc_tree), "--model", str(tiny_model_dir), "--device", "cpu"]
    argv += ["--labels", "reel,waltz", "--template", "a piece of {label} music", "--template", "ein {label}"]
    argv += [
        "--labels-from-folders",
        "--json",
        str(out),
        "--plot",
        str(plot),
        "--top-k",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["labels"] == ["reel", "waltz"] and len(result["templates"]) == 2
    assert [p["path"] for p in result["predictions"]] == [
        "reel/t0.abc",
        "reel/t1.abc",
        "waltz/t0.abc",
        "waltz/t1.abc",
    ]
    for p in result["predictions"]:
        assert [t["label"] for t in p["top"]] in (["reel", "waltz"], ["waltz", "reel"])
        assert p["top"][0]["score"] >= p["top"][1]["score"] and all(-1 <= t["score"] <= 1 for t in p["top"])
        assert p["truth"] == p["path"].split("/")[0]
    metrics = result["metrics"]
    assert metrics["n"] == 4 and 0 <= metrics["accuracy"] <= 1 and np.asarray(metrics["confusion"]).sum() == 4
    assert plot.is_file()

    # the CLI's scores equal encode() of the files against the ensembled prompts
    from clamp3 import Clamp3Model

    model = Clamp3Model.from_pretrained(tiny_model_dir)
    files = [str(abc_tree / p["path"]) for p in result["predictions"]]
    scores, _ = zero_shot_classify(
        model, files, ["reel", "waltz"], ["a piece of {label} music", "ein {label}"]
    )
    got = np.array(
        [
            [{t["label"]: t["score"] for t in p["top"]}[k] for k in ("reel", "waltz")]
            for p in result["predictions"]
        ]
    )
    np.testing.assert_allclose(got, scores, atol=1e-5)


def test_run_zero_shot_on_embeddings_and_unknown_truth_label(tmp_path, rng):
    from clamp3.utils.errors import InputError

    root = tmp_path / "emb"
    (root / "jazz").mkdir(parents=True)
    (root / "rock").mkdir(parents=True)
    np.save(root / "jazz" / "a.npy", np.array([[1.0, 0.1, 0.0]], dtype=np.float32))
    np.save(root / "rock" / "b.npy", np.array([[0.0, 0.2, 2.0]], dtype=np.float32))
    model = LookupModel({"jazz": np.array([1.0, 0, 0]), "classical": np.array([0, 1.0, 0])})
    with pytest.raises(InputError, match="not among the classes"):
        run_zero_shot(
            [root], model, ["jazz", "classical"], ["{label}"], truth_from_folders=True, embeddings=True
        )
    result = run_zero_shot([root], model, ["jazz", "classical"], ["{label}"], embeddings=True)
    assert [p["label"] for p in result["predictions"]] == ["jazz", "classical"]
    assert result["predictions"][0]["path"] == "jazz/a.npy"


def test_cli_rejects_a_template_without_placeholder_before_loading(tmp_path, capsys):
    argv = ["zero-shot", str(tmp_path), "--model", str(tmp_path / "absent"), "--labels", "a,b"]
    assert main([*argv, "--template", "no placeholder"]) == 2
    assert "has no {label} placeholder" in capsys.readouterr().err


def test_a_bad_file_is_reported_and_the_rest_classified(tiny_model_dir, abc_tree, tmp_path, capsys):
    (abc_tree / "reel" / "broken.mid").write_bytes(b"not a midi file")
    (abc_tree / "waltz" / "empty.txt").write_text("  \n", encoding="utf-8")
    out = tmp_path / "zs.json"
    argv = ["zero-shot", str(abc_tree), "--model", str(tiny_model_dir), "--device", "cpu"]
    argv += ["--labels", "reel,waltz", "--labels-from-folders", "--json", str(out), "--no-progress"]
    assert main(argv) == 1  # as `clamp3 embed`: some files failed
    err = capsys.readouterr().err
    assert f"error: {abc_tree / 'reel' / 'broken.mid'}: corrupt MIDI file" in err
    assert "2 files could not be read" in err
    result = json.loads(out.read_text(encoding="utf-8"))
    read = ["reel/t0.abc", "reel/t1.abc", "waltz/t0.abc", "waltz/t1.abc"]
    assert [p["path"] for p in result["predictions"]] == read
    assert [f["path"] for f in result["failed"]] == ["reel/broken.mid", "waltz/empty.txt"]
    assert "empty" in result["failed"][1]["reason"] and result["metrics"]["n"] == 4

    # the scores of the files that were read are those of a run without the bad ones
    (abc_tree / "reel" / "broken.mid").unlink()
    (abc_tree / "waltz" / "empty.txt").unlink()
    clean = tmp_path / "clean.json"
    assert main([*argv[:-3], "--json", str(clean), "--no-progress"]) == 0
    expected = json.loads(clean.read_text(encoding="utf-8"))
    assert expected["failed"] == []
    for got, want in zip(result["predictions"], expected["predictions"], strict=True):
        assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
        assert got["top"][0]["score"] == pytest.approx(want["top"][0]["score"], abs=1e-6)


def test_nothing_readable_is_an_input_error(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd")
    argv = ["zero-shot", str(bad), "--model", str(tiny_model_dir), "--device", "cpu", "--labels", "a,b"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}: no file could be read (1 failed" in err
