"""A small client for OpenAI-compatible chat endpoints (vLLM, llama.cpp server, Ollama, hosted APIs).

``POST {base_url}/chat/completions``; retries, the request budget and the concurrency limit are
the shared transport's (:mod:`clamp3.curate.transport`, whose module doc gives the failure policy).
"""

from __future__ import annotations

from typing import Any

from clamp3.curate.transport import ApiClient


class ChatClient(ApiClient):
    """Chat completions with retries, a concurrency limit and a request budget.

    ``base_url`` is the API root including the version, e.g. ``http://127.0.0.1:8000/v1``.
    ``json_mode`` sends ``response_format={"type": "json_object"}``, which vLLM, llama.cpp, Ollama
    and OpenAI honour; turn it off for servers that reject the field.
    """

    route = "/chat/completions"

    def __init__(self, base_url: str, model: str, *, json_mode: bool = True, **transport: Any) -> None:
        """``transport``: the keyword options of :class:`~clamp3.curate.transport.ApiClient`."""
        super().__init__(base_url, model, **transport)
        self.json_mode = json_mode

    def chat(self, messages: list[dict[str, str]], temperature: float = 0.0) -> str:
        """The assistant's reply text to ``messages``; raises the transport's errors."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "seed": self.seed,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        return self._request(body, _reply_text)


def _reply_text(body: Any) -> str:
    return body["choices"][0]["message"]["content"] or ""
