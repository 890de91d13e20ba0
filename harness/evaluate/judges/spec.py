"""The schema of a suite's `judge:` block (pydantic v2, strict) and its resolution.

A judge block looks like this (every key is checked; unknown keys are errors)::

    judge:
      backend: openai              # a registered judge backend: openai | local
      base_url: http://127.0.0.1:8765/v1   # openai: the server's /v1 root
      model: judge                 # openai: served model name; local: folder or asset name
      api_key_env: HARNESS_JUDGE_API_KEY   # NAME of the env var holding the key; null = no key
      timeout: 60                  # seconds per HTTP request
      retries: 3                   # extra attempts on 429/5xx/timeouts/connection errors
      backoff: {base: 0.5, max: 20}      # exponential backoff (seconds), jittered
      concurrency: 4               # requests in flight at once
      budget: {max_requests: null, max_tokens: null, max_seconds: null}
      temperature: 0.0
      max_tokens: 400              # completion tokens per judge reply
      json_mode: false             # also send response_format={"type": "json_object"}
      extra_body: {}               # more request fields (e.g. {seed: 0}, Ollama `options`)
      mode: [pointwise, pairwise]  # or a single mode, or "both"
      split_criteria: false        # one request per criterion instead of one for all
      reference: true              # show the item's first reference answer to the judge
      criteria:
        - name: faithfulness       # metric `judge:faithfulness`, normalised to 0..1
          description: Every claim is supported by the source.
          scale: {min: 1, max: 5, anchors: {1: "...", 5: "..."}}
      system: "..."                # optional system message (jinja2)
      prompt: {pointwise: "...", pairwise: "...", reask: "..."}   # optional jinja2 templates
      human_labels:                # optional: agreement between judge and humans
        file: labels.jsonl         #   relative to the suite folder (.jsonl, .json or .csv)
        id: id                     #   dotted field holding the suite item id
        response: response         #   the labelled response text
        scores: {faithfulness: human.faithfulness}   # criterion -> dotted field
        method: spearman           #   spearman (scores) | kappa | kappa_quadratic (categorical)
      batch_size: 8                # local backend: prompts decoded together
      device: auto                 # local backend: auto | cpu | cuda | cuda:N | mps

`HARNESS_JUDGE_BASE_URL`, `HARNESS_JUDGE_MODEL` and `HARNESS_JUDGE_API_KEY_ENV` override any
suite's endpoint (a base URL override also selects the openai backend), so one suite file
works against OpenAI, vLLM, llama.cpp, Ollama or a local llm-katan without edits.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError
from harness.spec_errors import spec_error

ENV_BASE_URL = "HARNESS_JUDGE_BASE_URL"
ENV_MODEL = "HARNESS_JUDGE_MODEL"
ENV_API_KEY_ENV = "HARNESS_JUDGE_API_KEY_ENV"
CRITERION_PATTERN = r"^[a-z][a-z0-9_]*$"
MODES = ("pointwise", "pairwise")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleSpec(_Strict):
    """An integer rating scale; anchors describe what a level means to the judge."""

    min: int = 1
    max: int = 5
    anchors: dict[int, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> "ScaleSpec":
        if self.min >= self.max:
            raise ValueError(f"scale min ({self.min}) must be below max ({self.max})")
        if self.max - self.min > 100:
            raise ValueError(f"scale {self.min}..{self.max} has over 100 levels; use a coarser scale")
        outside = sorted(level for level in self.anchors if not self.min <= level <= self.max)
        if outside:
            raise ValueError(f"anchor level {outside[0]} is outside the scale {self.min}..{self.max}")
        if any(not str(text).strip() for text in self.anchors.values()):
            raise ValueError("anchor descriptions must not be empty")
        return self

    def normalise(self, score: float) -> float:
        """Map a raw level onto 0..1 so judge scores read like every other metric."""
        return (score - self.min) / (self.max - self.min)


class CriterionSpec(_Strict):
    name: str = Field(pattern=CRITERION_PATTERN)
    description: str = Field(min_length=1)
    scale: ScaleSpec = Field(default_factory=ScaleSpec)


class BackoffSpec(_Strict):
    base: float = Field(0.5, ge=0)
    max: float = Field(20.0, ge=0)


class BudgetSpec(_Strict):
    """Hard ceilings for one judging pass; calls beyond them are left unscored, never guessed."""

    max_requests: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    max_seconds: float | None = Field(None, gt=0)


class PromptSpec(_Strict):
    pointwise: str | None = None
    pairwise: str | None = None
    reask: str | None = None


class LabelsSpec(_Strict):
    file: str
    id: str = "id"
    response: str = "response"
    scores: dict[str, str] = Field(min_length=1)
    method: Literal["spearman", "kappa", "kappa_quadratic"] = "spearman"


class JudgeSpec(_Strict):
    backend: str = "openai"
    base_url: str | None = None
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    timeout: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, le=20)
    backoff: BackoffSpec = Field(default_factory=BackoffSpec)
    concurrency: int = Field(4, ge=1, le=256)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(400, gt=0)
    json_mode: bool = False
    extra_body: dict[str, Any] = Field(default_factory=dict)
    mode: tuple[Literal["pointwise", "pairwise"], ...] = MODES
    split_criteria: bool = False
    reference: bool = True
    criteria: list[CriterionSpec] = Field(min_length=1)
    system: str | None = None
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    human_labels: LabelsSpec | None = None
    batch_size: int = Field(8, ge=1)
    device: str = "auto"  # local backend: auto | cpu | cuda | cuda:N | mps (HARNESS_JUDGE_DEVICE overrides)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        from harness.evaluate.devices import device_field

        return device_field(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _modes(cls, value: Any) -> Any:
        if value == "both":
            return MODES
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("mode")
    @classmethod
    def _some_mode(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one mode: pointwise, pairwise or both")
        return tuple(m for m in MODES if m in value)  # canonical order, no duplicates

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not value.replace("_", "a").isalnum():
            # The value is not echoed: someone may have pasted the key itself here.
            raise ValueError(
                "api_key_env is not an environment variable name; it names the variable "
                "that holds the key and is never the key itself"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "JudgeSpec":
        names = [c.name for c in self.criteria]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"criterion '{dup[0]}' is listed twice")
        if "pairwise" in names:
            raise ValueError("'pairwise' is reserved for the pairwise metric; rename the criterion")
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"the openai backend needs `base_url` (or set {ENV_BASE_URL})")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url '{self.base_url}' must start with http:// or https://")
        reserved = sorted(set(self.extra_body) & {"model", "messages", "stream", "n"})
        if reserved:
            raise ValueError(f"extra_body must not set '{reserved[0]}' (the judge client sets it)")
        if self.human_labels is not None:
            unknown = sorted(set(self.human_labels.scores) - set(names))
            if unknown:
                raise ValueError(
                    f"human_labels.scores names criterion '{unknown[0]}', which is not in criteria "
                    f"(criteria: {', '.join(names)})"
                )
        return self

    @property
    def criterion_names(self) -> list[str]:
        return [c.name for c in self.criteria]

    def criterion(self, name: str) -> CriterionSpec:
        return next(c for c in self.criteria if c.name == name)

    def metric_names(self, pairwise: bool = True) -> list[str]:
        """Metric names this judge adds: `judge:<criterion>` and `judge:pairwise`."""
        out = [f"judge:{c}" for c in self.criterion_names] if "pointwise" in self.mode else []
        if pairwise and "pairwise" in self.mode:
            out.append("judge:pairwise")
        return out


def apply_env_overrides(raw: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The raw mapping with the HARNESS_JUDGE_* endpoint overrides applied.

    An empty `HARNESS_JUDGE_API_KEY_ENV` means "send no key" (a local server without auth).
    """
    env = os.environ if environ is None else environ
    out = dict(raw)
    if env.get(ENV_BASE_URL):
        out["base_url"] = env[ENV_BASE_URL]
        out["backend"] = "openai"
    if env.get(ENV_MODEL):
        out["model"] = env[ENV_MODEL]
    if ENV_API_KEY_ENV in env:
        out["api_key_env"] = env[ENV_API_KEY_ENV] or None
    return out


def parse_judge_spec(raw: Any, where: str, environ: dict[str, str] | None = None) -> JudgeSpec:
    """Validate a suite's raw `judge:` mapping (after env overrides) into a JudgeSpec.

    Args:
        raw: The mapping stored untouched in `SuiteSpec.judge`.
        where: The suite file, for error messages.
        environ: Environment to read overrides from (default: os.environ).

    Raises:
        ConfigError: one line naming the file and the `judge.` field, with a fix.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: judge: must be a mapping, got {type(raw).__name__}",
                          "see the judge format in harness/evaluate/judges/spec.py")
    try:
        return JudgeSpec.model_validate(apply_env_overrides(raw, environ))
    except ValidationError as exc:
        raise spec_error(exc, where, JudgeSpec, docs="the judge format in harness/evaluate/judges/spec.py",
                         prefix="judge") from None
