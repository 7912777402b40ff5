"""The OpenAI-compatible embeddings client and the on-disk passage-vector cache, against the
scripted server's hashed bag-of-words ``/v1/embeddings`` on 127.0.0.1: batching, normalisation,
the shared retry/budget policy, cache reuse, resume after a failure mid-embedding, refusals."""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np
import pytest
from curate_support import ChatServer, FakeCurator, HashedEmbedder, write_demo_corpus

from clamp3.curate.documents import Passage, read_documents
from clamp3.curate.embedding_cache import EmbeddingCache, embed_passages
from clamp3.curate.embeddings import EmbeddingClient, unit_float32
from clamp3.curate.transport import (
    BudgetExhausted,
    LLMConfigError,
    LLMRequestError,
    LLMUnavailable,
    RequestBudget,
    RetryPolicy,
)

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)


def _serve(embedder: HashedEmbedder | None) -> ChatServer:
    return ChatServer(FakeCurator(), embeddings=embedder)


def _passages(tmp_path, n: int) -> list[Passage]:
    _, docs = write_demo_corpus(tmp_path, n)
    return read_documents(docs)[0]


def test_batches_are_sent_in_order_normalised_and_rows_follow_index():
    fake = HashedEmbedder(reverse=True)  # rows answered last-first: the client must sort by index
    texts = ["Song one", "Song two by Anna", "三 民歌", "a b c", "Song one"]
    with _serve(fake) as server, EmbeddingClient(server.url, "hash-v1", api_key="k", batch_size=2) as client:
        vectors = client.embed(texts)
        sent = [entry["request"] for entry in server.requests("embeddings")]
        assert {entry["authorization"] for entry in server.log} == {"Bearer k"}
    assert [r["input"] for r in sent] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {r["model"] for r in sent} == {"hash-v1"}
    assert vectors.dtype == np.float32 and vectors.shape == (5, fake.dim)
    expected = unit_float32(np.array([fake.vector(t) for t in texts]))
    np.testing.assert_array_equal(vectors, expected)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    assert vectors[0] @ vectors[1] > 0 and vectors[0] @ vectors[2] == 0  # "song" shared / nothing shared


def test_transient_failures_are_retried_and_every_attempt_takes_budget():
    fake = HashedEmbedder(plan={"alpha": ["500", "429", "short", "ok"]})
    budget = RequestBudget(5)
    with _serve(fake) as server, EmbeddingClient(server.url, "m", budget=budget, retry=FAST) as client:
        vector = client.embed_batch(["alpha"])
        assert client.stats["retries"] == 3 and client.stats["bad_body"] == 1 and budget.used == 4
        client.embed_batch(["beta"])  # the fifth request
        with pytest.raises(BudgetExhausted):
            client.embed_batch(["gamma"])
        assert len(server.log) == 5  # nothing was sent once the budget was spent
    np.testing.assert_array_equal(vector[0], unit_float32(np.array([fake.vector("alpha")]))[0])

    with (
        _serve(HashedEmbedder(plan={"x": ["500"]})) as server,
        EmbeddingClient(server.url, "m", retry=FAST) as client,
        pytest.raises(LLMUnavailable, match=r"/v1/embeddings: HTTP 500 \(after 4 attempts\)"),
    ):
        client.embed_batch(["x"])


def test_refusals_are_not_retried():
    with _serve(HashedEmbedder(plan={"long": ["400"]})) as server:
        with EmbeddingClient(server.url, "m", retry=FAST) as client, pytest.raises(LLMRequestError):
            client.embed_batch(["a long passage"])
        assert len(server.log) == 1
    # No embeddings route (a chat-only server, or a model it does not serve): wrong for every request.
    with (
        _serve(None) as server,
        EmbeddingClient(server.url, "m", retry=FAST) as client,
        pytest.raises(LLMConfigError, match="/v1/embeddings: HTTP 404"),
    ):
        client.embed_batch(["x"])


def test_cache_is_reused_keyed_by_text_and_model_and_compacted(tmp_path):
    passages = _passages(tmp_path, 7)
    duplicate = Passage("copy.md", 0, passages[0].title, passages[0].text)  # same text, another doc
    passages = [*passages, duplicate]
    root = tmp_path / "out.embeddings"
    fake = HashedEmbedder()
    with _serve(fake) as server, EmbeddingClient(server.url, "m", batch_size=2, concurrency=2) as client:
        first = embed_passages(passages, client, root, show_progress=False)
        assert (first.cached, first.embedded, first.refused) == (0, 7, [])  # the duplicate once
        assert fake.inputs == 7 and fake.requests == 4
        np.testing.assert_array_equal(first.vectors[7], first.vectors[0])

        again = embed_passages(passages, client, root, show_progress=False)
        assert fake.requests == 4  # the second run made no embedding request
        assert (again.cached, again.embedded) == (8, 0)
        np.testing.assert_array_equal(again.vectors, first.vectors)  # bit for bit

        extra = Passage("new.md", 0, "New", "A new passage about Song 3.")
        grown = embed_passages([*passages, extra], client, root, show_progress=False)
        assert fake.inputs == 8 and (grown.cached, grown.embedded) == (8, 1)
        np.testing.assert_array_equal(grown.vectors[:8], first.vectors)

    [folder] = root.iterdir()
    assert folder.name.startswith("m-") and [p.suffix for p in folder.iterdir()] == [".npz"]  # merged
    assert len(EmbeddingCache(root, "m").load()) == 8
    other = HashedEmbedder()
    with _serve(other) as server, EmbeddingClient(server.url, "m2", batch_size=4) as client:
        embed_passages(passages, client, root, show_progress=False)
    assert other.inputs == 7  # another model name: nothing reused
    assert len(list(root.iterdir())) == 2


def test_failure_mid_embedding_keeps_finished_batches_and_the_rerun_embeds_only_the_rest(tmp_path):
    passages = _passages(tmp_path, 9)
    root = tmp_path / "out.embeddings"
    with (
        _serve(HashedEmbedder(plan={"Town5": ["500"]})) as server,
        EmbeddingClient(server.url, "m", batch_size=2, concurrency=1, retry=FAST) as client,
        pytest.raises(LLMUnavailable),
    ):
        embed_passages(passages, client, root, show_progress=False)
    saved = len(EmbeddingCache(root, "m").load())
    assert 4 <= saved < 9  # the batches before the failing one ([4, 5]) are on disk

    fake = HashedEmbedder()
    with _serve(fake) as server, EmbeddingClient(server.url, "m", batch_size=2) as client:
        resumed = embed_passages(passages, client, root, show_progress=False)
    assert fake.inputs == 9 - saved and resumed.cached == saved
    with _serve(HashedEmbedder()) as server, EmbeddingClient(server.url, "m", batch_size=2) as client:
        reference = embed_passages(passages, client, tmp_path / "ref.embeddings", show_progress=False)
    np.testing.assert_array_equal(resumed.vectors, reference.vectors)
    assert len(EmbeddingCache(root, "m").shards()) == 1


def test_unreadable_shard_is_skipped_and_its_passages_embedded_again(tmp_path, caplog):
    passages = _passages(tmp_path, 3)
    root = tmp_path / "out.embeddings"
    with _serve(HashedEmbedder()) as server, EmbeddingClient(server.url, "m") as client:
        embed_passages(passages, client, root, show_progress=False)
    [shard] = EmbeddingCache(root, "m").shards()
    shard.write_bytes(b"not a zip archive")
    fake = HashedEmbedder()
    with (
        caplog.at_level(logging.WARNING),
        _serve(fake) as server,
        EmbeddingClient(server.url, "m") as client,
    ):
        again = embed_passages(passages, client, root, show_progress=False)
    assert "unreadable embedding shard" in caplog.text and fake.inputs == 3 and again.cached == 0
    assert len(EmbeddingCache(root, "m").load()) == 3


def test_a_refused_passage_is_left_out_and_a_refusing_endpoint_stops(tmp_path):
    passages = _passages(tmp_path, 5)
    root = tmp_path / "out.embeddings"
    with (
        _serve(HashedEmbedder(plan={"Town2": ["400"]})) as server,
        EmbeddingClient(server.url, "m", batch_size=3, concurrency=1) as client,
    ):
        result = embed_passages(passages, client, root, show_progress=False)
        # [0, 1, 2] refused as a batch, then one at a time; [3, 4] in one request.
        assert [len(e["request"]["input"]) for e in server.requests("embeddings")] == [3, 1, 1, 1, 2]
        assert result.refused == ["song002.md#0"] and result.embedded == 4
        assert (
            not result.vectors[2].any() and np.linalg.norm(result.vectors[[0, 1, 3, 4]], axis=1).min() > 0.99
        )

        again = embed_passages(passages, client, root, show_progress=False)  # only the refused one is retried
        assert again.refused == ["song002.md#0"] and again.cached == 4
        assert len(server.requests("embeddings")) == 6

    with (
        _serve(HashedEmbedder(plan={"Song": ["400"]})) as server,
        EmbeddingClient(server.url, "m", batch_size=3, concurrency=1) as client,
        pytest.raises(LLMConfigError, match="every input of a batch was refused"),
    ):
        embed_passages(passages, client, tmp_path / "b.embeddings", show_progress=False)


def test_shard_format_is_as_documented(tmp_path):
    """Readable without clamp3: keys are SHA-256(model + NUL + title + newline + text)."""
    passages = _passages(tmp_path, 3)
    root = tmp_path / "out.embeddings"
    fake = HashedEmbedder()
    with _serve(fake) as server, EmbeddingClient(server.url, "org/Model v2", batch_size=2) as client:
        embed_passages(passages, client, root, show_progress=False)
    [folder] = root.iterdir()
    assert folder.name == "org-Model-v2-" + hashlib.sha256(b"org/Model v2").hexdigest()[:8]
    [shard] = folder.iterdir()
    with np.load(shard, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["keys", "vectors"]
        keys, vectors = archive["keys"], archive["vectors"]
    assert keys.dtype == np.uint8 and keys.shape == (3, 32) and vectors.dtype == np.float32
    by_key = {k.tobytes(): v for k, v in zip(keys, vectors)}
    for p in passages:
        key = hashlib.sha256(b"org/Model v2\0" + f"{p.title}\n{p.text}".encode()).digest()
        expected = unit_float32(np.array([fake.vector(f"{p.title}\n{p.text}")]))[0]
        np.testing.assert_array_equal(by_key[key], expected)


def test_passage_batches_run_concurrently_up_to_the_limit(tmp_path):
    passages = _passages(tmp_path, 12)
    with (
        _serve(HashedEmbedder(delay=0.2)) as server,
        EmbeddingClient(server.url, "m", batch_size=2, concurrency=3) as client,
    ):
        started = time.monotonic()
        embed_passages(passages, client, tmp_path / "e", show_progress=False)
        elapsed = time.monotonic() - started
        assert server.max_in_flight == 3 and len(server.log) == 6
    assert elapsed >= 0.38  # six 0.2 s requests, never more than three at a time
