"""``clamp3 benchmark DATASET PATH`` end to end on small replicas with the tiny model: every row
equals a brute-force computation (each input embedded alone, every rank counted by a loop), the
``--json`` file has exactly the documented schema, reruns resume from the cache, ties follow
``--ties``, and the demo benchmark keeps its names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmark_support import manifest, midicaps, musiccaps, song_describer, tone, wikimt, wikimt_x

from clamp3.cli.main import main
from clamp3.evaluate.benchmarks import embedder, loader
from clamp3.evaluate.benchmarks.runner import ROW_FIELDS, run_benchmark

LAYOUTS = {
    "wikimt-x": lambda root: wikimt_x(root, n=4, translations=("de",)),
    "song-describer": lambda root: song_describer(root, tracks=4),
    "midicaps": lambda root: midicaps(root, n=6),
    "wikimt": lambda root: wikimt(root, n=4),
    "musiccaps": lambda root: musiccaps(root, n=5, missing=1),
    "manifest": lambda root: manifest(root, n=4),
}


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from clamp3 import Clamp3Model

    return Clamp3Model.from_pretrained(tiny_model_dir)


def _encode_all(model, data):
    """The pipeline's ``encode_files`` of every file of a modality and ``encode_texts`` of every
    text, one call each (so the batches, and so the float rounding, are the runner's: the tiny
    model's random vectors are nearly parallel and would reorder on a 1e-7 change)."""
    from clamp3.pipeline import Clamp3Pipeline

    pipe = Clamp3Pipeline(model)
    music = {
        m: dict(zip(sorted(f), pipe.encode_files([str(f[k]) for k in sorted(f)], normalize=False)))
        for m, f in data.music.items()
    }
    texts = dict(zip([q.id for q in data.queries], pipe.encode_texts([q.text for q in data.queries])))
    return music, texts


def _brute_force_row(encoded, data, direction, text_type, language, ties):
    """A row recomputed naively from ``_encode_all``: every rank by a Python loop over every candidate."""
    music, texts = encoded
    source, target = direction.split("->")
    keys = sorted(music[target])
    cand = {k: music[target][k].astype(np.float64) for k in keys}
    if source == "text":
        queries = [
            (q.key, texts[q.id])
            for q in data.queries
            if (q.text_type, q.language) == (text_type, language) and q.key in cand
        ]
    else:
        queries = [(k, music[source][k]) for k in keys if k in music[source]]
    rr, hits = [], {1: [], 10: [], 100: []}
    for key, vector in queries:
        v = vector.astype(np.float64)
        sims = {k: float(v @ c / np.linalg.norm(v) / np.linalg.norm(c)) for k, c in cand.items()}
        above = sum(1 for k in keys if sims[k] > sims[key] + 1e-12)
        tied = sum(1 for k in keys if k != key and abs(sims[k] - sims[key]) <= 1e-12)
        positions = [above + 1] if ties == "optimistic" else list(range(above + 1, above + tied + 2))
        rr.append(np.mean([1.0 / p for p in positions]))
        for k in hits:
            hits[k].append(np.mean([p <= k for p in positions]))
    return {
        "n_queries": len(queries),
        "n_candidates": len(keys),
        "mrr": float(np.mean(rr)),
        **{f"hit@{k}": float(np.mean(v)) for k, v in hits.items()},
    }


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_row_equals_the_brute_force_computation(name, tiny, tmp_path):
    root = LAYOUTS[name](tmp_path / "data")
    run = run_benchmark(name, root, tiny, tmp_path / "out", model_label="tiny", languages=None, plot=False)
    data = loader(name).load(root, None, tmp_path / "out" / "inputs")
    assert run.rows, name
    encoded = _encode_all(tiny, data)
    for row in run.rows:
        expected = _brute_force_row(
            encoded, data, row["direction"], row["text_type"], row["language"], "expected"
        )
        for field, value in expected.items():
            assert row[field] == pytest.approx(value, abs=1e-6), (name, row["direction"], field)
    directions = {(r["direction"], r["text_type"], r["language"]) for r in run.rows}
    if name == "wikimt-x":
        assert ("text->sheet", "scene", "en") in directions and (
            "text->audio",
            "background",
            "de",
        ) in directions
        assert ("midi->audio", None, None) in directions and len(directions) == 5 * 3 + 6
    if name == "musiccaps":
        assert run.rows[0]["n_candidates"] == 4  # the clip that was not downloaded is left out
    ranks = [json.loads(line) for line in (tmp_path / "out" / "ranks.jsonl").read_text().splitlines()]
    assert len(ranks) == sum(r["n_queries"] for r in run.rows)


def test_json_schema_resume_and_optimistic_ties(tiny, tiny_model_dir, tmp_path, monkeypatch, capsys):
    root = manifest(tmp_path / "m", n=3)
    # A fourth piece whose recording is the same audio as p0: candidate ties in text->audio.
    record = {
        "id": "p9",
        "music": {"audio": "rec/p0.wav"},
        "texts": {"caption": "an echo of the first piece"},
    }
    with open(root, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    out, rows_file = tmp_path / "out", tmp_path / "rows.json"
    args = [
        "benchmark",
        "manifest",
        str(root),
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--quiet",
        "--no-plot",
    ]
    assert main([*args, "--json", str(rows_file)]) == 0
    printed = capsys.readouterr().out
    assert "text->audio" in printed and "paper (none)" in printed
    rows = json.loads(rows_file.read_text())
    assert list(rows) == ["rows"] and all(tuple(r) == ROW_FIELDS for r in rows["rows"])
    assert json.loads((out / "rows.json").read_text()) == rows
    assert len(list((out / "cache").glob("*/*.npz"))) == 1  # compacted after the run
    # Rerun: every vector comes from the cache; the model is never asked again.
    monkeypatch.setattr(embedder.Embedder, "_vectors", lambda *a, **k: pytest.fail("embedded again"))
    assert main([*args, "--json", str(rows_file)]) == 0
    assert json.loads(rows_file.read_text()) == rows
    assert main([*args, "--json", str(tmp_path / "opt.json"), "--ties", "optimistic"]) == 0
    expected = {(r["direction"], r["language"]): r for r in rows["rows"]}
    optimistic = {
        (r["direction"], r["language"]): r for r in json.loads((tmp_path / "opt.json").read_text())["rows"]
    }
    audio = ("text->audio", "en")
    assert optimistic[audio]["mrr"] >= expected[audio]["mrr"]
    data = loader("manifest").load(root, None, out / "inputs")
    monkeypatch.undo()
    brute = _brute_force_row(_encode_all(tiny, data), data, "text->audio", "caption", "en", "optimistic")
    assert optimistic[audio]["mrr"] == pytest.approx(brute["mrr"], abs=1e-6)
    assert optimistic[audio]["mrr"] > expected[audio]["mrr"]  # p0/p9 tie: the official counts it a win


def test_bad_file_fails_alone_and_is_recorded(tiny, tiny_model_dir, tmp_path, capsys):
    from clamp3.utils.errorlog import read_errors

    root = song_describer(tmp_path / "sdd", tracks=4)
    bad = root / "audio" / "01" / "1001.2min.mp3"
    bad.write_bytes(b"not audio")
    run = run_benchmark("song-describer", root, tiny, tmp_path / "out", model_label="tiny", plot=False)
    assert run.rows[0]["n_candidates"] == 3
    # The log is every stage's errors.jsonl (path, reason, time), with the piece it belonged to.
    [error] = read_errors(tmp_path / "out" / "errors.jsonl")
    assert error.path == str(bad) and error.reason and error.extra == {"modality": "audio", "key": "1001"}
    # The command scores the rest, names the file on stderr and ends with status 1, as embed does.
    argv = ["benchmark", "song-describer", str(root), "--model", str(tiny_model_dir), "--quiet", "--no-plot"]
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: " in err and "1 inputs could not be embedded" in err
    bad.unlink()
    tone(bad, 3)  # mended: the rerun embeds it and succeeds
    assert main([*argv, "--out", str(tmp_path / "cli")]) == 0
    assert read_errors(tmp_path / "cli" / "errors.jsonl") == []


def test_published_figures_are_matched_for_an_official_tag(tiny, tmp_path):
    from clamp3.evaluate.benchmarks import published

    root = wikimt_x(tmp_path / "wx", n=3, translations=("ru",), with_midi=False)
    run = run_benchmark(
        "wikimt-x",
        root,
        tiny,
        tmp_path / "out",
        model_label="tiny",
        languages=["en", "ru"],
        published_as="c2",
        plot=True,
    )
    by = {(r["direction"], r["text_type"], r["language"]): r for r in run.rows}
    assert by[("text->sheet", "background", "en")]["published"]["mrr"] == 0.4028
    assert by[("text->sheet", "background", "ru")]["published"]["mrr"] == 0.3614
    assert by[("text->sheet", "scene", "en")]["published"] is None
    assert by[("sheet->audio", None, None)]["published"]["mrr"] == 0.0543
    assert run.plot is not None and run.plot.read_bytes()[:4] == b"\x89PNG"
    assert all(f["table"] and f["source"] for f in published.figures()["figures"])
    assert (
        published.guess_model("weights_clamp3_saas_h_size_768.pth") == "saas"
        and published.guess_model("x/best") is None
    )


def test_cli_usage_errors_exit_2(tiny_model_dir, tmp_path, capsys):
    assert main(["benchmark", "nosuchset", str(tmp_path)]) == 2
    assert "unknown data set 'nosuchset'" in capsys.readouterr().err
    assert main(["benchmark", "midicaps"]) == 2
    assert main(["benchmark", "midicaps", str(tmp_path / "absent"), "--model", str(tiny_model_dir)]) == 2
    assert (
        main(["benchmark", "midicaps", str(tmp_path), "--subset", "dev", "--model", str(tiny_model_dir)]) == 2
    )
    assert "choose from test, all" in capsys.readouterr().err
    tone(tmp_path / "x.wav", 1)
    assert main(["benchmark", "midicaps", str(tmp_path), "--model", str(tiny_model_dir), "--quiet"]) == 2
    assert "no train.json here" in capsys.readouterr().err
    assert (
        main(["benchmark", "demo", str(tmp_path / "nocorpus"), "--quiet"]) == 2
    )  # demo form, before any model
    assert "not a corpus folder" in capsys.readouterr().err


def test_optimistic_rows_equal_clamp3_eval_on_the_same_vectors(tiny, tmp_path):
    """``--ties optimistic`` is the official ``clamp3_eval.py`` rule: the same vectors laid out
    as official query/reference folders give the same metrics through ``clamp3 eval``."""
    from clamp3.evaluate.score import evaluate_retrieval

    root = song_describer(tmp_path / "sdd", tracks=4)
    tone(root / "audio" / "01" / "1003.2min.mp3", 3)  # same audio as track 1001: a tie for its caption
    run = run_benchmark(
        "song-describer",
        root,
        tiny,
        tmp_path / "out",
        model_label="tiny",
        subset="all",
        ties="optimistic",
        plot=False,
    )
    data = loader("song-describer").load(root, "all", tmp_path / "out" / "inputs")
    embed = embedder.Embedder(tiny)
    (tmp_path / "q").mkdir()
    (tmp_path / "r").mkdir()
    keys = sorted(data.music["audio"])
    for key, vector in zip(keys, embed.files([data.music["audio"][k] for k in keys])):
        np.save(tmp_path / "r" / f"{key}.npy", vector[None])  # the official layout: (1, D) per file
    for query, vector in zip(data.queries, embed.texts([q.text for q in data.queries])):
        np.save(tmp_path / "q" / f"{query.key}.{query.id}.npy", vector[None])  # several queries per key
    official = evaluate_retrieval(tmp_path / "q", tmp_path / "r", ties="optimistic")
    assert any(record["n_tied"] for record in official.records)  # the copied track ties
    row = run.rows[0]
    assert official.n_queries == row["n_queries"] == 6 and official.n_references == row["n_candidates"] == 4
    for name in ("mrr", "hit@1", "hit@10", "hit@100"):
        assert row[name] == pytest.approx(official.metrics[name], abs=1e-6)
