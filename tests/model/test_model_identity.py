"""Model identity: one fingerprint, one ``same_model`` rule, one refusal, and every stage that
combines two sets of vectors (embed rerun, index --append, serve, eval, score, probe, zero-shot,
gen-score)
accepting or refusing the same pair of models identically."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from clamp3 import Clamp3Model
from clamp3.cli.main import main
from clamp3.model_identity import (
    ModelIdentity,
    ModelMismatch,
    fingerprint,
    identify,
    require_same_model,
    same_model,
)


def test_an_unchecked_pair_says_which_side_records_no_model(caplog):
    import logging

    queries, nameless = ("the queries", ModelIdentity("/a", "t:1")), ("x", ModelIdentity("", "t:1"))
    with caplog.at_level(logging.INFO, "clamp3.model_identity"):
        assert require_same_model(queries, ("the probe", None), "q") == "unchecked"
        assert require_same_model(nameless, ("y", ModelIdentity("saas")), "r") == "unchecked"
    assert [r.getMessage() for r in caplog.records] == [
        "model consistency not checked for q (the probe: no model recorded)",
        "model consistency not checked for r (no comparable model fields)",
    ]


def test_same_model_rule_and_refusal():
    assert same_model(ModelIdentity("/a", "t:1"), ModelIdentity("/b", "t:1")) is True  # a copy elsewhere
    assert same_model(ModelIdentity("saas", "t:1"), ModelIdentity("saas", "t:2")) is False  # retrained
    assert same_model(ModelIdentity("saas"), ModelIdentity("saas", "t:2")) is True  # no print: ids decide
    assert same_model(ModelIdentity("saas"), ModelIdentity("c2")) is False
    assert same_model(ModelIdentity("", "t:1"), ModelIdentity("saas")) is None
    # a fingerprint of the recipe before "s1" (file bytes) is not comparable: the ids decide
    old, new = ModelIdentity("/m", "tiny:0123456789abcdef"), ModelIdentity("/m", "tiny:s1-fedcba9876543210")
    assert same_model(old, new) is True and same_model(old, ModelIdentity("/n", new.fingerprint)) is False
    a, b = ("x", ModelIdentity("/a", "t:1")), ("y", ModelIdentity("/a", "t:2"))
    assert require_same_model(a, ("y", None), "here") == "unchecked"
    assert require_same_model(a, ("y", ModelIdentity("/b", "t:1")), "here") == "same"
    with pytest.raises(ModelMismatch) as caught:
        require_same_model(a, b, "here")
    assert caught.value.path == "here" and "--allow-model-mismatch" in caught.value.reason
    assert require_same_model(a, b, "here", allow_mismatch=True) == "mismatch"
    assert ModelIdentity.from_json(ModelIdentity("/a", "t:1").to_json()) == ModelIdentity("/a", "t:1")


def test_fingerprint_follows_the_weights_not_the_load_path(tmp_path):
    from clamp3.testing import write_official_checkpoint

    model = Clamp3Model.from_preset("tiny", seed=0)
    built = fingerprint(model)
    assert re.fullmatch(r"tiny:s1-[0-9a-f]{16}", built)
    model.save_pretrained(tmp_path / "dir")
    shutil.copytree(tmp_path / "dir", tmp_path / "copy")
    write_official_checkpoint(tmp_path / "official.pth", model.state_dict())
    loaded = Clamp3Model.from_pretrained(tmp_path / "dir")
    assert fingerprint(loaded) == built and not loaded.has_tower("text")  # no tower built to hash it
    assert fingerprint(Clamp3Model.from_pretrained(tmp_path / "copy")) == built
    official = Clamp3Model.from_pretrained(tmp_path / "official.pth", config="tiny")
    assert fingerprint(official) == built
    half = Clamp3Model.from_pretrained(tmp_path / "dir", modalities=None, dtype=torch.float16)
    assert fingerprint(half) == built  # the stored values, whatever the load's dtype
    assert fingerprint(Clamp3Model.from_preset("tiny", seed=1)) != built
    assert identify(loaded) == ModelIdentity(str((tmp_path / "dir").resolve()), built)
    assert identify(loaded, "tiny-tag").id == "tiny-tag"


# ------------------------------------------------------------------------- one rule, every stage
def _source_tree(root: Path, parity_dir: Path) -> Path:
    words = ["waltz", "fugue", "chorale", "lullaby", "march", "nocturne"]
    for i, word in enumerate(words):
        folder = root / ("a" if i < 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"t{i}.txt").write_text(f"a {word} number {i}\n", encoding="utf-8")
    (root / "m").mkdir()
    for name in ("m21_test01.mid", "m21_test08.mid"):
        shutil.copy(parity_dir / "inputs" / "midi" / name, root / "m" / name)
    return root


def _embed(src: Path, out: Path, model: Path) -> int:
    return main(["embed", str(src), str(out), "--model", str(model), "--no-progress"])


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_model_dir, parity_dir):
    """The first model's outputs: embeddings of a small tree, their index and a probe."""
    root = tmp_path_factory.mktemp("identity")
    src = _source_tree(root / "src", parity_dir)
    assert _embed(src, root / "emb", tiny_model_dir) == 0
    assert main(["index", str(root / "emb"), str(root / "idx"), "--quiet"]) == 0
    probe = ["probe", "train", str(root / "emb"), str(root / "probe"), "--labels-from-folders"]
    assert main([*probe, "--epochs", "2", "--no-progress"]) == 0
    prompts = root / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "m21_test01", "prompt": "a short waltz"}) + "\n", encoding="utf-8")
    return root


def _outcome(code: int, err: str) -> str:
    assert code in (0, 2), err
    if code == 2:
        assert "vectors of different models are not comparable" in err, err  # the one refusal
    return "accepted" if code == 0 else "refused"


def _stages(first: Path, second: Path, work: Path, capsys) -> dict[str, str]:
    """What every stage does with the first model's vectors and the ``second`` model."""
    outcomes = {}
    capsys.readouterr()
    shutil.copytree(first / "emb", work / "rerun")
    outcomes["embed (rerun)"] = _outcome(
        _embed(first / "src", work / "rerun", second), capsys.readouterr().err
    )
    assert _embed(first / "src", work / "emb2", second) == 0
    shutil.copytree(first / "idx", work / "idx")
    code = main(["index", str(work / "emb2"), str(work / "idx"), "--append", "--quiet"])
    outcomes["index --append"] = _outcome(code, capsys.readouterr().err)
    outcomes["serve"] = _serve(first / "idx", first / "src", second)
    code = main(["eval", str(first / "emb"), str(work / "emb2"), "--quiet"])
    outcomes["eval"] = _outcome(code, capsys.readouterr().err)
    outcomes["score"] = _outcome(
        main(["score", str(first / "emb"), str(work / "emb2")]), capsys.readouterr().err
    )
    code = main(
        ["probe", "predict", str(first / "probe"), str(work / "emb2"), str(work / "p.json"), "--no-progress"]
    )
    outcomes["probe predict"] = _outcome(code, capsys.readouterr().err)
    zero_shot = ["zero-shot", str(first / "emb"), "--embeddings", "--labels", "waltz,fugue", "--no-progress"]
    outcomes["zero-shot"] = _outcome(main([*zero_shot, "--model", str(second)]), capsys.readouterr().err)
    gen_score = ["gen-score", "--generated", str(first / "emb"), "--prompts", str(first / "prompts.jsonl")]
    gen_score += ["--embeddings", "--bootstrap", "0", "--no-progress", "--model", str(second)]
    outcomes["gen-score"] = _outcome(main(gen_score), capsys.readouterr().err)
    return outcomes


def _serve(index: Path, media: Path, model_dir: Path) -> str:
    pytest.importorskip("fastapi")
    from serve_support import shut_down

    from clamp3.serve.service import build_app

    try:
        app = build_app(index, media, Clamp3Model.from_pretrained(model_dir))
    except ModelMismatch as err:
        assert "vectors of different models are not comparable" in err.reason
        return "refused"
    shut_down(app)
    return "accepted"


def test_every_stage_accepts_a_copy_and_refuses_another_model(
    first, tiny_model_dir, tiny_tokenizer, tmp_path, capsys
):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")  # the same weights elsewhere
    other = tmp_path / "other"
    Clamp3Model.from_preset("tiny", seed=1).save_pretrained(other)  # retrained weights
    tiny_tokenizer.save(other)
    accepted = _stages(first, copy, tmp_path / "with_copy", capsys)
    refused = _stages(first, other, tmp_path / "with_other", capsys)
    assert set(accepted.values()) == {"accepted"}, accepted
    assert set(refused.values()) == {"refused"}, refused
    assert accepted.keys() == refused.keys() and len(accepted) == 8
