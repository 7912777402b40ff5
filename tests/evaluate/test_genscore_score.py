"""CLaMP 3 score: per-item cosines, bootstrap interval, prompt files, file matching, and the CLI."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from embedding_support import InMemoryModel

from clamp3.cli.main import main
from clamp3.evaluate.frechet import frechet_distance
from clamp3.evaluate.genscore import (
    GenScoreSettings,
    bootstrap_mean_ci,
    candidate_ids,
    clamp3_score,
    match_generated,
    read_prompts,
    run_gen_score,
)
from clamp3.utils.errors import InputError


def test_per_item_values_are_cosines(rng):
    prompts, pieces = rng.normal(size=(40, 16)) * 3, rng.normal(size=(40, 16)) + 0.2
    result = clamp3_score(prompts, pieces, n_resamples=500)
    expected = [float(p @ q / np.linalg.norm(p) / np.linalg.norm(q)) for p, q in zip(prompts, pieces)]
    np.testing.assert_allclose(result["per_item"], expected, rtol=1e-12)
    assert result["score"] == pytest.approx(np.mean(expected))
    lo, hi = result["ci95"]
    assert lo <= result["score"] <= hi and hi - lo < 0.5
    assert result["n"] == 40


def test_bootstrap_is_seeded_and_narrows_with_more_items(rng):
    small, large = rng.normal(size=30), rng.normal(size=3000)
    assert bootstrap_mean_ci(small, seed=4) == bootstrap_mean_ci(small, seed=4)
    width = [np.diff(bootstrap_mean_ci(v, 400))[0] for v in (small, large)]
    assert width[1] < width[0] / 4  # ~ 1 / sqrt(N)
    assert bootstrap_mean_ci(small[:1]) is None


def pairs_with_cosines(cosines):
    """2-d (prompt, piece) pairs whose cosines are exactly ``cosines``."""
    c = np.asarray(cosines, dtype=np.float64)
    prompts = np.tile([1.0, 0.0], (len(c), 1))
    return prompts, np.stack([c, np.sqrt(1 - c**2)], axis=1)


def test_score_weighs_prompts_equally_not_samples():
    # one prompt with 8 good samples, two prompts with one poor sample each
    cosines = [0.9] * 8 + [0.1, 0.1]
    groups = ["a"] * 8 + ["b", "c"]
    result = clamp3_score(*pairs_with_cosines(cosines), groups=groups, n_resamples=500)
    assert result["score"] == pytest.approx((0.9 + 0.1 + 0.1) / 3)  # the item mean would say 0.74
    assert result["item_mean"] == pytest.approx(0.74)
    assert result["n"] == 10 and result["n_prompts"] == 3
    assert result["per_prompt"] == pytest.approx({"a": 0.9, "b": 0.1, "c": 0.1})
    lo, hi = result["ci95"]
    assert lo <= result["score"] <= hi
    assert clamp3_score(*pairs_with_cosines(cosines))["score"] == pytest.approx(0.74)  # no groups: per item


def test_interval_resamples_prompts_not_samples(rng):
    # 20 prompts x 10 near-identical samples: the information is in 20 prompts, not 200 samples
    effects = rng.normal(0.3, 0.15, size=20)
    cosines = np.clip(np.repeat(effects, 10) + rng.normal(0, 0.005, size=200), -0.99, 0.99)
    groups = np.repeat(np.arange(20), 10)
    result = clamp3_score(*pairs_with_cosines(cosines), groups=groups, n_resamples=2000, seed=3)
    prompt_means = [cosines[groups == g].mean() for g in range(20)]
    assert result["ci95"] == pytest.approx(list(bootstrap_mean_ci(np.array(prompt_means), 2000, seed=3)))
    item_level = bootstrap_mean_ci(cosines, 2000, seed=3)
    # the item-level interval pretends to 200 independent values: ~sqrt(10) times too narrow
    assert np.diff(result["ci95"])[0] > 2.5 * np.diff(item_level)[0]


def test_read_prompts_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        '{"id": "a", "prompt": "calm piano"}\n\n{"id": 7, "prompt": "ein Walzer, langsam"}\n', "utf-8"
    )
    assert read_prompts(jsonl) == {"a": "calm piano", "7": "ein Walzer, langsam"}
    csv = tmp_path / "p.csv"
    csv.write_text('id,prompt\na,"calm, slow piano"\nb,rock\n', encoding="utf-8")
    assert read_prompts(csv) == {"a": "calm, slow piano", "b": "rock"}
    csv.write_text("a,x\na,y\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2: id 'a' is listed twice"):
        read_prompts(csv)
    csv.write_text('id,prompt\na,"a calm waltz,\nthen a storm"\na,again\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 4: id 'a' is listed twice"):  # the row's own line
        read_prompts(csv)
    csv.write_text('id,prompt\na,"a calm waltz,\nthen a storm"\n', encoding="utf-8")
    assert read_prompts(csv) == {"a": "a calm waltz,\nthen a storm"}  # the line break stays
    jsonl.write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        read_prompts(jsonl)
    for line in ('{"id": "a", "prompt": null}', '{"id": "a", "prompt": 3}', '{"id": null, "prompt": "x"}'):
        jsonl.write_text(f'{{"id": "b", "prompt": "ok"}}\n{line}\n', encoding="utf-8")
        with pytest.raises(InputError, match="line 2: 'id' must be a string or integer and 'prompt'"):
            read_prompts(jsonl)


def test_matching_rules():
    assert candidate_ids("rock/p01.take2.wav")[:2] == ["rock/p01.take2", "rock/p01"]
    paths = ["p01.wav", "p01.2.wav", "p02/s1.mid", "rock/p03.abc", "zzz.wav"]
    matches, unmatched, missing = match_generated(paths, ["p01", "p02", "p03", "p04"])
    assert matches == [(0, "p01"), (1, "p01"), (2, "p02"), (3, "p03")]
    assert unmatched == ["zzz.wav"] and missing == ["p04"]


class LookupModel(InMemoryModel):
    def __init__(self, table):
        self.table = table

    def encode_texts(self, inputs, batch_size=32, normalize=True, show_progress=False):
        out = np.stack([self.table[x] for x in inputs])
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


def save_folder(root, vectors, names):
    root.mkdir(parents=True)
    for vector, name in zip(vectors, names):
        np.save(root / f"{name}.npy", vector[None].astype(np.float32))
    return root


def test_run_on_embedding_folders(tmp_path, rng):
    prompts = {f"p{i}": f"prompt number {i}" for i in range(6)}
    (tmp_path / "prompts.jsonl").write_text(
        "\n".join(json.dumps({"id": k, "prompt": v}) for k, v in prompts.items()), encoding="utf-8"
    )
    text = {v: rng.normal(size=4) for v in prompts.values()}  # 4 dimensions < 7 items: no N < D warning
    names = ["p0", "p1", "p2", "p3", "p4", "p4.b", "extra"]
    gen = rng.normal(size=(len(names), 4))
    ref = rng.normal(size=(40, 4)) + 1.0
    save_folder(tmp_path / "gen", gen, names)
    save_folder(tmp_path / "ref", ref, [f"r{i}" for i in range(40)])
    out = tmp_path / "score.json"
    result = run_gen_score(
        tmp_path / "gen",
        LookupModel(text),
        prompts_file=tmp_path / "prompts.jsonl",
        reference=tmp_path / "ref",
        embeddings=True,
        settings=GenScoreSettings(fd_bootstrap=20),
        json_out=out,
    )
    assert (
        json.loads(out.read_text(encoding="utf-8"))["clamp3_score"]["score"]
        == result["clamp3_score"]["score"]
    )
    items = {item["path"]: item for item in result["items"]}
    assert set(items) == {f"{n}.npy" for n in names if n != "extra"}
    for n, vector in zip(names[:-1], gen):
        pid = n.split(".")[0]
        expected = vector @ text[prompts[pid]] / np.linalg.norm(vector) / np.linalg.norm(text[prompts[pid]])
        assert items[f"{n}.npy"]["score"] == pytest.approx(expected) and items[f"{n}.npy"]["id"] == pid
    # p4 has two samples: the score is the mean of per-prompt means, the item mean is beside it
    by_prompt = {p["id"]: p for p in result["prompts"]}
    assert by_prompt["p4"]["n"] == 2
    assert by_prompt["p4"]["score"] == pytest.approx(
        (items["p4.npy"]["score"] + items["p4.b.npy"]["score"]) / 2
    )
    assert result["clamp3_score"]["score"] == pytest.approx(np.mean([p["score"] for p in result["prompts"]]))
    assert result["clamp3_score"]["item_mean"] == pytest.approx(
        np.mean([i["score"] for i in result["items"]])
    )
    assert result["clamp3_score"]["n"] == 6 and result["clamp3_score"]["n_prompts"] == 5
    assert result["clamp3_score"]["unmatched_files"] == ["extra.npy"]
    assert result["clamp3_score"]["prompts_without_files"] == ["p5"]
    assert result["frechet"]["distance"] == pytest.approx(frechet_distance(gen, ref), rel=1e-6)


def test_gen_score_cli_with_tiny_model(tiny_model_dir, tmp_path, caplog):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    gen.mkdir()
    ref.mkdir()
    tunes = ["C D E F|G A B c|]", "c B A G|F E D C|]", "C E G c|G E C2|]", "D F A d|A F D2|]"]
    for i, tune in enumerate(tunes):
        (gen / f"song{i}.abc").write_text(f"X:1\nL:1/4\nM:4/4\nK:C\n{tune}\n", encoding="utf-8")
        (ref / f"ref{i}.abc").write_text(f"X:1\nL:1/8\nM:4/4\nK:G\n{tune}\n", encoding="utf-8")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(
        "id,prompt\nsong0,a calm waltz\nsong1,una canción\nsong2,ein Lied\nsong3,一首歌\n", "utf-8"
    )
    out = tmp_path / "gs.json"
    argv = ["gen-score", "--prompts", str(prompts), "--generated", str(gen), "--reference", str(ref)]
    argv += ["--model", str(tiny_model_dir), "--device", "cpu", "--bootstrap", "200", "--fd-bootstrap", "10"]
    with caplog.at_level(logging.WARNING, "clamp3"):
        assert main([*argv, "--json", str(out), "--no-progress"]) == 0
    # the library's warning (4 items in 32 dimensions) is one log line of its module, not
    # Python's file:line form with the source line
    assert [r.name for r in caplog.records if "N < D" in r.getMessage()] == ["clamp3.evaluate.frechet"]
    result = json.loads(out.read_text(encoding="utf-8"))
    score = result["clamp3_score"]
    assert score["n"] == 4 and -1 <= score["score"] <= 1
    assert score["ci95"][0] <= score["score"] <= score["ci95"][1]
    assert sorted(item["id"] for item in result["items"]) == ["song0", "song1", "song2", "song3"]
    assert all(-1 <= item["score"] <= 1 for item in result["items"])
    fd = result["frechet"]
    assert fd["distance"] >= 0 and fd["n_generated"] == fd["n_reference"] == 4 and fd["dim"] == 32

    # per-item values equal cosines of encode() outputs
    from clamp3 import Clamp3Pipeline

    pipeline = Clamp3Pipeline.from_pretrained(tiny_model_dir)
    by_id = {item["id"]: item["score"] for item in result["items"]}
    pieces = pipeline.encode_files([gen / "song1.abc"])
    text = pipeline.encode_texts(["una canción"])
    assert by_id["song1"] == pytest.approx(float(pieces[0] @ text[0]), abs=1e-5)


def test_frechet_only_on_embedding_folders_needs_no_model(tmp_path, rng, capsys):
    gen = save_folder(tmp_path / "gen", rng.normal(size=(30, 6)), [f"g{i}" for i in range(30)])
    ref = save_folder(tmp_path / "ref", rng.normal(size=(30, 6)) + 2, [f"r{i}" for i in range(30)])
    argv = [
        "gen-score",
        "--generated",
        str(gen),
        "--reference",
        str(ref),
        "--embeddings",
        "--fd-bootstrap",
        "5",
    ]
    assert main([*argv, "--fd-normalize", "--no-progress"]) == 0  # default --model saas is never loaded
    printed = json.loads(capsys.readouterr().out)
    assert printed["frechet"]["normalized"] is True and printed["frechet"]["distance"] > 0
    assert "clamp3_score" not in printed
    assert main(["gen-score", "--generated", str(gen)]) == 2  # nothing to compute


def test_a_bad_piece_is_reported_and_left_out(tiny_model_dir, tmp_path, capsys, caplog):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for folder in (gen, ref):
        folder.mkdir()
    for i, tune in enumerate(["C D E F|G A B c|]", "c B A G|F E D C|]", "C E G c|G E C2|]"]):
        (gen / f"song{i}.abc").write_text(f"X:1\nL:1/4\nM:4/4\nK:C\n{tune}\n", encoding="utf-8")
        (ref / f"ref{i}.abc").write_text(f"X:1\nL:1/8\nM:4/4\nK:G\n{tune}\n", encoding="utf-8")
    (gen / "song3.mid").write_bytes(b"not a midi file")
    (ref / "ref3.mid").write_bytes(b"MThd")
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("id,prompt\nsong0,a waltz\nsong1,una canción\nsong2,Lied\nsong3,a reel\n", "utf-8")
    out = tmp_path / "gs.json"
    argv = ["gen-score", "--prompts", str(prompts), "--generated", str(gen), "--reference", str(ref)]
    argv += ["--model", str(tiny_model_dir), "--device", "cpu", "--bootstrap", "50", "--fd-bootstrap", "5"]
    with caplog.at_level(logging.WARNING, "clamp3"):
        assert main([*argv, "--json", str(out), "--no-progress"]) == 1
    assert any("N < D" in r.getMessage() for r in caplog.records)
    err = capsys.readouterr().err
    assert f"error: {gen / 'song3.mid'}: corrupt MIDI file" in err and f"error: {ref / 'ref3.mid'}" in err
    assert "2 files could not be read and are not scored" in err
    result = json.loads(out.read_text(encoding="utf-8"))
    assert [f["path"] for f in result["failed_files"]] == ["song3.mid"]
    assert [f["path"] for f in result["frechet"]["failed_files"]] == ["ref3.mid"]
    assert result["n_generated"] == 3 and result["frechet"]["n_reference"] == 3
    assert result["clamp3_score"]["n"] == 3 and result["clamp3_score"]["prompts_without_files"] == ["song3"]
