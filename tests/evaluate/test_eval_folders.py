"""``score`` and ``eval`` on embedding folders: equal to direct computations, clear errors, CLI files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clamp3.cli.main import main
from clamp3.evaluate.score import evaluate_retrieval, match_key, score_groups, score_pairs
from clamp3.utils.errors import InputError


def _save(root, rel, vector) -> None:
    path = root / f"{rel}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(vector, dtype=np.float32)[None, :])


def _cos(a, b) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b))
    return dot / math.sqrt(sum(float(x) ** 2 for x in a)) / math.sqrt(sum(float(y) ** 2 for y in b))


@pytest.fixture()
def folders(tmp_path, rng):
    """40 reference keys in two sub-folders; keys 30-39 duplicate keys 0-9 (planted ties);
    every key has one query, some two (``.a`` / ``.b`` variants share a reference)."""
    q_dir, r_dir = tmp_path / "q", tmp_path / "r"
    refs = rng.standard_normal((40, 16))
    refs[30:] = refs[:10]
    keys = [f"{'pop' if i % 2 else 'jazz'}/piece{i:02d}" for i in range(40)]
    queries = {}
    for i, key in enumerate(keys):
        _save(r_dir, key, refs[i])
        for variant in ("a", "b") if i % 3 == 0 else ("a",):
            q = refs[i] + 1.5 * rng.standard_normal(16)
            queries[f"{key}.{variant}"] = q
            _save(q_dir, f"{key}.{variant}", q)
    ref_vectors = {k: np.load(r_dir / f"{k}.npy")[0] for k in keys}
    q_vectors = {k: np.load(q_dir / f"{k}.npy")[0] for k in queries}
    return q_dir, r_dir, q_vectors, ref_vectors


def naive_eval(q_vectors, ref_vectors, ties):
    """Ranks and metrics in plain Python. Expected mode averages over every position the correct
    reference can take when its ties are shuffled (each equally likely)."""
    ref_keys = sorted(ref_vectors)
    ranks, positions = [], []
    for qk in sorted(q_vectors):
        scores = [_cos(q_vectors[qk], ref_vectors[rk]) for rk in ref_keys]
        c = ref_keys.index(match_key(qk))
        if ties == "optimistic":
            order = sorted(range(len(scores)), key=lambda j: (scores[j], j == c), reverse=True)
            ranks.append(order.index(c) + 1.0)
            positions.append([order.index(c) + 1])
        else:
            greater = sum(s > scores[c] for s in scores)
            tied = sum(s == scores[c] for s in scores) - 1
            ranks.append(1.0 + greater + tied / 2)
            positions.append(list(range(greater + 1, greater + tied + 2)))
    n = len(positions)
    metrics = {"mrr": sum(sum(1 / p for p in ps) / len(ps) for ps in positions) / n}
    for k in (1, 10, 100):
        metrics[f"hit@{k}"] = sum(sum(p <= k for p in ps) / len(ps) for ps in positions) / n
    return ranks, metrics


@pytest.mark.parametrize("ties", ["expected", "optimistic"])
def test_eval_equals_naive_reference(folders, ties):
    q_dir, r_dir, q_vectors, ref_vectors = folders
    result = evaluate_retrieval(q_dir, r_dir, ties=ties)
    ranks, want = naive_eval(q_vectors, ref_vectors, ties)
    assert [r["rank"] for r in result.records] == ranks
    assert result.metrics == pytest.approx(want, abs=1e-12)
    assert result.n_queries == len(q_vectors) and result.n_references == 40
    tied = [r for r in result.records if r["n_tied"]]
    assert tied and all(r["n_tied"] == 1 for r in tied)  # the planted duplicates, and only them


def test_match_key():
    assert match_key("pop/song.en") == "pop/song"
    assert match_key("a/b/c.d.e") == "a/b/c"
    assert match_key("plain") == "plain"


def test_unmatched_keys_are_listed(folders):
    q_dir, r_dir, _, _ = folders
    (q_dir / "pop" / "piece01.a.npy").unlink()
    _save(q_dir, "extra/lonely.x", np.ones(16))
    with pytest.raises(InputError) as info:
        evaluate_retrieval(q_dir, r_dir)
    message = str(info.value)
    assert "queries without a reference: extra/lonely.x.npy" in message
    assert "references without a query: pop/piece01.npy" in message


def test_ambiguous_references_and_dimension_mismatch(tmp_path, rng):
    _save(tmp_path / "q", "x.a", rng.standard_normal(8))
    _save(tmp_path / "r", "x.one", rng.standard_normal(8))
    _save(tmp_path / "r", "x.two", rng.standard_normal(8))
    with pytest.raises(InputError, match="share a match key: x.one.npy / x.two.npy"):
        score_pairs(tmp_path / "q", tmp_path / "r")
    _save(tmp_path / "r2", "x", rng.standard_normal(9))
    with pytest.raises(InputError, match="8-d but references .* 9-d"):
        evaluate_retrieval(tmp_path / "q", tmp_path / "r2")


def test_score_pairwise_and_group_equal_direct_cosines(folders):
    q_dir, r_dir, q_vectors, ref_vectors = folders
    (q_dir / "jazz" / "piece00.b.npy").rename(q_dir / "jazz" / "orphan.b.npy")
    result = score_pairs(q_dir, r_dir)
    assert result.unmatched_queries == ["jazz/orphan.b.npy"] and result.unmatched_references == []
    assert len(result.records) == len(q_vectors) - 1
    for record in result.records:
        q = np.load(q_dir / record["query"])[0]
        want = _cos(q, ref_vectors[record["key"]])
        assert record["score"] == pytest.approx(want, abs=1e-9)
        assert record["reference"] == f"{record['key']}.npy"
    group = score_groups(q_dir, r_dir)
    q_all = np.stack([np.load(p)[0] for p in sorted(q_dir.rglob("*.npy"))]).astype(np.float64)
    r_all = np.stack(list(ref_vectors.values())).astype(np.float64)
    assert group["score"] == pytest.approx(_cos(q_all.mean(0), r_all.mean(0)), abs=1e-9)
    assert (group["n_queries"], group["n_references"]) == (len(q_vectors), 40)


def test_cli_eval_writes_ranks_metrics_and_plot(folders, tmp_path, capsys):
    q_dir, r_dir, q_vectors, ref_vectors = folders
    out = tmp_path / "out"
    argv = ["eval", str(q_dir), str(r_dir), "--quiet", "--ranks", str(out / "ranks.jsonl")]
    argv += ["--json", str(out / "metrics.json"), "--plot", str(out / "plot.png"), "--ties", "optimistic"]
    assert main(argv) == 0
    table = capsys.readouterr().out
    _, want = naive_eval(q_vectors, ref_vectors, "optimistic")
    assert f"mrr      {want['mrr']:>7.4f}" in table
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["mrr"] == pytest.approx(want["mrr"]) and saved["ties"] == "optimistic"
    ranks = [json.loads(line) for line in (out / "ranks.jsonl").read_text().splitlines()]
    assert len(ranks) == len(q_vectors) and {"query", "reference", "rank", "score"} <= set(ranks[0])
    pytest.importorskip("matplotlib")
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # a figure format matplotlib lacks is refused before the evaluation, and nothing is written
    bad = ["eval", str(q_dir), str(r_dir), "--quiet", "--json", str(tmp_path / "m2.json"), "--plot", "p.txt"]
    assert main(bad) == 2
    assert "p.txt: cannot draw a .txt figure; use one of" in capsys.readouterr().err
    assert not (tmp_path / "m2.json").exists()


def test_cli_score_and_clear_errors(folders, tmp_path, capsys):
    q_dir, r_dir, q_vectors, _ = folders
    assert main(["score", str(q_dir), str(r_dir), "--out", str(tmp_path / "pairs.jsonl")]) == 0
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == len(q_vectors)
    assert main(["score", str(q_dir), str(r_dir), "--group"]) == 0
    assert "score" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), str(r_dir)]) == 2
    assert "no .npy embeddings found" in capsys.readouterr().err


@pytest.mark.parametrize("group", [False, True])
def test_score_refuses_an_unusable_output_before_the_work(folders, tmp_path, capsys, group):
    q_dir, r_dir, _, _ = folders
    flags = ["--group"] if group else []
    assert main(["score", str(q_dir), str(r_dir), *flags, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: is a folder; give a file name"
    deep = tmp_path / "missing" / "deeper" / "pairs.jsonl"
    assert main(["score", str(q_dir), str(r_dir), *flags, "--out", str(deep)]) == 2
    assert f"folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q", "r"]  # nothing written, no temporary
    assert main(["eval", str(q_dir), str(r_dir), "--json", str(deep), "--quiet"]) == 2  # eval alike
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "notes").write_text("a file where a folder should be")
    for under_a_file in (tmp_path / "notes" / "pairs.jsonl", tmp_path / "notes" / "sub" / "pairs.jsonl"):
        assert main(["score", str(q_dir), str(r_dir), *flags, "--out", str(under_a_file)]) == 2
        expected = f"error: {under_a_file}: {tmp_path / 'notes'} is a file, not a folder"
        assert capsys.readouterr().err.strip() == expected  # before the work; the writer failed after it
