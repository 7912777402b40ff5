"""A reduced ``clamp3 demo`` end to end (60 pieces, 4-s audio, a few steps per stage), then a rerun.

Checks the table (every direction, metrics real and in [0, 1], baselines = the exact formula),
the JSON / text / PNG outputs, that training went through the three real stages, and that a
rerun reuses the corpus, the trained model and the embeddings.
"""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction

import pytest

pytest.importorskip("music21")
pytest.importorskip("abctoolkit")
pytest.importorskip("soundfile")
pytest.importorskip("faiss")

from clamp3.corpus.texts import LANGUAGES  # noqa: E402
from clamp3.demo.benchmark import EMERGENT, MUSIC_KINDS, TOP_K  # noqa: E402
from clamp3.demo.pipeline import (  # noqa: E402
    DemoOptions,
    check_workdir,
    demo_stages,
    run_demo,
    settings,
)
from clamp3.utils.io import read_jsonl  # noqa: E402

STEPS = (2, 3, 3)


def _options(workdir) -> DemoOptions:
    return DemoOptions(
        workdir=workdir,
        pieces=60,
        seconds_max=4.0,
        steps=STEPS,
        batch_size=8,
        threads=1,
        workers=2,
        show_progress=False,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "work"
    first = run_demo(_options(work))
    weights = work / "train" / "align" / "best" / "model.safetensors"
    stamps = {
        "weights": weights.stat().st_mtime_ns,
        "manifest": (work / "corpus" / "manifest.json").stat().st_mtime_ns,
        "embedding": (work / "benchmark" / "embeddings" / "mini-demo" / "sheet").stat().st_mtime_ns,
    }
    npys = sorted((work / "benchmark" / "embeddings" / "mini-demo").rglob("*.npy"))
    stamps["npys"] = [p.stat().st_mtime_ns for p in npys]
    second = run_demo(_options(work))
    return work, first, second, stamps, npys


def _harmonic_over_n(n: int) -> float:
    return float(sum(Fraction(1, k) for k in range(1, n + 1)) / n)


def test_table_has_every_direction_with_real_metrics(demo):
    _, first, _, _, _ = demo
    entry = first.benchmark.entry
    expected = [f"text ({lang}) -> {kind}" for kind in MUSIC_KINDS for lang in LANGUAGES]
    expected += [f"{a} -> {b}" for a, b in EMERGENT]
    assert [row["direction"] for row in entry["rows"]] == expected
    test_ids = json.loads((first.workdir / "corpus" / "splits.json").read_text())["test"]
    assert entry["n_pieces"] == len(test_ids) >= 2
    for row in entry["rows"]:
        assert row["n_candidates"] == len(test_ids), row["direction"]
        for key in ("mrr", "hit@1", "hit@10"):
            value = row[key]
            assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (row, key)
        # Every rank is at most N, so MRR >= 1/N; a rank-1 query adds 1 to both MRR and Hit@1.
        assert row["mrr"] >= 1 / row["n_candidates"] - 1e-12
        assert row["hit@1"] <= row["mrr"] and row["hit@1"] <= row["hit@10"]
    reference = entry["collection_reference"]
    assert all(0.0 <= reference[key] <= 1.0 for key in ("mrr", "hit@1", "hit@10"))


def test_random_baselines_are_the_exact_expectation(demo):
    _, first, _, _, _ = demo
    for row in first.benchmark.entry["rows"]:
        n = row["n_candidates"]
        assert row["random"]["mrr"] == pytest.approx(_harmonic_over_n(n), abs=1e-12)
        assert row["random"]["hit@1"] == pytest.approx(1 / n, abs=1e-12)
        assert row["random"]["hit@10"] == pytest.approx(min(10, n) / n, abs=1e-12)


def test_json_text_and_png_are_written(demo):
    work, first, _, _, _ = demo
    out = work / "benchmark"
    data = json.loads((out / "benchmark.json").read_text(encoding="utf-8"))
    assert data["format"] == "clamp3-benchmark/1"
    assert data["models"]["mini-demo"]["rows"] == first.benchmark.entry["rows"]
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmark.txt").read_text(encoding="utf-8")
    assert all(row["direction"] in text for row in first.benchmark.entry["rows"])
    assert all(f"query from {ex['id']}" in text for ex in first.benchmark.entry["examples"])
    assert first.benchmark.plot_path == out / "benchmark.png"
    # the embedding map of the model just benchmarked, named after its label
    assert first.benchmark.map_path == out / "map-mini-demo.png"
    assert first.benchmark.map_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_examples_show_top_results_and_mark_the_correct_piece(demo):
    _, first, _, _, _ = demo
    entry = first.benchmark.entry
    assert {(ex["language"], ex["target"]) for ex in entry["examples"]} >= {("en", "sheet"), ("de", "sheet")}
    for ex in entry["examples"]:
        assert len(ex["results"]) == min(TOP_K, entry["n_pieces"])
        assert ex["query"] and ex["title"]
        scores = [hit["score"] for hit in ex["results"]]
        assert scores == sorted(scores, reverse=True)
        for hit in ex["results"]:
            assert hit["correct"] == (hit["id"] == ex["id"])
        if ex["rank_of_correct"] <= TOP_K - 0.5:  # ranked in the top results -> listed there
            assert any(hit["correct"] for hit in ex["results"])


def test_training_went_through_the_three_stages(demo):
    work, _, _, _, _ = demo
    m3_log = read_jsonl(work / "train" / "m3" / "log.jsonl")
    align_log = read_jsonl(work / "train" / "align" / "log.jsonl")
    done = {r["stage"]: r["step"] for r in m3_log + align_log if r.get("event") == "done"}
    assert done == {"m3-mini": STEPS[0], "audio-mini": STEPS[1], "symbolic-mini": STEPS[2]}
    config = json.loads((work / "train" / "align" / "train_config.json").read_text())
    assert config["init_symbolic_from"] == str(work / "train" / "m3" / "best")
    m3, align = demo_stages(_options(work))
    assert [s.task for s in m3] == ["m3"]
    assert [(s.modality, s.train) for s in align] == [  # audio first: the text tower learns the key there
        ("audio", ["text", "audio"]),
        ("symbolic", ["text", "symbolic"]),
    ]


def test_rerun_reuses_corpus_model_and_embeddings(demo):
    work, first, second, stamps, npys = demo
    assert not any(first.reused[step] for step in ("corpus", "tokenizer", "m3", "align"))
    assert all(second.reused[step] for step in ("corpus", "tokenizer", "m3", "align"))
    weights = work / "train" / "align" / "best" / "model.safetensors"
    assert weights.stat().st_mtime_ns == stamps["weights"]
    assert (work / "corpus" / "manifest.json").stat().st_mtime_ns == stamps["manifest"]
    assert [p.stat().st_mtime_ns for p in npys] == stamps["npys"]  # nothing embedded again
    assert second.benchmark.entry["rows"] == first.benchmark.entry["rows"]
    assert second.seconds["total"] < first.seconds["total"]


def test_other_settings_in_the_same_workdir_are_refused(demo):
    work, _, _, _, _ = demo
    with pytest.raises(ValueError, match="other corpus settings"):
        run_demo(DemoOptions(workdir=work, pieces=61, seconds_max=4.0, steps=STEPS, batch_size=8))
    with pytest.raises(ValueError, match="other corpus settings"):  # transposed copies: another corpus
        run_demo(
            DemoOptions(workdir=work, pieces=60, seconds_max=4.0, transpose=2, steps=STEPS, batch_size=8)
        )
    with pytest.raises(ValueError, match="other corpus settings"):  # titled training texts: another corpus
        run_demo(
            DemoOptions(
                workdir=work, pieces=60, seconds_max=4.0, train_titles=True, steps=STEPS, batch_size=8
            )
        )
    with pytest.raises(ValueError, match="other training settings"):
        run_demo(DemoOptions(workdir=work, pieces=60, seconds_max=4.0, steps=(2, 3, 4), batch_size=8))


def test_a_folder_trained_before_packed_steps_is_reused_and_a_refusal_names_the_keys(tmp_path):
    # A demo folder made before `contrastive.packed` existed holds stage settings without it;
    # packed steps leave the weights as they are (to float rounding), so the folder is taken.
    options = _options(tmp_path)
    stored = settings(options)
    for stage in stored["training"]:
        stage["contrastive"].pop("packed")
    (tmp_path / "demo.json").write_text(json.dumps({"settings": stored}), encoding="utf-8")
    check_workdir(tmp_path, options)
    recorded = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))["settings"]
    assert all("packed" in stage["contrastive"] for stage in recorded["training"])
    other = dataclasses.replace(options, steps=(2, 3, 4))
    with pytest.raises(ValueError, match=r"training\[2\]\.optim\.max_steps: 3 -> 4") as refused:
        check_workdir(tmp_path, other)
    assert "name" not in str(refused.value)  # only the differing keys, not both whole recipes
