"""Dense and hybrid retrieval for ``clamp3 curate``: what dense finds that BM25 cannot, reciprocal
rank fusion against a naive reference, exact top-k, and whole runs (library and CLI) with the
scripted server's hashed bag-of-words embeddings on 127.0.0.1: cache reuse, budget, resume, errors."""

from __future__ import annotations

import json

import pytest
from curate_support import ChatServer, FakeCurator, HashedEmbedder, write_demo_corpus

from clamp3.curate import (
    ChatClient,
    CurateSettings,
    EmbeddingClient,
    RequestBudget,
    RetryPolicy,
    curate,
    output_paths,
)
from clamp3.curate.catalogue import read_catalogue
from clamp3.curate.documents import Passage, read_documents
from clamp3.curate.embedding_cache import embed_passages
from clamp3.curate.retrieve import (
    Bm25Retriever,
    DenseRetriever,
    HybridRetriever,
    item_query,
    reciprocal_rank_fusion,
)
from clamp3.curate.transport import LLMConfigError
from clamp3.utils.errors import InputError

FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05)
HYBRID = CurateSettings(languages=("de", "fr"), retrieval="hybrid")


def _dense(passages, server_url, tmp_path, **client_options) -> DenseRetriever:
    client = EmbeddingClient(server_url, "hash", **client_options)
    vectors = embed_passages(passages, client, tmp_path / "vectors", show_progress=False).vectors
    return DenseRetriever(passages, vectors, client)


def _naive_rrf(*rankings: list[Passage]) -> list[tuple[str, float]]:
    """Reference fusion: a dict of sums, sorted by score then first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            scores[passage.key] = scores.get(passage.key, 0.0) + 1 / (60 + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def test_dense_finds_a_chinese_title_that_bm25_cannot_and_hybrid_fuses_both(tmp_path):
    passages = [
        Passage("harvest.md", 0, "Harvest songs", "A folk song from England, sung at harvest time."),
        Passage(
            "jasmine.md", 0, "民歌", "茉莉花是一首著名的中国民歌。"
        ),  # "Jasmine Flower is a famous Chinese folk song."
        Passage("march.md", 0, "Marches", "Marching band music with drums and brass."),
    ]
    query = "茉莉花 folk song"  # an item titled 茉莉花 with the genre "folk song"
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        bm25 = Bm25Retriever(passages)
        dense = _dense(passages, server.url, tmp_path)
        # BM25's tokenizer keeps "茉莉花是一首著名的中国民歌" as one token: the Chinese passage never matches.
        assert [p.key for p, _ in bm25.search(query, 3)] == ["harvest.md#0"]
        assert [p.key for p, _ in dense.search(query, 3)] == ["jasmine.md#0", "harvest.md#0"]
        assert [p.key for p, _ in dense.search("茉莉花", 3)] == ["jasmine.md#0"]
        assert bm25.search("茉莉花", 3) == []
        hybrid = HybridRetriever(bm25, dense).search(query, 3)
    # harvest: BM25 rank 1 + dense rank 2; jasmine: dense rank 1 only.
    assert [(p.key, s) for p, s in hybrid] == [
        ("harvest.md#0", round(1 / 61 + 1 / 62, 6)),
        ("jasmine.md#0", round(1 / 61, 6)),
    ]


def test_reciprocal_rank_fusion_order_scores_and_ties():
    a, b, c, d = (Passage(name, 0, name, name) for name in "abcd")
    fused = reciprocal_rank_fusion([[a, b, c], [c, a, d]])
    assert [(p.key, s) for p, s in fused] == [
        ("a#0", 1 / 61 + 1 / 62),
        ("c#0", 1 / 63 + 1 / 61),
        ("b#0", 1 / 62),
        ("d#0", 1 / 63),
    ]
    # Equal scores: the given order decides, not the order of the rankings.
    tied = reciprocal_rank_fusion([[b, a], [a, b]], order={"a#0": 0, "b#0": 1})
    assert [p.key for p, _ in tied] == ["a#0", "b#0"] and tied[0][1] == tied[1][1]
    assert reciprocal_rank_fusion([[], []]) == []


def test_dense_top_k_equals_brute_force_with_ties(tmp_path):
    _, docs = write_demo_corpus(tmp_path, 8)
    passages = read_documents(docs)[0]
    passages += [Passage(f"copy{i}.md", 0, p.title, p.text) for i, p in enumerate(passages[:3])]  # exact ties
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        dense = _dense(passages, server.url, tmp_path, batch_size=4)
        for query in ["Song 1 Composer 1", "Song 2 folk", "printed", "zzz", "Town0 1901"]:
            q = dense.client.embed([query])[0]
            scores = dense.vectors @ q
            reference = sorted(
                (i for i in range(len(passages)) if scores[i] > 0), key=lambda i: (-scores[i], i)
            )
            for k in (1, 2, 3, 5, 50):
                hits = dense.search(query, k)
                assert [p.key for p, _ in hits] == [passages[i].key for i in reference[:k]], (query, k)
        assert [p.key for p, _ in dense.search("Song 1 Composer 1", 2)] == ["song001.md#0", "copy1.md#0"]


def test_hybrid_equals_the_fusion_of_the_two_full_rankings(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, 12)
    items, _ = read_catalogue(catalogue)
    passages = read_documents(docs)[0]
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        bm25, dense = Bm25Retriever(passages), _dense(passages, server.url, tmp_path)
        hybrid = HybridRetriever(bm25, dense, depth=100)
        for index, item in enumerate(items):
            query = item_query(item)
            expected = _naive_rrf(
                [p for p, _ in bm25.search(query, 100)], [p for p, _ in dense.search(query, 100)]
            )
            hits = hybrid.search(query, 5)
            assert [(p.key, s) for p, s in hits] == [(key, round(s, 6)) for key, s in expected[:5]]
            assert hits[0][0].key == f"song{index:03d}.md#0" and hits[0][1] == round(2 / 61, 6)


def _run(server, catalogue, docs, out, settings=HYBRID, *, budget=None, batch_size=4, embed_model="hash"):
    shared = RequestBudget(budget)
    with (
        ChatClient(server.url, "fake", concurrency=2, retry=FAST, budget=shared) as client,
        EmbeddingClient(
            server.url, embed_model, concurrency=2, retry=FAST, budget=shared, batch_size=batch_size
        ) as embedder,
    ):
        return curate(catalogue, docs, out, client, settings, embedder=embedder, show_progress=False)


def test_hybrid_run_reuses_cached_vectors_and_resumes_to_the_same_output(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, 8)
    full, parts = tmp_path / "full" / "train.jsonl", tmp_path / "parts" / "train.jsonl"
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        report = _run(server, catalogue, docs, full)
        assert len(server.requests("embeddings")) == 2 + 8  # 8 passages in batches of 4, 8 queries
        assert report["requests"]["used"] == len(server.log)  # one budget counts both endpoints
    assert report["complete"] and report["kept"] == 8 and report["retrieval"] == "hybrid"
    assert report["embedding"]["model"] == "hash" and report["embedding"]["embedded"] == 8
    provenance = [json.loads(line) for line in output_paths(full)["provenance"].read_text().splitlines()]
    for index, line in enumerate(provenance):
        assert line["passages"][0] == {
            "key": f"song{index:03d}.md#0",
            "title": f"Song {index} (Printed in Town{index})",
            "score": round(2 / 61, 6),  # first for BM25 and for dense
            "used": True,
        }

    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        first = _run(server, catalogue, docs, parts, budget=2 + 5)  # the passages and a few requests
        assert not first["complete"] and "budget of 7 spent" in first["stopped"]
        assert first["embedding"]["embedded"] == 8
        in_first = sum(len(e["request"]["input"]) for e in server.requests("embeddings"))
        second = _run(server, catalogue, docs, parts)
        inputs = [text for e in server.requests("embeddings") for text in e["request"]["input"]]
    assert second["complete"] and (second["embedding"]["cached"], second["embedding"]["embedded"]) == (8, 0)
    # The rerun sent only the queries of the items it did (one each); passages were embedded once.
    assert len(inputs) - in_first == second["embedding"]["requests"]["requests"] == first["pending"]
    assert sorted(t for t in inputs if "\n" in t) == sorted(p.search_text for p in read_documents(docs)[0])
    assert parts.read_bytes() == full.read_bytes()


def test_dense_run_keeps_every_item_with_its_own_passage_first(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, 5)
    out = tmp_path / "out" / "train.jsonl"
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        report = _run(server, catalogue, docs, out, CurateSettings(languages=("de",), retrieval="dense"))
    assert report["complete"] and report["kept"] == 5 and report["retrieval"] == "dense"
    for index, line in enumerate(output_paths(out)["provenance"].read_text().splitlines()):
        first = json.loads(line)["passages"][0]
        assert first["key"] == f"song{index:03d}.md#0" and 0 < first["score"] <= 1 and first["used"]


def test_budget_spent_while_embedding_passages_stops_and_the_rerun_continues(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, 8)
    out = tmp_path / "out" / "train.jsonl"
    fake = HashedEmbedder()
    with ChatServer(FakeCurator(), embeddings=fake) as server:
        stopped = _run(server, catalogue, docs, out, budget=1, batch_size=2)
        assert len(server.log) == 1 and stopped["requests"]["used"] == 1
        assert stopped["stopped"] == "passage embedding stopped: request budget of 1 spent; rerun to continue"
        assert stopped["pending"] == 8 and not stopped["complete"] and "embedded" not in stopped["embedding"]
        done = _run(server, catalogue, docs, out, batch_size=2)
    assert done["complete"] and done["embedding"]["cached"] == 2 and done["embedding"]["embedded"] == 6
    assert fake.inputs == 8 + 8  # every passage once, every query once


def test_endpoint_errors_and_settings_checks(tmp_path):
    catalogue, docs = write_demo_corpus(tmp_path, 6)
    with (
        ChatServer(FakeCurator(), embeddings=None) as server,
        pytest.raises(LLMConfigError, match="embeddings"),
    ):
        _run(server, catalogue, docs, tmp_path / "a" / "train.jsonl")
    report = json.loads(output_paths(tmp_path / "a" / "train.jsonl")["report"].read_text())
    assert report["pending"] == 6 and "endpoint refused" in report["stopped"]

    with ChatServer(FakeCurator(), embeddings=HashedEmbedder(plan={"Song": ["500"]})) as server:
        report = _run(server, catalogue, docs, tmp_path / "b" / "train.jsonl")
    assert not report["complete"] and report["pending"] == 6
    assert report["stopped"].startswith("passage embedding stopped:") and "HTTP 500" in report["stopped"]

    # Only item 3's query contains "Composer 3 1903" (its passage has "Composer 3, first"): refused.
    with ChatServer(FakeCurator(), embeddings=HashedEmbedder(plan={"Composer 3 1903": ["400"]})) as server:
        report = _run(server, catalogue, docs, tmp_path / "c" / "train.jsonl")
    assert report["complete"] and report["rejected"]["llm_refused"] == 1
    lines = output_paths(tmp_path / "c" / "train.jsonl")["provenance"].read_text().splitlines()
    refused = [json.loads(line) for line in lines if "query embedding" in line]
    assert [r["id"] for r in refused] == ["item003"]

    with ChatServer(FakeCurator(), embeddings=HashedEmbedder()) as server:
        with (
            ChatClient(server.url, "fake") as client,
            pytest.raises(InputError, match="needs an embedding model"),
        ):
            curate(catalogue, docs, tmp_path / "d.jsonl", client, HYBRID, show_progress=False)
        _run(server, catalogue, docs, tmp_path / "e.jsonl", CurateSettings(languages=("de", "fr")))
        with pytest.raises(InputError, match="retrieval: 'bm25' -> 'hybrid'"):
            _run(server, catalogue, docs, tmp_path / "e.jsonl")
        with pytest.raises(InputError, match="embed_model: 'hash' -> 'other'"):
            _run(server, catalogue, docs, tmp_path / "a" / "train.jsonl", embed_model="other")


def test_cli_hybrid_end_to_end_and_exit_codes(tmp_path, capsys, monkeypatch):
    from clamp3.cli.main import main

    catalogue, docs = write_demo_corpus(tmp_path, 4)
    out = tmp_path / "out" / "train.jsonl"
    monkeypatch.setenv("CHAT_KEY", "chat-secret")
    monkeypatch.setenv("EMBED_KEY", "embed-secret")
    fake = HashedEmbedder()
    with ChatServer(FakeCurator()) as llm, ChatServer(FakeCurator(), embeddings=fake) as embed_server:
        common = ["--llm-url", llm.url, "--llm-model", "fake", "--api-key-env", "CHAT_KEY", "--no-progress"]
        args = ["curate", str(catalogue), str(docs), str(out), *common]
        assert main([*args, "--retrieval", "dense"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --retrieval dense: needs an embedding model (--embed-model") and err.count("\n") == 1

        # --embed-url defaults to --llm-url, whose server has no embeddings: exit 4, one line naming it.
        assert main([*args, "--retrieval", "hybrid", "--embed-model", "hash"]) == 4
        err = capsys.readouterr().err
        assert err.startswith(f"error: {llm.url}/embeddings: HTTP 404") and err.count("\n") == 1

        hybrid = ["--retrieval", "hybrid", "--embed-model", "hash", "--embed-url", embed_server.url]
        assert main([*args, *hybrid, "--embed-api-key-env", "EMBED_KEY", "--embed-batch-size", "3"]) == 0
        assert {e["authorization"] for e in embed_server.log} == {"Bearer embed-secret"}
        assert {e["authorization"] for e in llm.requests("chat")} == {"Bearer chat-secret"}
        sizes = [len(e["request"]["input"]) for e in embed_server.requests("embeddings")]
        assert (
            sorted(sizes[:2]) == [1, 3] and sizes[2:] == [1] * 4
        )  # 4 passages by 3 (in parallel), 4 queries
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kept"] == 4 and summary["pending"] == 0
    report = json.loads(output_paths(out)["report"].read_text())
    assert report["retrieval"] == "hybrid" and report["embedding"]["url"] == f"{embed_server.url}/embeddings"
    assert fake.inputs == 4 + 4
    assert [p.suffix for p in output_paths(out)["embeddings"].rglob("*") if p.is_file()] == [".npz"]
