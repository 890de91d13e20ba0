"""OpenAI-compatible chat-completions judge over HTTP (OpenAI, vLLM, llama.cpp, Ollama, llm-katan).

Resilience is the point of this module: every attempt has a timeout; 408/409/425/429/5xx,
timeouts and connection errors are retried with capped exponential backoff and jitter (a
server's Retry-After wins over the computed delay); at most `concurrency` requests are in
flight; the budget is checked before every attempt. A 401/403 (bad key) or 404 (wrong URL
or model) would fail identically for every call, so it stops the pass at once instead of
being retried thousands of times. The API key lives only in the HTTP client's headers and
is scrubbed from every error text, which matters because some servers echo it back.
"""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from harness.errors import ConfigError
from harness.evaluate.judges.base import (
    Budget,
    BudgetExhausted,
    CallStats,
    ChatRequest,
    Completion,
    JudgeError,
    Log,
    PingResult,
    one_line,
    read_api_key,
    redact,
    register_secret,
    register_judge,
)
from harness.evaluate.judges.spec import ENV_API_KEY_ENV, ENV_BASE_URL, JudgeSpec

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FATAL_STATUS = frozenset({401, 403, 404})
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer than this is treated as down for this pass


def display_url(url: str) -> str:
    """The URL without user:password, safe to print and to use in cache keys."""
    parts = urlsplit(url)
    if parts.password:
        register_secret(parts.password)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or HTTP date) or `retry-after-ms`; None if absent."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
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
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (0-based): base * 2^attempt, capped, with jitter.

    The jitter draws from the upper half of the window ("equal jitter"), so clients that
    failed together spread out but each still waits at least half the exponential delay.
    """
    window = min(cap, base * (2 ** attempt))
    r = (rng or random).random()
    return window * (0.5 + 0.5 * r)


@register_judge("openai")
class OpenAIBackend:
    """Chat completions against `base_url` (an OpenAI-style /v1 root)."""

    def __init__(self, spec: JudgeSpec, stats: CallStats | None = None, budget: Budget | None = None,
                 log: Log | None = None, transport: Any = None, sleep: Callable[[float], None] | None = None):
        import httpx

        assert spec.base_url
        self.spec = spec
        self.stats = stats or CallStats()
        self.budget = budget or Budget(stats=self.stats)
        self.log = log or (lambda msg: None)
        self.base = spec.base_url.rstrip("/")
        self.url = self.base + "/chat/completions"
        self.shown_url = display_url(self.base)
        key = read_api_key(spec.api_key_env)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._stop = threading.Event()
        self._sleep = sleep
        self._rng = random.Random()
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(spec.timeout, connect=min(spec.timeout, 10.0)),
            limits=httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency),
            transport=transport,
            follow_redirects=False,  # a redirect would resend the Authorization header elsewhere
        )

    # ----------------------------------------------------------------- identity

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.shown_url, "model": self.spec.model}

    def params(self) -> dict[str, Any]:
        return {"temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens,
                "json_mode": self.spec.json_mode, "extra_body": self.spec.extra_body}

    def close(self) -> None:
        self._client.close()

    # ----------------------------------------------------------------- calls

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_done: Callable[[ChatRequest, Completion], None]) -> None:
        """Answer every request with at most `concurrency` in flight.

        `on_done` runs in the calling thread as each reply arrives (so the caller may write
        to SQLite). A fatal error (bad key, unknown model) stops the pass and is raised.
        """
        if not requests:
            return
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=min(self.spec.concurrency, len(requests)),
                                  thread_name_prefix="judge-http")
        futures = {pool.submit(self._complete, r): r for r in requests}
        try:
            for fut in as_completed(futures):
                on_done(futures[fut], fut.result())
        except BaseException:
            self._stop.set()  # wakes backoff sleeps; queued calls never start
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._stop.wait(seconds)

    def _complete(self, request: ChatRequest) -> Completion:
        import httpx

        body: dict[str, Any] = {"temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens,
                                **self.spec.extra_body,
                                "model": self.spec.model, "messages": request.as_dicts()}
        if self.spec.json_mode:
            body["response_format"] = {"type": "json_object"}
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        last_error = "not attempted"
        attempts = 0
        for attempt in range(self.spec.retries + 1):
            if self._stop.is_set():
                return Completion(None, error="stopped", attempts=attempts)
            try:
                self.budget.acquire()
            except BudgetExhausted as exc:
                self.stats.add(failures=1)
                return Completion(None, error=f"budget exhausted: {exc}", attempts=attempts)
            attempts += 1
            retry_after: float | None = None
            try:
                resp = self._client.post(self.url, content=payload)
            except httpx.TimeoutException as exc:
                kind, last_error = "timeout", f"timeout after {self.spec.timeout:g}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                kind, last_error = "connection", f"connection error: {one_line(redact(str(exc)) or type(exc).__name__)}"
            else:
                if resp.status_code == 200:
                    done = self._read_reply(resp)
                    done.attempts = attempts
                    if done.error is None:
                        return done
                    kind, last_error = "bad reply", done.error
                    self.stats.error(kind)
                    self.stats.add(failures=1)
                    return done  # a malformed 200 is the server's answer; retrying gets the same
                detail = self._error_detail(resp)
                kind, last_error = f"HTTP {resp.status_code}", f"HTTP {resp.status_code}: {detail}"
                if resp.status_code in FATAL_STATUS:
                    self.stats.error(kind)
                    raise self._fatal(resp.status_code, detail)
                if resp.status_code not in RETRY_STATUS:
                    self.stats.error(kind)
                    self.stats.add(failures=1)
                    return Completion(None, error=last_error, attempts=attempts)
                retry_after = parse_retry_after(resp.headers)
            self.stats.error(kind)
            if attempt == self.spec.retries:
                break
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_S:
                last_error += f" (server asked to retry after {retry_after:.0f}s)"
                break
            delay = retry_after if retry_after is not None else backoff_delay(
                attempt, self.spec.backoff.base, self.spec.backoff.max, self._rng)
            left = self.budget.seconds_left()
            if left is not None and delay >= left:
                last_error += " (time budget ends before the next retry)"
                break
            self.stats.add(retries=1)
            self._wait(delay)
        self.stats.add(failures=1)
        return Completion(None, error=redact(last_error), attempts=attempts)

    def _read_reply(self, resp: Any) -> Completion:
        try:
            data = resp.json()
            message = data["choices"][0]["message"]
            text = message.get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return Completion(None, error=f"malformed reply: {one_line(redact(resp.text), 200)}")
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        if text is None:
            text = ""
        usage = data.get("usage") or {}
        prompt_tokens = _int(usage.get("prompt_tokens"))
        completion_tokens = _int(usage.get("completion_tokens"))
        if not usage:  # no usage reported: estimate so the token budget still bites
            completion_tokens = max(1, len(text) // 4)
        self.stats.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return Completion(redact(str(text)), prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    @staticmethod
    def _error_detail(resp: Any) -> str:
        try:
            data = resp.json()
            err = data.get("error", data) if isinstance(data, dict) else data
            text = err.get("message", json.dumps(err)) if isinstance(err, dict) else str(err)
        except ValueError:
            text = resp.text or resp.reason_phrase
        return one_line(redact(str(text)), 200)

    def _fatal(self, status: int, detail: str) -> JudgeError:
        if status in (401, 403):
            env = self.spec.api_key_env
            source = f"the key in ${env}" if env else "no API key (api_key_env is not set)"
            return JudgeError(
                f"judge endpoint {self.shown_url} rejected {source}: HTTP {status}: {detail}",
                f"check the key, or set {ENV_API_KEY_ENV} to the name of the variable that holds it",
            )
        return JudgeError(
            f"judge endpoint {self.shown_url} answered HTTP 404 for model '{self.spec.model}': {detail}",
            f"check base_url (the /v1 root) and model, or override them with {ENV_BASE_URL} / HARNESS_JUDGE_MODEL",
        )

    # ----------------------------------------------------------------- ping

    def ping(self, timeout: float = 3.0) -> PingResult:
        """GET /models with a short timeout: reachability, the key, and a readable model list.

        Raises:
            ConfigError: unreachable, the key is refused, any other non-2xx answer, or a
                body that is not an OpenAI-style model list (a JSON object with a `data` list).
        """
        import httpx

        models_url = self.shown_url + "/models"
        started = time.monotonic()
        try:
            resp = self._client.get(self.base + "/models", timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))
        except httpx.TimeoutException:
            raise ConfigError(
                f"judge endpoint {self.shown_url} is unreachable: no answer within {timeout:g}s",
                f"start the judge server, or point {ENV_BASE_URL} at a running one",
            ) from None
        except httpx.TransportError as exc:
            reason = one_line(redact(str(exc)) or type(exc).__name__, 120)
            raise ConfigError(
                f"judge endpoint {self.shown_url} is unreachable: {reason}",
                f"start the judge server, or point {ENV_BASE_URL} at a running one",
            ) from None
        latency = time.monotonic() - started
        if resp.status_code in (401, 403):
            err = self._fatal(resp.status_code, self._error_detail(resp))
            raise ConfigError(err.message, err.hint) from None
        if not 200 <= resp.status_code < 300:
            raise ConfigError(
                f"judge endpoint check failed: GET {models_url} answered HTTP {resp.status_code}: "
                f"{self._error_detail(resp)}",
                f"check that the server is healthy and that base_url is its /v1 root "
                f"(or point {ENV_BASE_URL} at a working one)",
            )
        models = self._model_ids(resp)
        if models is None:
            raw = one_line(redact(resp.text or "(empty body)"), 120)
            raise ConfigError(
                f"judge endpoint check failed: GET {models_url} answered HTTP {resp.status_code} "
                f"with a body that is not a model list: {raw}",
                "base_url must be an OpenAI-compatible /v1 root, whose /models answers "
                '{"data": [{"id": ...}, ...]}',
            )
        note = ""
        if models and self.spec.model not in models:
            note = f"model '{self.spec.model}' is not in the server's list ({', '.join(models[:10])})"
        return PingResult(url=self.shown_url, status=resp.status_code, latency_s=latency, models=models,
                          note=redact(note))

    @staticmethod
    def _model_ids(resp: Any) -> list[str] | None:
        """The ids of an OpenAI-style model list, or None when the body is not one."""
        try:
            data = resp.json()
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            return None
        return [str(m.get("id")) for m in data["data"] if isinstance(m, dict)]


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
