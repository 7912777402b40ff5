"""A small client for OpenAI-compatible chat endpoints (vLLM, llama.cpp server, Ollama, hosted APIs).

``POST {base_url}/chat/completions`` with ``httpx`` (thread-safe connection pool, precise timeouts).
Thread-safe: the pipeline calls :meth:`ChatClient.chat` from several worker threads.

Failure policy:

* 429, 500, 502, 503, 504, timeouts, connection errors and unparseable 200 bodies are transient:
  retried up to ``RetryPolicy.max_retries`` times. The wait is the server's ``Retry-After``
  (seconds or an HTTP date) when given, else exponential backoff with full jitter
  (uniform in ``[0, min(max_delay, base_delay * 2**attempt)]``, so many workers do not retry in
  lock-step); both are capped at ``max_delay``. Retries exhausted -> :class:`LLMUnavailable`.
* 401, 403 and 404 mean the URL, model or key is wrong for every item -> :class:`LLMConfigError`.
* other 4xx (e.g. a prompt longer than the context) concern one request -> :class:`LLMRequestError`.
* every HTTP attempt, retries included, takes one unit of the :class:`RequestBudget`; an empty
  budget raises :class:`BudgetExhausted` before anything is sent.
* at most ``concurrency`` requests are in flight at once; backoff waits do not hold a slot.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
CONFIG_STATUS = frozenset({401, 403, 404})


class BudgetExhausted(RuntimeError):
    """The run's request budget is spent; nothing was sent."""


class LLMUnavailable(RuntimeError):
    """Transient failures outlasted the retries (the item can be tried again in a later run)."""


class LLMRequestError(RuntimeError):
    """The server refused this request for good (a 4xx other than 401/403/404/429)."""


class LLMConfigError(RuntimeError):
    """The endpoint, model name or API key is wrong (401/403/404): no request can succeed."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries after the first attempt; delays in seconds."""

    max_retries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter delay before retry number ``attempt`` (0-based)."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2**attempt))


class RequestBudget:
    """A thread-safe count of HTTP requests this run may still send (``None`` = unlimited)."""

    def __init__(self, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("request budget must be >= 0")
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted(f"request budget of {self.limit} spent")
            self.used += 1

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self.limit is not None and self.used >= self.limit


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date); ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ChatClient:
    """Chat completions with retries, a concurrency limit and a request budget.

    ``base_url`` is the API root including the version, e.g. ``http://127.0.0.1:8000/v1``.
    ``timeout`` (seconds) bounds connecting and each read. ``json_mode`` sends
    ``response_format={"type": "json_object"}``, which vLLM, llama.cpp, Ollama and OpenAI honour;
    turn it off for servers that reject the field.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        concurrency: int = 4,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        json_mode: bool = True,
        seed: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.concurrency = concurrency
        self.model = model
        self.json_mode = json_mode
        self.seed = seed
        self.budget = budget or RequestBudget()
        self.retry = retry or RetryPolicy()
        self.stats: Counter[str] = Counter()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout), limits=limits)
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, messages: list[dict[str, str]], temperature: float = 0.0) -> str:
        """The assistant's reply text to ``messages``; raises the errors listed in the module doc."""
        body: dict = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "seed": self.seed,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        for attempt in range(self.retry.max_retries + 1):
            self.budget.take()
            self._count("requests")
            reason, wait = self._attempt(body)
            if isinstance(reason, _Reply):
                return reason.text
            if attempt == self.retry.max_retries:
                raise LLMUnavailable(f"{reason} (after {attempt + 1} attempts)")
            with self._lock:
                self.stats["retries"] += 1
                delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
            delay = min(delay, self.retry.max_delay)
            log.debug("LLM request failed (%s); retrying in %.2fs", reason, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, body: dict) -> tuple[_Reply | str, float | None]:
        """One HTTP request: a reply, or ``(transient reason, Retry-After seconds or None)``."""
        with self._slots:
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TimeoutException:
                self._count("timeout")
                return "timeout", None
            except httpx.TransportError as exc:
                self._count("connection_error")
                return f"connection error: {exc}", None
        status = response.status_code
        self._count(f"http_{status}")
        if status in TRANSIENT_STATUS:
            return f"HTTP {status}", parse_retry_after(response.headers.get("retry-after"))
        if status in CONFIG_STATUS:
            raise LLMConfigError(f"{self.url}: HTTP {status}: {response.text[:300]}")
        if status >= 400:
            raise LLMRequestError(f"HTTP {status}: {response.text[:300]}")
        try:
            return _Reply(response.json()["choices"][0]["message"]["content"] or ""), None
        except (ValueError, KeyError, IndexError, TypeError):
            # Some proxies answer 200 with an HTML error page; treat it like a 5xx.
            self._count("bad_body")
            return "unparseable response body", None

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1


@dataclass(frozen=True)
class _Reply:
    text: str
