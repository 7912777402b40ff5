"""gen-score inputs: only symbolic or audio pieces of one modality are scored; models must agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from embedding_support import InMemoryModel, write_embedding_folder

from clamp3.cli.main import main
from clamp3.evaluate.genscore import GenScoreSettings, run_gen_score
from clamp3.evaluate.items import select_pieces
from clamp3.model_identity import ModelMismatch, fingerprint
from clamp3.utils.errors import InputError

PROMPTS = {"p01": "a calm piano waltz", "p02": "fast rock with drums"}


class FileModel(InMemoryModel):
    """Stands in for a Clamp3Pipeline. Encodes a file to a fixed vector per file name and a prompt to a fixed vector per text;
    records every input so a test can see what was encoded."""

    def __init__(self, files: dict[str, np.ndarray], texts: dict[str, np.ndarray]):
        self.files, self.texts, self.seen = files, texts, []

    def encode_texts(self, texts, batch_size=32, normalize=True, show_progress=False):
        self.seen.extend(texts)
        return np.stack([self.texts[k] for k in texts]).astype(np.float32)

    def encode_files(self, paths, modality=None, batch_size=32, normalize=True, show_progress=False):
        paths = list(paths)
        self.seen.extend(paths)
        return np.stack([self.files[str(x).rsplit("/", 1)[-1]] for x in paths]).astype(np.float32)


def write_tree(root, names):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_text("placeholder", encoding="utf-8")
    return root


def write_prompts(path):
    path.write_text("\n".join(json.dumps({"id": k, "prompt": v}) for k, v in PROMPTS.items()), "utf-8")
    return path


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture()
def vectors(rng):
    texts = {v: rng.normal(size=8) for v in PROMPTS.values()}
    files = {
        name: rng.normal(size=8) for name in ("p01.mid", "p02.mid", "p01.wav", "p02.wav", "r1.mid", "r2.mid")
    }
    files["p01.txt"] = files["notes.txt"] = texts[
        PROMPTS["p01"]
    ]  # the prompt file itself: cosine 1 with its prompt
    return files, texts


def test_prompt_text_files_beside_the_pieces_are_not_scored(tmp_path, vectors):
    files, texts = vectors
    gen = write_tree(tmp_path / "gen", ["p01.mid", "p02.mid", "p01.txt"])
    model = FileModel(files, texts)
    result = run_gen_score(gen, model, prompts_file=write_prompts(tmp_path / "prompts.jsonl"))
    score = result["clamp3_score"]
    assert score["n"] == 2 and [item["path"] for item in result["items"]] == ["p01.mid", "p02.mid"]
    expected = [cosine(files[f"p0{i}.mid"], texts[PROMPTS[f"p0{i}"]]) for i in (1, 2)]
    assert score["score"] == pytest.approx(np.mean(expected))
    assert result["modality"] == "symbolic" and result["ignored_files"] == ["p01.txt"]
    assert not any(str(x).endswith(".txt") for x in model.seen)  # never even encoded


def test_mixed_modalities_are_refused_naming_files(tmp_path, vectors):
    gen = write_tree(tmp_path / "gen", ["p01.mid", "p02.wav"])
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    with pytest.raises(
        InputError, match=r"mixes audio and symbolic pieces \(audio: p02.wav; symbolic: p01.mid\)"
    ):
        run_gen_score(gen, FileModel(*vectors), prompts_file=prompts)
    result = run_gen_score(
        gen, FileModel(*vectors), prompts_file=prompts, settings=GenScoreSettings(modality="audio")
    )
    assert [item["path"] for item in result["items"]] == ["p02.wav"] and result["ignored_files"] == [
        "p01.mid"
    ]


def test_a_folder_without_pieces_is_refused(tmp_path, vectors):
    gen = write_tree(tmp_path / "gen", ["p01.txt"])
    with pytest.raises(InputError, match=r"no audio or symbolic items; found only p01.txt \(text\)"):
        run_gen_score(gen, FileModel(*vectors), prompts_file=write_prompts(tmp_path / "p.jsonl"))
    gen = write_tree(tmp_path / "gen2", ["p01.mid"])
    with pytest.raises(InputError, match=r"no audio items; found only p01.mid \(symbolic\)"):
        select_pieces(["p01.mid"], ["symbolic"], "audio", str(gen))


def test_a_frechet_distance_needs_two_pieces_on_each_side(tmp_path, vectors):
    one, two = write_tree(tmp_path / "one", ["p01.mid"]), write_tree(tmp_path / "two", ["r1.mid", "r2.mid"])
    for generated, reference, named in ((one, two, one), (two, one, one)):
        with pytest.raises(InputError, match="needs at least two pieces, found 1") as info:
            run_gen_score(generated, FileModel(*vectors), reference=reference)
        assert info.value.path == str(named)


def test_reference_must_hold_the_generated_modality(tmp_path, vectors):
    gen = write_tree(tmp_path / "gen", ["p01.mid", "p02.mid"])
    audio_ref = write_tree(tmp_path / "ref_audio", ["p01.wav", "p02.wav"])
    with pytest.raises(InputError, match="reference pieces are audio but generated pieces are symbolic"):
        run_gen_score(
            gen, FileModel(*vectors), reference=audio_ref, settings=GenScoreSettings(fd_bootstrap=0)
        )
    mixed_ref = write_tree(tmp_path / "ref_mixed", ["r1.mid", "r2.mid", "p01.wav"])
    with pytest.raises(InputError, match="mixes audio and symbolic"):
        run_gen_score(
            gen, FileModel(*vectors), reference=mixed_ref, settings=GenScoreSettings(fd_bootstrap=0)
        )
    with pytest.warns(UserWarning, match="N < D"):  # 2 items in 8 dimensions
        result = run_gen_score(
            gen,
            FileModel(*vectors),
            reference=mixed_ref,
            settings=GenScoreSettings(fd_bootstrap=0, modality="symbolic"),
        )
    assert result["frechet"]["n_reference"] == 2  # --modality symbolic leaves the audio reference out


def embedding_folder(root, rows, model="saas", print_=None):
    """``clamp3 embed`` layout: ``rows`` = [(relpath, modality, vector)]."""
    return write_embedding_folder(root, rows, model, print_ or f"{model}:0")


def test_embedding_folders_keep_only_pieces(tmp_path, vectors):
    files, texts = vectors
    rows = [
        (n, m, files[n]) for n, m in (("p01.mid", "symbolic"), ("p02.mid", "symbolic"), ("notes.txt", "text"))
    ]
    model = FileModel(files, texts)
    gen = embedding_folder(tmp_path / "gen", rows, model="saas", print_=fingerprint(model))
    result = run_gen_score(gen, model, prompts_file=write_prompts(tmp_path / "p.jsonl"), embeddings=True)
    assert result["clamp3_score"]["n"] == 2 and result["ignored_files"] == ["notes.txt"]
    assert result["model_check"] == {"prompts": "same"}


def test_embedding_models_must_agree(tmp_path, rng, capsys):
    rows = [(f"g{i}.mid", "symbolic", rng.normal(size=4)) for i in range(6)]
    gen = embedding_folder(tmp_path / "gen", rows, model="saas")
    ref = embedding_folder(tmp_path / "ref", rows, model="c2")
    argv = [
        "gen-score",
        "--generated",
        str(gen),
        "--reference",
        str(ref),
        "--embeddings",
        "--fd-bootstrap",
        "0",
    ]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "generated embeddings come from model saas [fingerprint saas:0] but the reference" in err
    assert "--allow-model-mismatch" in err
    assert main([*argv, "--no-progress", "--allow-model-mismatch"]) == 0
    # the prompt model is the model given; another model's embeddings (a comparable fingerprint
    # of other weights) are refused
    prompts = write_prompts(tmp_path / "p.jsonl")
    other = embedding_folder(tmp_path / "other", rows, model="saas", print_="saas:s1-" + "0" * 16)
    with pytest.raises(
        ModelMismatch, match="the prompts \\(encoded with --model\\) from model \\(unsaved\\)"
    ):
        run_gen_score(other, FileModel({}, {}), prompts_file=prompts, embeddings=True)


def test_fingerprints_decide_whatever_the_recorded_path(tmp_path, rng):
    rows = [(f"g{i}.mid", "symbolic", rng.normal(size=4)) for i in range(6)]
    new = embedding_folder(tmp_path / "new", rows, model="/models/saas", print_="saas:f00d")
    moved = embedding_folder(tmp_path / "moved", rows, model="/copy/of/saas", print_="saas:f00d")
    other = embedding_folder(tmp_path / "other", rows, model="/models/saas", print_="saas:beef")
    settings = GenScoreSettings(fd_bootstrap=0)
    assert run_gen_score(new, None, reference=moved, embeddings=True, settings=settings)["model_check"] == {
        "reference": "same"  # same weights at another path
    }
    with pytest.raises(ModelMismatch, match="fingerprint saas:beef"):
        run_gen_score(new, None, reference=other, embeddings=True, settings=settings)
