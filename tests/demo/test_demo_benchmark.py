"""The benchmark on its own: baselines, direction scoring, table and plot, and ``clamp3 benchmark``
with a model other than the demo's (tiny preset: its audio goes through the WAV front-end path)."""

from __future__ import annotations

import itertools
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from demo_support import LANGS, ready_corpus

from clamp3.demo.benchmark import (
    EMERGENT,
    Direction,
    collection_reference,
    directions,
    random_baseline,
    score_direction,
    slug,
)
from clamp3.demo.report import format_comparison, format_table, plot_benchmark


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6])
def test_random_baseline_equals_the_average_over_all_orders(n):
    # Every ordering of n candidates is equally likely: average 1/rank and rank <= k over all of them.
    perms = list(itertools.permutations(range(n)))
    ranks = [p.index(0) + 1 for p in perms]
    mrr = sum(Fraction(1, r) for r in ranks) / len(ranks)
    base = random_baseline(n)
    assert base["mrr"] == pytest.approx(float(mrr), abs=1e-15)
    assert base["hit@1"] == pytest.approx(sum(r <= 1 for r in ranks) / len(ranks), abs=1e-15)
    assert base["hit@10"] == pytest.approx(sum(r <= 10 for r in ranks) / len(ranks), abs=1e-15)


def test_random_baseline_formula_for_large_n():
    n = 38
    assert random_baseline(n)["mrr"] == pytest.approx(sum(1 / k for k in range(1, n + 1)) / n)
    assert random_baseline(n)["hit@10"] == pytest.approx(10 / 38)
    with pytest.raises(ValueError):
        random_baseline(0)


def test_collection_reference_ranks_the_own_collection_first():
    ref = collection_reference({"a": "bach", "b": "bach", "c": "essen"})
    assert ref["mrr"] == pytest.approx((0.75 + 0.75 + 1.0) / 3)  # H_2 / 2 = 0.75 in a pair, 1 alone
    assert ref["hit@1"] == pytest.approx((0.5 + 0.5 + 1.0) / 3) and ref["hit@10"] == 1.0
    assert collection_reference({}) is None


def test_directions_cover_text_per_language_and_emergent_pairs():
    found = directions(LANGS)
    assert len(found) == 3 * len(LANGS) + len(EMERGENT) == 21
    assert len({d.label for d in found}) == len(found)
    assert Direction("text_de", "midi").label == "text (de) -> midi"
    assert Direction("audio", "sheet").group == "emergent" and Direction("audio", "sheet").language is None
    assert {(d.query, d.target) for d in found if d.group == "emergent"} == set(EMERGENT)


def test_score_direction_perfect_tied_and_partial():
    rng = np.random.default_rng(0)
    vecs = {f"p{i}": rng.normal(size=8) for i in range(6)}
    row, ranks = score_direction(vecs, vecs)
    assert row["mrr"] == row["hit@1"] == 1.0 and set(ranks.values()) == {1.0}
    same = {k: np.ones(8) for k in vecs}  # every candidate ties: a uniformly random order
    row, ranks = score_direction(same, same)
    assert set(ranks.values()) == {3.5}  # expected rank (N + 1) / 2
    # Metrics are expectations over tie-breaks (= the random baseline), not of the expected rank.
    assert row["mrr"] == pytest.approx(sum(1 / r for r in range(1, 7)) / 6)
    assert row["hit@1"] == pytest.approx(1 / 6) and row["hit@10"] == 1.0
    assert row["mrr"] == pytest.approx(row["random"]["mrr"])
    # Only ids present on both sides count; extra queries without a target are left out.
    row, ranks = score_direction({**vecs, "extra": np.ones(8)}, {k: v for k, v in vecs.items() if k != "p5"})
    assert row["n_candidates"] == 5 and "extra" not in ranks and "p5" not in ranks


def test_slug_makes_labels_safe_folder_names():
    assert slug("runs/demo/train/align/best") == "runs-demo-train-align-best"
    assert slug("saas") == "saas" and slug("///") == "model"


def _entry(label: str, mrr: float) -> dict:
    rows = []
    for d in directions(LANGS):
        metrics = {"mrr": mrr, "hit@1": mrr / 2, "hit@10": min(1.0, 2 * mrr)}
        head = {"direction": d.label, "query": d.query, "target": d.target, "language": d.language}
        rows.append({**head, "group": d.group, "n_queries": 10, "n_candidates": 10, **metrics,
                     "random": random_baseline(10)})  # fmt: skip
    return {
        "model": label,
        "corpus": "c",
        "split": "test",
        "n_pieces": 10,
        "audio_input": "audio",
        "rows": rows,
    }


def test_table_lists_every_row_and_plot_is_a_png(tmp_path):
    table = format_table(_entry("a", 0.5))
    assert all(d.label in table for d in directions(LANGS))
    assert "0.500" in table and f"{random_baseline(10)['mrr']:.3f}" in table
    path = plot_benchmark({"a": _entry("a", 0.5), "b": _entry("b", 0.25)}, tmp_path / "p.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_comparison_puts_every_model_of_the_corpus_side_by_side():
    long_label = "runs/demo/train/align/best"
    models = {"mini-demo": _entry("mini-demo", 0.5), long_label: _entry(long_label, 0.25)}
    models[long_label]["rows"][0] = {**models[long_label]["rows"][0], "n_candidates": 9}  # one file failed
    elsewhere = {**_entry("saas", 0.75), "split": "validation"}
    assert format_comparison({"mini-demo": models["mini-demo"]}, "mini-demo") == ""  # one model: nothing
    text = format_comparison({**models, "saas": elsewhere}, "mini-demo")
    lines = text.splitlines()
    assert "mini-demo" in lines[1] and ".../align/best" in lines[1] and "random" in lines[1]
    assert lines[2].split() == ["direction", "N"] + ["MRR", "Hit@1"] * 3
    chance = random_baseline(10)
    rows = [line for line in lines[4:] if not line.startswith("emergent")]
    assert len(rows) == len(directions(LANGS)) + 2  # then the two notes
    for d, line in zip(directions(LANGS), rows):
        assert line.startswith(d.label)
        cells = line[len(d.label) :].split()
        second = ["0.250*", "0.125*"] if d.label == "text (en) -> sheet" else ["0.250", "0.125"]
        assert cells == ["10", "0.500", "0.250", *second, f"{chance['mrr']:.3f}", f"{chance['hit@1']:.3f}"]
    assert f"models: {long_label}" in text  # the clipped header names it in full
    assert "not compared (other corpus or split): saas (validation of c)" in text
    assert "saas" not in lines[1]


# ------------------------------------------------------------------ any model, through the CLI
@pytest.fixture()
def small_corpus(tmp_path, parity_dir) -> Path:
    """The demo tests' ready-made corpus with 4 test pieces (parity ABC / MTF files, sine WAVs,
    5 languages) whose manifest names the mini model's 128-d features, i.e. not the tiny model's."""
    ready_corpus(tmp_path, parity_dir, n_test=4, pieces=4)
    return tmp_path / "corpus"


def test_benchmark_cli_with_another_model_joins_the_table(small_corpus, tiny_model_dir, tmp_path, capsys):
    from clamp3.cli.main import main

    out = tmp_path / "bench"
    args = ["benchmark", str(small_corpus), "--model", str(tiny_model_dir), "--out", str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "text (en) -> sheet" in printed and "<- correct" in printed
    data = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    entry = data["models"][str(tiny_model_dir)]
    assert entry["audio_input"] == "audio"  # 128-d mini features do not fit the 32-d tiny tower
    assert entry["n_pieces"] == 4 and len(entry["rows"]) == 21
    for row in entry["rows"]:
        assert 0.0 <= row["hit@1"] <= row["mrr"] <= 1.0
    assert (out / "benchmark.png").is_file()
    assert (out / f"map-{slug(str(tiny_model_dir))}.png").is_file()
    assert f"map-{slug(str(tiny_model_dir))}.png" in printed.splitlines()[-1]  # the "written:" line
    # A second model (here: the same weights under another label) lands beside the first.
    renamed = tmp_path / "other"
    shutil.copytree(tiny_model_dir, renamed)
    # ... through the named form `clamp3 benchmark demo CORPUS` (the first call used the earlier form).
    assert (
        main(["benchmark", "demo", str(small_corpus), "--model", str(renamed), "--out", str(out), "--quiet"])
        == 0
    )
    data = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    assert set(data["models"]) == {str(tiny_model_dir), str(renamed)}
    assert data["models"][str(renamed)]["rows"] == entry["rows"]  # same weights, same numbers
    # The text file and the printed report hold both models side by side, not only the latest.
    printed = capsys.readouterr().out
    text = (out / "benchmark.txt").read_text(encoding="utf-8")
    for report in (printed, text):
        assert "every model on corpus" in report
        header = next(line for line in report.splitlines() if "random" in line and "direction" not in line)
        assert "random" in header and str(renamed)[-10:] in header and str(tiny_model_dir)[-10:] in header


def test_benchmark_cli_reports_a_missing_split_without_traceback(
    small_corpus, tiny_model_dir, tmp_path, capsys
):
    from clamp3.cli.main import main

    args = ["benchmark", str(small_corpus), "--model", str(tiny_model_dir), "--split", "validation"]
    assert main([*args, "--out", str(tmp_path / "b"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no evaluation folder for split 'validation'" in err
    assert "the corpus has no 'validation' piece" in err and err.count("\n") == 1


def test_retrained_weights_under_the_same_label_are_embedded_again(small_corpus, tiny_model_dir, tmp_path):
    from clamp3 import Clamp3Model
    from clamp3.demo.benchmark import run_benchmark

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    out = tmp_path / "bench"
    first = run_benchmark(Clamp3Model.from_pretrained(model_dir), small_corpus, out, "m", show_progress=False)
    npy = out / "embeddings" / "m" / "sheet" / "piece0.npy"
    before = np.load(npy)
    # Same weights again: cached vectors are reused (the file is not rewritten).
    stamp = npy.stat().st_mtime_ns
    run_benchmark(
        Clamp3Model.from_pretrained(model_dir), small_corpus, out, "m", show_progress=False, plot=False
    )
    assert npy.stat().st_mtime_ns == stamp
    # Other weights saved under the same label: the cache is dropped and everything re-embedded.
    Clamp3Model.from_preset("tiny", seed=1).save_pretrained(model_dir)
    second = run_benchmark(
        Clamp3Model.from_pretrained(model_dir), small_corpus, out, "m", show_progress=False
    )
    assert not np.allclose(np.load(npy), before)
    assert json.loads((out / "benchmark.json").read_text())["models"]["m"]["rows"] == second.entry["rows"]
    assert second.entry["rows"] != first.entry["rows"]


def test_pieces_gone_from_the_corpus_leave_the_table(small_corpus, tiny_model_dir, tmp_path):
    from clamp3 import Clamp3Model
    from clamp3.demo.benchmark import run_benchmark

    model = Clamp3Model.from_pretrained(tiny_model_dir)
    out = tmp_path / "bench"
    assert (
        run_benchmark(model, small_corpus, out, "t", show_progress=False, plot=False).entry["n_pieces"] == 4
    )
    for path in (small_corpus / "eval" / "test").rglob("piece3.*"):
        path.unlink()  # a rebuilt, smaller corpus: its cached embeddings must not count
    entry = run_benchmark(model, small_corpus, out, "t", show_progress=False, plot=False).entry
    assert entry["n_pieces"] == 3 and all(row["n_candidates"] == 3 for row in entry["rows"])
