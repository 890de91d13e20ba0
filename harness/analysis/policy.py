"""Gate policy as code: a YAML file of rules that decide whether an adapter may ship.

Schema (see ci/gate.yaml for a documented example):

    version: 1
    confidence: 0.95          # one-sided confidence of every bound (rule may override)
    on_inconclusive: fail     # fail | pass: what an inconclusive rule does to the exit code
    on_no_effect: fail        # fail | warn: an adapter whose logits equal the base's
    decide_on: all            # all | clean: clean = only items labelled `leak: clean`
    noise_floor: null         # a `harness calibrate` file, relative to this policy file
    bootstrap: {resamples: 2000, permutations: 10000, seed: 0}
    rules:
      - name: squad-f1                # optional; default TASK-METRIC-CHECK
        task: squad-qa                # suite or benchmark name
        kind: suite                   # optional: suite | bench, when a name is both
        metric: f1
        adapters: [ft]                # optional; default every adapter in the run
        max_drop: 1.0                 # exactly one of max_drop, min_gain, per_subject_max_drop
        confidence: 0.95              # optional overrides of the top-level settings
        on_inconclusive: fail
        decide_on: all
        optional: false               # true: skip (not error) when the run lacks the task
        severity: fail                # fail | warn: a warn rule never blocks (see below)
        against: base+fewshot:3       # optional: compare with a baseline arm of `compare --baseline`
                                      #   (or --baseline-model NAME) instead of the base
    b_vs_a:                           # optional, `harness ab --vs` runs only (docs/ab.md)
      spread_k: 1.0                   # B wins only if its mean gain over A > k x seed sd (and p < 1 - confidence)
      rules:
        - {task: squad-qa, metric: f1, require: win}   # win | no-loss; fails the gate otherwise

All thresholds are points (100 x the 0..1 score). A rule of a metric where lower is better
reads the same way: `max_drop` is always the largest tolerated worsening.

`severity: warn` makes a rule advisory: it is decided as usual, but it never sets the exit
code or the verdict; when it fails, its reason starts with "warning (severity: warn, does not
block)" and the gate raises a `rule_warning` flag (a warning in the terminal and summary.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from harness.errors import ConfigError

CHECKS = ("max_drop", "min_gain", "per_subject_max_drop")
EXAMPLE = "ci/gate.yaml"


class Bootstrap(BaseModel):
    """Resampling settings; the same seed always gives the same verdict."""

    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(2000, ge=2000, le=100_000)
    permutations: int = Field(10000, ge=1000, le=1_000_000)
    seed: int = 0


class Rule(BaseModel):
    """One gate rule: a check of one metric on one task for each selected adapter."""

    model_config = ConfigDict(extra="forbid")

    name: Optional[str] = None
    task: str = Field(min_length=1)
    kind: Optional[Literal["suite", "bench"]] = None
    metric: str = Field(min_length=1)
    adapters: Optional[list[str]] = None
    max_drop: Optional[float] = Field(None, ge=0)
    min_gain: Optional[float] = None
    per_subject_max_drop: Optional[float] = Field(None, ge=0)
    confidence: Optional[float] = Field(None, gt=0.5, lt=1.0)
    on_inconclusive: Optional[Literal["fail", "pass"]] = None
    decide_on: Optional[Literal["all", "clean"]] = None
    optional: bool = False
    severity: Literal["fail", "warn"] = "fail"
    against: Optional[str] = Field(None, min_length=1)  # a baseline arm's name; None or "base": the base

    @model_validator(mode="after")
    def _one_check(self) -> "Rule":
        given = [c for c in CHECKS if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(CHECKS)} (got {', '.join(given) or 'none'})")
        if self.against == "base":
            self.against = None
        if self.name is None:
            vs = f"-vs-{self.against}" if self.against else ""
            self.name = f"{self.task}-{self.metric}-{self.check.replace('_', '-')}{vs}"
        return self

    @property
    def check(self) -> str:
        """Which check the rule makes: max_drop, min_gain or per_subject_max_drop."""
        return next(c for c in CHECKS if getattr(self, c) is not None)

    @property
    def advisory(self) -> bool:
        """True for `severity: warn`: the rule warns but never blocks or decides the verdict."""
        return self.severity == "warn"

    @property
    def threshold(self) -> float:
        """The rule's threshold in points."""
        return float(getattr(self, self.check))


class ArmRule(BaseModel):
    """A `b_vs_a` rule: what arm B of `harness ab --vs` must show against arm A on one metric."""

    model_config = ConfigDict(extra="forbid")

    name: Optional[str] = None
    task: str = Field(min_length=1)
    kind: Optional[Literal["suite", "bench"]] = None
    metric: str = Field(min_length=1)
    require: Literal["win", "no-loss"] = "win"

    @model_validator(mode="after")
    def _default_name(self) -> "ArmRule":
        if self.name is None:
            self.name = f"b-vs-a-{self.task}-{self.metric}-{self.require}"
        return self


class ArmPolicy(BaseModel):
    """`b_vs_a:`: the B-vs-A rule's spread multiple and the metrics on which it blocks (docs/ab.md)."""

    model_config = ConfigDict(extra="forbid")

    spread_k: float = Field(1.0, gt=0)
    rules: list[ArmRule] = Field(default_factory=list)


class BenchPrompts(BaseModel):
    """How the policy's benchmarks must be rendered (`bench_prompts:`); compare and ab run
    them this way unless the command line says otherwise, and the gate refuses a run that
    rendered them differently."""

    model_config = ConfigDict(extra="forbid")

    chat_template: bool = False
    fewshot_as_multiturn: bool = True
    system_instruction: Optional[str] = None

    def bench_format(self):
        """As the `BenchFormat` a run uses (its `record()` is what run.json's spec carries)."""
        from harness.evaluate.forgetting.chat_format import BenchFormat

        return BenchFormat(self.chat_template, self.fewshot_as_multiturn, self.system_instruction)


class Policy(BaseModel):
    """A gate policy file."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    on_inconclusive: Literal["fail", "pass"] = "fail"
    on_no_effect: Literal["fail", "warn"] = "fail"
    decide_on: Literal["all", "clean"] = "all"
    noise_floor: Optional[str] = None
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    rules: list[Rule] = Field(min_length=1)
    b_vs_a: Optional[ArmPolicy] = None
    bench_prompts: Optional[BenchPrompts] = None
    # Where the policy was read from (not a YAML field): relative paths resolve against it.
    _source: Optional[Path] = PrivateAttr(None)

    @property
    def source(self) -> Path | None:
        """The file the policy was read from, if any."""
        return self._source

    @model_validator(mode="after")
    def _unique_arm_rule_names(self) -> "Policy":
        names = {r.name for r in self.rules}
        for r in self.b_vs_a.rules if self.b_vs_a else []:
            if r.name in names:
                raise ValueError(f"rule name '{r.name}' is used twice; give each rule a distinct `name`")
            names.add(r.name)
        return self

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in rules:
            if r.name in seen:
                raise ValueError(f"rule name '{r.name}' is used twice; give each rule a distinct `name`")
            seen.add(r.name)
        return rules

    def confidence_of(self, rule: Rule) -> float:
        return rule.confidence if rule.confidence is not None else self.confidence

    def on_inconclusive_of(self, rule: Rule) -> str:
        return rule.on_inconclusive or self.on_inconclusive

    def decide_on_of(self, rule: Rule) -> str:
        return rule.decide_on or self.decide_on

    def comparison_settings(self) -> dict[str, Any]:
        """Keyword arguments for `Comparison.from_run_dir`, so a report built later shows the gate's numbers."""
        return {"confidence": self.confidence, "resamples": self.bootstrap.resamples,
                "permutations": self.bootstrap.permutations, "seed": self.bootstrap.seed}

    def noise_floor_path(self) -> Path | None:
        """`noise_floor`, resolved against the policy file's folder."""
        if not self.noise_floor:
            return None
        path = Path(self.noise_floor)
        if not path.is_absolute() and self.source is not None:
            path = self.source.parent / path
        return path


def parse_policy(data: Any, source: str | Path = "<policy>") -> Policy:
    """Validates an already-parsed policy document.

    Args:
        data: The YAML document (a mapping).
        source: File name for messages; relative `noise_floor` paths resolve against it.

    Raises:
        ConfigError: One line naming the file, the field and how to fix it.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a gate policy is a mapping with a `rules:` list, got {type(data).__name__}",
                          f"start from {EXAMPLE}")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        from harness.spec_errors import spec_error

        raise spec_error(exc, str(source), Policy, docs=f"the documented example in {EXAMPLE}") from None
    policy._source = Path(source)
    return policy


def load_policy(path: str | Path) -> Policy:
    """Reads and validates a gate policy file (cheap: call it before evaluating models).

    Args:
        path: The YAML file.

    Returns:
        The policy.

    Raises:
        ConfigError: Missing file, invalid YAML, or an invalid field (one line with a fix).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"policy file {path} not found", f"pass an existing YAML file, e.g. {EXAMPLE}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where} is not valid YAML ({problem})", "fix the YAML syntax") from None
    return parse_policy(data, path)
