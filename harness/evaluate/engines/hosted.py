"""A hosted model behind an OpenAI-compatible chat endpoint, as an `Engine` (generation only).

`compare --baseline-model NAME=openai:MODEL@URL` puts such a model on the same suite items
as the base and the adapters. It talks through the judges' HTTP client
(`harness.evaluate.judges.openai_client.OpenAIBackend`: timeouts, retries with backoff,
bounded concurrency, the API key kept out of every message), so a hosted baseline fails,
retries and redacts exactly as a hosted judge does.

A hosted model has no tokenizer we can see. The engine seam still holds: its "tokens" are
the UTF-8 bytes of the request (the chat messages as JSON), so `suite_eval` renders, hashes,
batches and caches hosted prompts as it does any other (the cache key covers the endpoint,
the model and the exact request), and `generate` turns the bytes back into messages.
Token counts in the run log are the server's `usage`, when it reports one.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

from harness.errors import ConfigError, HarnessError
from harness.hashing import sha256_bytes, sha256_json
from harness.types import Generation, GenerationParams

API_KEY_ENV = "HARNESS_BASELINE_API_KEY"  # read when set; a server without auth needs none


class _RequestCodec:
    """Stands in for a tokenizer: the request as UTF-8 bytes, and back."""

    chat_template = "messages are sent to the server as they are"

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True,
                            tokenize: bool = False) -> str:
        return json.dumps({"messages": messages}, ensure_ascii=False, sort_keys=True)

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    @staticmethod
    def messages(ids: Sequence[int]) -> list[dict[str, str]]:
        """The chat messages of an encoded request; a plain-text prompt becomes one user turn."""
        text = bytes(ids).decode("utf-8")
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
            return doc["messages"]
        return [{"role": "user", "content": text}]


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to its first stop string (servers may ignore `stop`), and whether one was found."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


class HostedEngine:
    """An `Engine` over one hosted chat model; only `generate` (no log-likelihoods).

    Args:
        model: The served model name.
        base_url: The server's OpenAI-style /v1 root.
        batch_size: Requests per generation unit (the grain of caching and resuming).
        concurrency: Requests in flight at once.
        timeout: Seconds per HTTP request.
    """

    kind = "openai"
    max_length = 0
    context_length = None  # the server cuts or refuses; nothing to fit here

    def __init__(self, model: str, base_url: str, batch_size: int = 16, concurrency: int = 4, timeout: float = 60.0):
        from harness.evaluate.judges.spec import JudgeSpec

        self.tokenizer = _RequestCodec()
        self.adapters: dict[str, Any] = {}
        self.batch_size = batch_size
        self._spec = JudgeSpec.model_validate({
            "backend": "openai", "base_url": base_url, "model": model, "timeout": timeout, "retries": 3,
            "concurrency": concurrency, "temperature": 0.0,
            "api_key_env": API_KEY_ENV if os.environ.get(API_KEY_ENV) else None,
            # the spec is the judges'; a criterion is required there and unused here
            "criteria": [{"name": "reply", "description": "unused: a hosted baseline arm answers suite prompts"}]})
        self._backends: dict[str, Any] = {}

    def _backend(self, params: GenerationParams):
        from harness.evaluate.judges.openai_client import OpenAIBackend

        key = sha256_json(params.key())
        if key not in self._backends:
            extra = {"stop": list(params.stop)[:4]} if params.stop else {}  # OpenAI takes at most 4
            spec = self._spec.model_copy(update={"max_tokens": params.max_new_tokens, "extra_body": extra})
            self._backends[key] = OpenAIBackend(spec)
        return self._backends[key]

    @property
    def base(self):
        return self

    @property
    def identity(self) -> dict[str, Any]:
        """Who answers: backend, endpoint (no credentials) and model; never the API key."""
        from harness.evaluate.judges.openai_client import display_url

        return {"backend": "openai", "base_url": display_url(self._spec.base_url or ""), "model": self._spec.model}

    def ping(self, timeout: float = 5.0) -> None:
        """Fails now, before any model loads, when the endpoint is down or refuses the key.

        Raises:
            ConfigError: one line naming the endpoint.
        """
        probe = self._backend(GenerationParams(max_new_tokens=1))
        try:
            probe.ping(timeout)
        except HarnessError as exc:  # the judges' wording, said of this endpoint
            raise ConfigError(f"hosted baseline '{self._spec.model}': {exc.message.replace('judge endpoint', 'endpoint')}",
                              "start the server, or fix MODEL@URL in --baseline-model (the /v1 root)") from None

    def model_key(self, variant: str) -> str:
        return sha256_json({"hosted": self.identity, "temperature": self._spec.temperature})

    def generate(self, variant: str, prompts: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
        from harness.evaluate.judges.base import ChatRequest

        requests = []
        for ids in prompts:
            msgs = self.tokenizer.messages(ids)
            requests.append(ChatRequest(key=sha256_bytes(bytes(ids)),
                                        messages=tuple((m["role"], m["content"]) for m in msgs)))
        done: dict[int, Any] = {}
        started = time.perf_counter()
        self._backend(params).complete_many(requests, lambda req, c: done.__setitem__(id(req), c))
        latency = (time.perf_counter() - started) / max(len(requests), 1)
        out = []
        for req in requests:
            c = done.get(id(req))
            if c is None or not c.ok:
                why = c.error if c is not None else "no reply"
                raise HarnessError(f"hosted baseline '{self._spec.model}' at {self.identity['base_url']} failed: {why}",
                                   "re-run the same command to resume once the server answers (finished batches "
                                   "are cached)")
            text, stopped = cut_at_stop(c.text or "", params.stop)
            out.append(Generation(text=text, prompt_tokens=c.prompt_tokens, new_tokens=c.completion_tokens,
                                  latency_s=latency, stopped_by="stop" if stopped else "eos"))
        return out

    def loglikelihood(self, variant, requests, *, max_length=None, progress=None):
        raise ConfigError("a hosted baseline cannot score benchmarks (no log-likelihoods over a chat API)",
                          "hosted baselines answer --suite items only")

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
