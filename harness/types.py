"""Core value types shared by suites, engine, run log and comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One evaluation item.

    Attributes:
        id: The dataset's own id where it has one (SQuAD id, doc id), else a stable index.
        vars: Values the prompt template may use (after the suite's field mapping).
        references: Gold answers; metrics take the best over them or all of them.
        meta: Anything else worth carrying into the run log (subject, source row).
    """

    id: str
    vars: dict[str, Any]
    references: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GenerationParams:
    """Greedy decoding settings; part of every cache key."""

    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()

    def key(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "stop": list(self.stop)}


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: plain text, or chat messages to pass through the model's template."""

    text: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # (role, content)


@dataclass
class Generation:
    """What the engine produced for one prompt."""

    text: str
    prompt_tokens: int
    new_tokens: int
    latency_s: float
    stopped_by: str  # "stop", "eos" or "length"
