"""Model consistency: embeddings of another model than the probe's or the label model's are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.evaluate.modelcheck import (
    ModelCheck,
    ModelIdentity,
    argument_identity,
    folder_identity,
    identity_from_fields,
    probe_identity,
    require_same_model,
    same_model,
)
from clamp3.evaluate.runs import run_zero_shot
from clamp3.utils.errors import InputError


def folder(root, vectors, relpaths, model=None, extra=None):
    """``clamp3 embed`` layout with a manifest whose records carry ``model`` (and ``extra`` fields)."""
    lines = []
    for vector, rel in zip(vectors, relpaths):
        npy = rel.rsplit(".", 1)[0] + ".npy"
        (root / npy).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / npy, np.asarray(vector, np.float32)[None])
        record = {"path": rel, "npy": npy, "modality": "symbolic", **(extra or {})}
        if model is not None:
            record["model"] = model
        lines.append(json.dumps(record))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_identities_from_old_and_new_records():
    assert identity_from_fields("saas") == ModelIdentity("saas")
    assert identity_from_fields("/w/ckpt", {"model_fingerprint": "ab12", "sha256": "input"}) == ModelIdentity(
        "/w/ckpt", "ab12"
    )  # the input file's sha256 is not the model's
    assert identity_from_fields({"tag": "c2", "sha1": "ff"}) == ModelIdentity("c2", "ff")
    assert identity_from_fields(None, {"sha256": "input only"}) is None
    assert identity_from_fields("", {}) is None
    assert probe_identity({"data": {"model": "saas"}}) == ModelIdentity("saas")
    assert probe_identity({"data": {"model": "x", "model_identity": {"name": "/a", "fingerprint": "f"}}}) == (
        ModelIdentity("/a", "f")
    )
    assert probe_identity({"data": {}}) is None


def test_same_model_rules(tmp_path, monkeypatch):
    assert same_model(ModelIdentity("/a", "f1"), ModelIdentity("/b", "f1")) is True  # a copy elsewhere
    assert same_model(ModelIdentity("saas", "f1"), ModelIdentity("saas", "f2")) is False  # retrained
    assert same_model(ModelIdentity("saas"), ModelIdentity("saas", "f2")) is True  # old vs new record
    assert same_model(ModelIdentity("saas"), ModelIdentity("c2")) is False
    assert same_model(ModelIdentity(None, "f"), ModelIdentity("saas")) is None
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    # an old manifest's path as typed equals the absolute path a newer one records
    assert same_model(ModelIdentity("ckpt/"), ModelIdentity(str(tmp_path / "ckpt"))) is True
    assert argument_identity("ckpt") == ModelIdentity(str(tmp_path / "ckpt"))
    assert argument_identity("saas") == ModelIdentity("saas")
    assert require_same_model(("a", None), ("b", ModelIdentity("c2")), False, "x") == "unchecked"


def test_a_folder_naming_two_models_is_refused(tmp_path, rng):
    root = folder(tmp_path / "emb", rng.normal(size=(2, 3)), ["a.mid", "b.mid"], model="saas")
    with open(root / "manifest.jsonl", "a", encoding="utf-8") as handle:  # a rerun with another model
        handle.write(json.dumps({"path": "a.mid", "npy": "a.npy", "model": "c2"}) + "\n")
    with pytest.raises(InputError, match="several models in one folder: saas, c2"):
        folder_identity(root)


@pytest.fixture()
def trained_probe(tmp_path, rng):
    centres = rng.normal(size=(2, 8)) * 4
    y = np.repeat([0, 1], 20)
    x = centres[y] + rng.normal(size=(40, 8))
    rel = [f"{'ab'[c]}/p{i}.mid" for i, c in enumerate(y)]
    emb = folder(tmp_path / "train_emb", x, rel, model="saas")
    out = tmp_path / "probe"
    assert (
        main(
            ["probe", "train", str(emb), str(out), "--labels-from-folders", "--epochs", "3", "--no-progress"]
        )
        == 0
    )
    info = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert info["data"]["model"] == "saas" and info["data"]["model_identity"]["name"] == "saas"
    return out, x, rel


def test_probe_predict_refuses_embeddings_of_another_model(trained_probe, tmp_path, capsys):
    probe, x, rel = trained_probe
    other = folder(tmp_path / "other", x, rel, model="c2")
    preds = tmp_path / "preds.json"
    assert main(["probe", "predict", str(probe), str(other), str(preds), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "come from model saas but the embeddings of" in err and "from model c2" in err
    assert "--allow-model-mismatch" in err and not preds.exists()
    argv = ["probe", "predict", str(probe), str(other), str(preds), "--no-progress", "--allow-model-mismatch"]
    assert main(argv) == 0
    assert json.loads(preds.read_text(encoding="utf-8"))["model_check"] == "mismatch"
    # a newer manifest of the same model (name + fingerprint) is accepted
    same = folder(tmp_path / "same", x, rel, model="saas", extra={"model_fingerprint": "0123abcd"})
    assert main(["probe", "predict", str(probe), str(same), str(preds), "--no-progress"]) == 0
    assert json.loads(preds.read_text(encoding="utf-8"))["model_check"] == "same"


class LabelModel:
    """Stands in for a Clamp3Pipeline that knows two labels."""

    def encode_texts(self, inputs, batch_size=32, normalize=True, show_progress=False):
        table = {"jazz": [1.0, 0, 0], "rock": [0, 0, 1.0]}
        return np.array([table[x] for x in inputs], dtype=np.float32)


def test_zero_shot_embeddings_must_come_from_the_label_model(tmp_path):
    emb = folder(tmp_path / "emb", [[1.0, 0.1, 0], [0, 0.2, 2.0]], ["a.mid", "b.mid"], model="c2")
    args = ([emb], LabelModel(), ["jazz", "rock"], ["{label}"])
    with pytest.raises(
        InputError, match="model c2 but the labels \\(encoded with --model\\) from model saas"
    ):
        run_zero_shot(*args, embeddings=True, model_check=ModelCheck(ModelIdentity("saas")))
    result = run_zero_shot(*args, embeddings=True, model_check=ModelCheck(ModelIdentity("saas"), True))
    assert result["model_check"] == ["mismatch"]
    result = run_zero_shot(*args, embeddings=True, model_check=ModelCheck(ModelIdentity("c2")))
    assert result["model_check"] == ["same"] and [p["label"] for p in result["predictions"]] == [
        "jazz",
        "rock",
    ]
    # two embedding folders of different models are refused even when the label model is unknown
    other = folder(tmp_path / "emb2", [[1.0, 0, 0]], ["c.mid"], model="saas")
    with pytest.raises(InputError, match="from model c2 but those of .*emb2 from model saas"):
        run_zero_shot([emb, other], LabelModel(), ["jazz", "rock"], ["{label}"], embeddings=True)
