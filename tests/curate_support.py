"""A scripted OpenAI-compatible server on 127.0.0.1 for the curate tests (not installed with the package).

:class:`ChatServer` serves ``POST /v1/chat/completions`` and, when given an ``embeddings`` script,
``POST /v1/embeddings`` (other routes answer 404, as a server without that model would) from a
thread (standard library ``ThreadingHTTPServer``: one thread per request, so slow answers overlap
like a real server's) and records every request with its route, start and end time and the most
requests it had in flight.

:class:`HashedEmbedder` is an embeddings script: deterministic hashed bag-of-words vectors
(see its doc), with a fault plan of its own.

:class:`FakeCurator` is a script that reads the built-in prompts and answers like a well-behaved
LLM — grounded annotations made from the metadata and passage titles it was shown, translations
in the requested language — except where a *fault plan* says otherwise. A plan maps an item
title to the answers of its successive requests per stage, e.g. ``{"Song B": {"annotate":
["malformed", "ok"]}}``; the last entry repeats. Faults: ``ok``, ``malformed`` (not JSON),
``invalid`` (misses a field), ``wrong_language``, ``ungrounded`` (invents a year and a place),
``generic`` (the same texts for every item), ``429`` (with ``Retry-After``), ``500``, ``400`` and
``slow`` (answers after ``slow_delay`` seconds, then ``ok``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    """One scripted HTTP answer: ``content`` becomes the assistant message of a 200 reply, unless
    ``payload`` is given, which is then sent as the whole JSON body (an embeddings answer)."""

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    payload: dict[str, Any] | None = None


Script = Callable[[dict[str, Any]], Reply]


class ChatServer:
    """``with ChatServer(script) as server: ... server.url`` (``http://127.0.0.1:PORT/v1``).

    ``log`` entries: ``{"route": "chat" | "embeddings" | other path, "authorization" (header or
    None), "start", "end", "status", "request"}``; :meth:`requests` filters them by route.
    """

    def __init__(self, script: Script, embeddings: Script | None = None) -> None:
        self.script = script
        self.embeddings = embeddings
        self.log: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval so that leaving the ``with`` block takes milliseconds, not 0.5 s.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def requests(self, route: str) -> list[dict[str, Any]]:
        """The logged requests to ``route`` (``"chat"`` or ``"embeddings"``), in completion order."""
        with self._lock:
            return [entry for entry in self.log if entry["route"] == route]

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[str, Reply]:
        if path.endswith("/chat/completions"):
            return "chat", self.script(body)
        if path.endswith("/embeddings") and self.embeddings is not None:
            return "embeddings", self.embeddings(body)
        return path, Reply(status=404)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                start = time.monotonic()
                route, reply = self.path, Reply(status=500)
                try:
                    route, reply = server._answer(self.path, body)
                    time.sleep(reply.delay)
                finally:
                    # Logged before the answer goes out, so that a client holding the answer
                    # always finds its request in the log (logging after sending raced with it).
                    with server._lock:
                        server.in_flight -= 1
                        server.log.append(
                            {
                                "route": route,
                                "authorization": self.headers.get("Authorization"),
                                "start": start,
                                "end": time.monotonic(),
                                "status": reply.status,
                                "request": body,
                            }
                        )
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.status == 200 and reply.payload is not None:
                    payload = reply.payload
                elif reply.status == 200:
                    payload = {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content}}]
                    }
                else:
                    payload = {"error": {"message": f"scripted HTTP {reply.status}"}}
                data = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away, as clients do

            def log_message(self, *args: object) -> None:
                pass

        return Handler


# One calm sentence per language, long enough for language identification.
SENTENCES = {
    "en": "This piece of music is calm and very melodic, and it is often played at concerts.",
    "de": "Dieses Musikstück ist ruhig und sehr melodisch, und es wird oft bei Konzerten gespielt.",
    "fr": "Ce morceau de musique est calme et très mélodieux, et il est souvent joué lors des concerts.",
    "es": "Esta pieza musical es tranquila y muy melódica, y se toca a menudo en los conciertos.",
    "it": "Questo brano musicale è tranquillo e molto melodico, e viene spesso suonato nei concerti.",
    "zh": "这首乐曲安静而富有旋律感，经常在音乐会上演奏。",
}


def prompt_of(request: dict[str, Any]) -> str:
    """The first user message of a chat request (the rendered template)."""
    return next((m["content"] for m in request.get("messages", []) if m.get("role") == "user"), "")


def describe(request: dict[str, Any]) -> tuple[str, str, str | None]:
    """``(stage, title, target language)`` of a request made from the built-in templates."""
    prompt = prompt_of(request)
    target = re.search(r'\(language code "([\w-]+)"\)', prompt)
    title = re.search(r"^title: (.*)$", prompt, re.MULTILINE | re.IGNORECASE)
    return (
        "translate" if target else "annotate",
        title.group(1).strip() if title else "",
        target and target.group(1),
    )


class FakeCurator:
    """A :data:`Script` answering the built-in prompts; see the module doc for fault plans."""

    def __init__(
        self,
        plan: dict[str, dict[str, list[str]]] | None = None,
        *,
        delay: float = 0.0,
        slow_delay: float = 2.0,
        retry_after: str = "1",
    ) -> None:
        self.plan = plan or {}
        self.delay = delay
        self.slow_delay = slow_delay
        self.retry_after = retry_after
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Reply:
        stage, title, target = describe(request)
        with self._lock:
            attempt = self.calls[(title, stage)]
            self.calls[(title, stage)] += 1
        faults = self.plan.get(title, {}).get(stage, ["ok"])
        fault = faults[min(attempt, len(faults) - 1)]
        if fault in ("429", "500", "400"):
            headers = {"Retry-After": self.retry_after} if fault == "429" else {}
            return Reply(status=int(fault), headers=headers, delay=self.delay)
        delay = self.slow_delay if fault == "slow" else self.delay
        if fault == "malformed":
            return Reply('Sure! Here is the JSON: {"genres": ["folk", "tags": [', delay=delay)
        prompt = prompt_of(request)
        if stage == "translate":
            answer = self._translation(prompt, title, "en" if fault == "wrong_language" else target or "en")
        else:
            answer = self._annotation(prompt, title, fault)
        if fault == "invalid":
            answer.pop(next(reversed(answer)))
        return Reply(json.dumps(answer, ensure_ascii=False), delay=delay)

    def _annotation(self, prompt: str, title: str, fault: str) -> dict[str, Any]:
        if fault == "generic":
            text = "A calm and melodic piece with a clear form, often played at concerts and gatherings."
            return {
                "genres": ["folk"],
                "tags": ["calm"],
                **{k: text for k in ("background", "analysis", "description", "scene")},
            }
        if fault == "wrong_language":
            text = f"{SENTENCES['de']} ({title})"
            return {
                "genres": ["Volksmusik"],
                "tags": ["ruhig"],
                **{k: text for k in ("background", "analysis", "description", "scene")},
            }
        artists = re.search(r"^artists: (.*)$", prompt, re.MULTILINE | re.IGNORECASE)
        by = f" by {artists.group(1)}" if artists else ""
        sources = re.findall(r"^\[\d+\] (.+)$", prompt, re.MULTILINE)
        cited = f", as described in {sources[0]}" if sources else ""
        invented = (
            " It was first performed in 1787 in Salzburg before Emperor Joseph."
            if fault == "ungrounded"
            else ""
        )
        return {
            "genres": ["folk", "song"],
            "tags": ["calm", "melodic", title.lower()],
            "background": f"The piece {title} was written{by}{cited}.{invented}",
            "analysis": f"The melody of {title} moves in small steps over a steady pulse.",
            "description": f"A calm and melodic performance of {title}{by}.",
            "scene": f"A quiet evening at home, listening to {title}.",
        }

    def _translation(self, prompt: str, title: str, language: str) -> dict[str, Any]:
        match = re.search(r"Texts \(JSON\):\n(.*?)\n\nRules:", prompt, re.DOTALL)
        fields = json.loads(match.group(1)) if match else {}
        sentence = SENTENCES.get(language, SENTENCES["en"])
        return {k: (v if isinstance(v, list) else f"{sentence} ({title})") for k, v in fields.items()}


# Chinese characters and Japanese kana count one character each: those scripts are written
# without spaces, so a "word" there is a whole clause (which is also why BM25's tokenizer misses them).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_FEATURE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


class HashedEmbedder:
    """An embeddings :data:`Script`: each input becomes the counts of its hashed features.

    Features are the lower-cased words (runs of word characters; stop words and one-letter words
    kept), except that Chinese characters and kana are features one by one. Feature ``f`` adds 1 at
    ``sha256(f) mod dim``, so texts sharing features have a positive cosine and texts sharing
    none a cosine of 0 (up to hash collisions, fixed for a given ``dim``). Vectors are sent
    unnormalised, so tests see the client normalise them.

    ``plan`` maps a trigger substring to the answers to successive requests with an input that
    contains it (the last one repeats): ``ok``, ``429``, ``500``, ``400``, ``404`` or ``short``
    (one row too few: an unusable body). ``reverse`` sends the rows in reverse order (with their
    right ``index``). Every answer waits ``delay`` seconds. ``requests`` and ``inputs`` count the requests answered with vectors and their inputs.
    """

    def __init__(
        self,
        dim: int = 1024,
        plan: dict[str, list[str]] | None = None,
        *,
        reverse: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.dim = dim
        self.plan = plan or {}
        self.reverse = reverse
        self.delay = delay
        self.requests = 0
        self.inputs = 0
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def vector(self, text: str) -> list[float]:
        """The (unnormalised) vector of ``text``."""
        vector = [0.0] * self.dim
        for feature in _FEATURE.findall(text.lower()):
            digest = hashlib.sha256(feature.encode("utf-8")).digest()
            vector[int.from_bytes(digest[:8], "big") % self.dim] += 1.0
        return vector

    def __call__(self, request: dict[str, Any]) -> Reply:
        texts = request["input"] if isinstance(request.get("input"), list) else [request.get("input", "")]
        fault = "ok"
        trigger = next((t for t in self.plan if any(t in text for text in texts)), None)
        with self._lock:
            if trigger is not None:
                faults = self.plan[trigger]
                fault = faults[min(self.calls[trigger], len(faults) - 1)]
                self.calls[trigger] += 1
        if fault in ("429", "500", "400", "404"):
            headers = {"Retry-After": "0"} if fault == "429" else {}
            return Reply(status=int(fault), headers=headers, delay=self.delay)
        rows = [{"object": "embedding", "index": i, "embedding": self.vector(t)} for i, t in enumerate(texts)]
        if fault == "short":
            rows = rows[:-1]
        else:
            with self._lock:
                self.requests += 1
                self.inputs += len(rows)
        payload = {
            "object": "list",
            "model": request.get("model"),
            "data": rows[::-1] if self.reverse else rows,
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        return Reply(payload=payload, delay=self.delay)


def write_demo_corpus(folder: str | os.PathLike, n_items: int) -> tuple[Path, Path]:
    """A small catalogue and document folder under ``folder``: ``(catalogue.csv, docs/)``.

    Item ``i`` is "Song i" by "Composer i" (year 1900 + i) with an ``.abc`` file in ``music/`` and
    one Markdown document naming it, its composer, the year and a place ("Town<i>", also in the
    document title, which :class:`FakeCurator` cites: so kept items show a *used* passage).
    """
    folder = Path(folder)
    (folder / "music").mkdir(parents=True, exist_ok=True)
    (folder / "docs").mkdir(exist_ok=True)
    rows = ["id,filepaths,title,composer,year"]
    for i in range(n_items):
        (folder / "music" / f"item{i:03d}.abc").write_text(
            f"X:{i}\nT:Song {i}\nK:C\nCDEF|\n", encoding="utf-8"
        )
        rows.append(f"item{i:03d},music/item{i:03d}.abc,Song {i},Composer {i},{1900 + i}")
        (folder / "docs" / f"song{i:03d}.md").write_text(
            f"# Song {i} (Printed in Town{i})\n\n"
            f"Song {i} is a folk song by Composer {i}, first printed in {1900 + i} in Town{i}.\n",
            encoding="utf-8",
        )
    catalogue = folder / "catalogue.csv"
    catalogue.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return catalogue, folder / "docs"
