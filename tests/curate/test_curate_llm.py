"""The OpenAI-compatible client against a scripted server on 127.0.0.1: retries, Retry-After,
timeouts, permanent errors, the request budget and the concurrency limit."""

from __future__ import annotations

import email.utils
import threading
import time

import pytest
from curate_support import ChatServer, Reply

from clamp3.curate.llm import ChatClient
from clamp3.curate.transport import (
    BudgetExhausted,
    LLMConfigError,
    LLMRequestError,
    LLMUnavailable,
    RequestBudget,
    RetryPolicy,
    parse_retry_after,
)

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=5.0)
MESSAGES = [{"role": "user", "content": "hi"}]


def sequence(*replies: Reply):
    """A script answering with ``replies`` in order (the last one repeats)."""
    lock = threading.Lock()
    calls = []

    def script(request):
        with lock:
            calls.append(request)
            return replies[min(len(calls) - 1, len(replies) - 1)]

    script.calls = calls
    return script


def test_success_sends_model_messages_and_json_mode():
    script = sequence(Reply("hello"))
    with ChatServer(script) as server, ChatClient(server.url, "m1", api_key="k", concurrency=1) as client:
        assert client.chat(MESSAGES) == "hello"
    request = script.calls[0]
    assert request["model"] == "m1" and request["messages"] == MESSAGES
    assert request["response_format"] == {"type": "json_object"} and request["temperature"] == 0.0


def test_429_waits_for_retry_after_then_succeeds():
    script = sequence(Reply(status=429, headers={"Retry-After": "1"}), Reply("ok"))
    with ChatServer(script) as server, ChatClient(server.url, "m", retry=FAST) as client:
        assert client.chat(MESSAGES) == "ok"
        first, second = server.log
    assert first["status"] == 429 and second["status"] == 200
    # The backoff alone would wait at most 0.01 s: the gap shows the server's Retry-After was honoured.
    assert second["start"] - first["end"] >= 0.95
    assert client.stats["http_429"] == 1 and client.stats["retries"] == 1


def test_5xx_and_timeouts_are_retried():
    script = sequence(Reply(status=500), Reply(status=503), Reply("late", delay=1.0), Reply("ok"))
    with ChatServer(script) as server, ChatClient(server.url, "m", timeout=0.3, retry=FAST) as client:
        assert client.chat(MESSAGES) == "ok"
    assert [e["status"] for e in server.log[:2]] == [500, 503]
    assert client.stats["timeout"] == 1 and client.stats["retries"] == 3 and client.stats["requests"] == 4


def test_retries_exhausted_raise_unavailable():
    with ChatServer(sequence(Reply(status=502))) as server:
        with (
            ChatClient(server.url, "m", retry=FAST) as client,
            pytest.raises(LLMUnavailable, match="HTTP 502"),
        ):
            client.chat(MESSAGES)
        assert len(server.log) == FAST.max_retries + 1


def test_permanent_errors_are_not_retried():
    with ChatServer(sequence(Reply(status=400))) as server:
        with ChatClient(server.url, "m", retry=FAST) as client, pytest.raises(LLMRequestError):
            client.chat(MESSAGES)
        assert len(server.log) == 1
    with (
        ChatServer(sequence(Reply(status=401))) as server,
        ChatClient(server.url, "m", retry=FAST) as client,
        pytest.raises(LLMConfigError, match="401"),
    ):
        client.chat(MESSAGES)


def test_budget_counts_every_attempt_and_stops_before_sending():
    budget = RequestBudget(3)
    script = sequence(Reply(status=500), Reply("ok"))
    with ChatServer(script) as server, ChatClient(server.url, "m", budget=budget, retry=FAST) as client:
        assert client.chat(MESSAGES) == "ok"  # two requests: the 500 and its retry
        assert client.chat(MESSAGES) == "ok"  # the third
        with pytest.raises(BudgetExhausted):
            client.chat(MESSAGES)
    assert len(script.calls) == 3 and budget.used == 3 and budget.exhausted


def test_concurrency_limit_holds_under_load():
    with (
        ChatServer(sequence(Reply("ok", delay=0.2))) as server,
        ChatClient(server.url, "m", concurrency=3) as client,
    ):
        threads = [threading.Thread(target=client.chat, args=(MESSAGES,)) for _ in range(9)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert server.max_in_flight == 3
    assert elapsed >= 0.55  # 9 requests of 0.2 s, three at a time


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
