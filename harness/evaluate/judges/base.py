"""What every judge backend shares: requests, replies, counters, the budget, key redaction.

A backend plugin (`@register_judge(NAME)`, kept in `JUDGE_BACKENDS`) is a class built as
`cls(spec, stats, budget, log)` (the `JudgeBackend` protocol) with

    identity() -> dict           who answers (part of every cache key; never the API key)
    params() -> dict             decoding parameters (part of every cache key)
    complete_many(requests, on_done)   answer each ChatRequest, calling
                                       on_done(request, Completion) in the caller's thread
    ping(timeout) -> PingResult  cheap reachability/auth check; raises ConfigError
    close()
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, TypeVar

from harness.errors import ConfigError, HarnessError
from harness.registry import Registry

REDACTED = "***"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")
_MIN_SECRET_LEN = 4  # shorter "keys" would shred ordinary text and protect nothing
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


class JudgeError(HarnessError):
    """A judge failure that makes every further call pointless (bad key, unknown model)."""


class BudgetExhausted(Exception):
    """Raised inside a backend when the request, token or time budget is spent."""


def register_secret(value: str | None) -> None:
    """Remember a secret so `redact` scrubs it from every message, log line and record."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: Any) -> Any:
    """`text` with every registered secret replaced by '***' (non-strings pass through)."""
    if not isinstance(text, str) or not _secrets:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and shorten, for error messages that must stay on one line."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def read_api_key(env_name: str | None, where: str = "") -> str | None:
    """The API key from the environment variable named in the config, registered for redaction.

    Raises:
        ConfigError: the variable is named but unset or empty.
    """
    if not env_name:
        return None
    value = os.environ.get(env_name, "")
    if not value.strip():
        prefix = f"{where}: " if where else ""
        if not _ENV_NAME.match(env_name):
            # Not shaped like a variable name: it may be the key itself, so it is not repeated.
            raise ConfigError(
                f"{prefix}judge.api_key_env: no environment variable of that name is set, and the name "
                "does not look like one (is it the key itself?)",
                "put the key in an environment variable and give that variable's NAME, e.g. OPENAI_API_KEY",
            )
        raise ConfigError(
            f"{prefix}judge.api_key_env: environment variable {env_name} is not set",
            f"export {env_name}=<your key> (or set HARNESS_JUDGE_API_KEY_ENV to another variable's name, "
            "or to an empty value for a server without auth)",
        )
    value = value.strip()
    register_secret(value)
    return value


@dataclass(frozen=True)
class ChatRequest:
    """One chat call: its cache key and the messages as sent."""

    key: str
    messages: tuple[tuple[str, str], ...]  # (role, content)

    def as_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class Completion:
    """A backend's answer: text on success, or `error` after the retries ran out."""

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@dataclass
class PingResult:
    """What `harness judge check` shows about an endpoint."""

    url: str
    status: int | None
    latency_s: float
    models: list[str] = field(default_factory=list)
    note: str = ""


class CallStats:
    """Thread-safe counters over one judging pass."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0  # attempts actually sent (each retry counts)
        self.retries = 0
        self.failures = 0  # calls that ended without a reply after their retries
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.errors: dict[str, int] = {}  # kind ("HTTP 500", "timeout", ...) -> count

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Budget:
    """Request, token and wall-time ceilings, checked before every attempt (thread-safe).

    Tokens are known only after a reply, so with N calls in flight the token ceiling can be
    overshot by at most N replies; requests and time are never exceeded.
    """

    def __init__(self, max_requests: int | None = None, max_tokens: int | None = None,
                 max_seconds: float | None = None, stats: CallStats | None = None):
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.deadline = time.monotonic() + max_seconds if max_seconds else None
        self.stats = stats or CallStats()
        self._lock = threading.Lock()
        self.exhausted: str | None = None

    def acquire(self) -> None:
        """Count one attempt against the budget, or raise BudgetExhausted."""
        with self._lock:
            reason = None
            if self.max_requests is not None and self.stats.requests >= self.max_requests:
                reason = f"request budget of {self.max_requests} spent"
            elif self.max_tokens is not None and self.stats.tokens >= self.max_tokens:
                reason = f"token budget of {self.max_tokens} spent"
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                reason = "time budget spent"
            if reason:
                self.exhausted = reason
                raise BudgetExhausted(reason)
            self.stats.add(requests=1)

    def seconds_left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()


Log = Callable[[str], None]


class JudgeBackend(Protocol):
    """What `judge_suite` needs from a backend (see the module docstring)."""

    def identity(self) -> dict[str, Any]: ...

    def params(self) -> dict[str, Any]: ...

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_done: Callable[[ChatRequest, Completion], None]) -> None: ...

    def ping(self, timeout: float) -> PingResult: ...

    def close(self) -> None: ...


JUDGE_BACKENDS: Registry[type[JudgeBackend]] = Registry("judge backend")
B = TypeVar("B", bound=type)


def register_judge(name: str) -> Callable[[B], B]:
    """Class decorator: `@register_judge("openai")` makes a backend available as `judge.backend: openai`.

    Raises:
        HarnessError: the name is taken.
    """

    def deco(cls: B) -> B:
        JUDGE_BACKENDS.add(name, cls)
        return cls

    return deco
