"""Model consistency in probe and zero-shot: embeddings of another model than the probe's or
the label model's are refused (the rule itself: ``test_model_identity.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embedding_support import InMemoryModel, write_embedding_folder

from clamp3.cli.main import main
from clamp3.evaluate.runs import run_zero_shot
from clamp3.model_identity import ModelMismatch, fingerprint


def folder(root, vectors, relpaths, model="saas", print_=None):
    """``clamp3 embed`` layout, every record naming ``model`` with fingerprint ``print_``."""
    rows = [(rel, "symbolic", vector) for rel, vector in zip(relpaths, vectors)]
    return write_embedding_folder(root, rows, model, print_ or f"{model}:0")


@pytest.fixture()
def trained_probe(tmp_path, rng):
    centres = rng.normal(size=(2, 8)) * 4
    y = np.repeat([0, 1], 20)
    x = centres[y] + rng.normal(size=(40, 8))
    rel = [f"{'ab'[c]}/p{i}.mid" for i, c in enumerate(y)]
    emb = folder(tmp_path / "train_emb", x, rel)
    out = tmp_path / "probe"
    argv = ["probe", "train", str(emb), str(out), "--labels-from-folders", "--epochs", "3", "--no-progress"]
    assert main(argv) == 0
    info = json.loads((out / "probe.json").read_text(encoding="utf-8"))
    assert info["data"]["model"] == "saas"
    assert info["data"]["model_identity"] == {"id": "saas", "fingerprint": "saas:0"}
    return out, x, rel


def test_probe_predict_refuses_embeddings_of_another_model(trained_probe, tmp_path, capsys):
    probe, x, rel = trained_probe
    other = folder(tmp_path / "other", x, rel, model="c2")
    preds = tmp_path / "preds.json"
    assert main(["probe", "predict", str(probe), str(other), str(preds), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "come from model saas [fingerprint saas:0] but the embeddings of" in err and "from model c2" in err
    assert "--allow-model-mismatch" in err and not preds.exists()
    argv = ["probe", "predict", str(probe), str(other), str(preds), "--no-progress", "--allow-model-mismatch"]
    assert main(argv) == 0
    assert json.loads(preds.read_text(encoding="utf-8"))["model_check"] == "mismatch"
    # the same weights recorded under another path are the same model
    same = folder(tmp_path / "same", x, rel, model="/elsewhere/saas", print_="saas:0")
    assert main(["probe", "predict", str(probe), str(same), str(preds), "--no-progress"]) == 0
    assert json.loads(preds.read_text(encoding="utf-8"))["model_check"] == "same"


class LabelModel(InMemoryModel):
    """Stands in for a Clamp3Pipeline (and its model) that knows two labels."""

    def encode_texts(self, inputs, batch_size=32, normalize=True, show_progress=False):
        table = {"jazz": [1.0, 0, 0], "rock": [0, 0, 1.0]}
        return np.array([table[x] for x in inputs], dtype=np.float32)


def test_zero_shot_embeddings_must_come_from_the_label_model(tmp_path):
    labels = LabelModel()
    # a fingerprint of the label model's scheme, so the two are comparable (other weights)
    c2 = "c2:s1-" + "0" * 16
    emb = folder(tmp_path / "emb", [[1.0, 0.1, 0], [0, 0.2, 2.0]], ["a.mid", "b.mid"], model="c2", print_=c2)
    args = ([emb], labels, ["jazz", "rock"], ["{label}"])
    with pytest.raises(
        ModelMismatch, match="model c2 .* but the labels \\(encoded with --model\\) from model"
    ):
        run_zero_shot(*args, embeddings=True)
    result = run_zero_shot(*args, embeddings=True, allow_model_mismatch=True)
    assert result["model_check"] == ["mismatch"]
    same = folder(
        tmp_path / "same", [[1.0, 0.1, 0], [0, 0.2, 2.0]], ["a.mid", "b.mid"], print_=fingerprint(labels)
    )
    result = run_zero_shot([same], labels, ["jazz", "rock"], ["{label}"], embeddings=True)
    assert result["model_check"] == ["same"] and [p["label"] for p in result["predictions"]] == [
        "jazz",
        "rock",
    ]
    # two embedding folders of different models are refused, even when the first is the label model's
    other = folder(tmp_path / "emb2", [[1.0, 0, 0]], ["c.mid"], model="saas", print_="saas:s1-" + "1" * 16)
    with pytest.raises(
        ModelMismatch, match="embeddings of .*same come from .* but those of .*emb2 from model saas"
    ):
        run_zero_shot([same, other], labels, ["jazz", "rock"], ["{label}"], embeddings=True)
