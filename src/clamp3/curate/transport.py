"""HTTP transport shared by the OpenAI-compatible clients (chat in ``llm``, embeddings in ``embeddings``).

``POST {base_url}{route}`` with ``httpx`` (thread-safe connection pool, precise timeouts).
Thread-safe: the pipeline calls the clients from several worker threads.

Failure policy (the same for every endpoint):

* 429, 500, 502, 503, 504, timeouts, connection errors and unparseable 200 bodies are transient:
  retried up to ``RetryPolicy.max_retries`` times. The wait is the server's ``Retry-After``
  (seconds or an HTTP date) when given, else exponential backoff with full jitter
  (uniform in ``[0, min(max_delay, base_delay * 2**attempt)]``, so many workers do not retry in
  lock-step); both are capped at ``max_delay``. Retries exhausted -> :class:`LLMUnavailable`.
* 401, 403, 404 and 501 mean the URL, model or key is wrong for every request ->
  :class:`LLMConfigError`. (501 is what llama.cpp's server answers on a route it was not started
  for, e.g. embeddings without ``--embeddings``.)
* other 4xx/5xx (e.g. a prompt longer than the context) concern one request -> :class:`LLMRequestError`.
* every HTTP attempt, retries included, takes one unit of the :class:`RequestBudget`; an empty
  budget raises :class:`BudgetExhausted` before anything is sent. Clients given the same budget
  object share it.
* at most ``concurrency`` requests are in flight at once per client; backoff waits do not hold a slot.

The error names say "LLM" for history; they are raised for the embeddings endpoint too, and
their messages name the URL.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpx

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
CONFIG_STATUS = frozenset({401, 403, 404, 501})

T = TypeVar("T")


class BudgetExhausted(RuntimeError):
    """The run's request budget is spent; nothing was sent."""


class LLMUnavailable(RuntimeError):
    """Transient failures outlasted the retries (the item can be tried again in a later run)."""


class LLMRequestError(RuntimeError):
    """The server refused this request for good (a 4xx other than 401/403/404/429)."""


class LLMConfigError(RuntimeError):
    """The endpoint, model name or API key is wrong (401/403/404/501): no request can succeed.
    ``clamp3 curate`` exits with :attr:`exit_status` (one line on stderr, as for bad input)."""

    exit_status = 4


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


class ApiClient:
    """One OpenAI-compatible route with retries, a concurrency limit and a request budget.

    Subclasses set ``route`` (e.g. ``"/chat/completions"``) and build request bodies; the answer
    is turned into a value by a ``parse`` function that raises ``ValueError``/``KeyError``/
    ``IndexError``/``TypeError`` on an unusable body. ``base_url`` is the API root including the
    version, e.g. ``http://127.0.0.1:8000/v1``. ``timeout`` (seconds) bounds connecting and each
    read. ``stats`` counts requests, retries and outcomes (``http_<status>``, ``timeout``, ...).
    """

    route = ""

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
        seed: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.url = base_url.rstrip("/") + self.route
        self.model = model
        self.concurrency = concurrency
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, body: dict[str, Any], parse: Callable[[Any], T]) -> T:
        """``parse(response JSON)`` of the first usable answer; raises the errors of the module doc."""
        for attempt in range(self.retry.max_retries + 1):
            self.budget.take()
            self._count("requests")
            outcome, wait = self._attempt(body, parse)
            if isinstance(outcome, _Answer):
                return outcome.value
            if attempt == self.retry.max_retries:
                raise LLMUnavailable(f"{self.url}: {outcome} (after {attempt + 1} attempts)")
            with self._lock:
                self.stats["retries"] += 1
                delay = wait if wait is not None else self.retry.backoff(attempt, self._rng)
            delay = min(delay, self.retry.max_delay)
            log.debug("request to %s failed (%s); retrying in %.2fs", self.url, outcome, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _attempt(self, body: dict[str, Any], parse: Callable[[Any], T]) -> tuple[_Answer | str, float | None]:
        """One HTTP request: an answer, or ``(transient reason, Retry-After seconds or None)``."""
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
            raise LLMRequestError(f"{self.url}: HTTP {status}: {response.text[:300]}")
        try:
            return _Answer(parse(response.json())), None
        except (ValueError, KeyError, IndexError, TypeError):
            # Some proxies answer 200 with an HTML error page; treat it like a 5xx.
            self._count("bad_body")
            return "unparseable response body", None

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1


@dataclass(frozen=True)
class _Answer:
    value: Any
