"""The gate's result types: one `RuleResult` per rule and adapter, and the `Verdict` with the
comparison it was decided on; `Verdict.to_doc()` is verdict.json's document.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.comparison import Comparison
from harness.analysis.deltas import Flag
from harness.analysis.policy import Policy
from harness.log.schema import ArmVerdict, VerdictDoc

PASS, FAIL, INCONCLUSIVE, SKIPPED = "pass", "fail", "inconclusive", "skipped"


@dataclass
class RuleResult:
    """The outcome of one rule for one adapter.

    Attributes:
        name: Test name: the rule's name, with "[adapter]" when the run has several adapters.
        rule: The policy rule's name.
        adapter: The adapter judged.
        kind: "suite" or "bench" ("" for built-in rules).
        task: Task name ("" for built-in rules).
        metric: Metric name ("" for built-in rules).
        check: "max_drop", "min_gain", "per_subject_max_drop" or "has_effect".
        threshold: The rule's threshold in points (None for built-in rules).
        confidence: One-sided confidence of the bounds used.
        subset: "all" or "clean".
        status: "pass", "fail", "inconclusive" or "skipped".
        blocking: True when this status makes the gate exit 1.
        reason: One sentence naming the rule and the numbers.
        numbers: n, base, score, delta, ci_low, ci_high (gain bounds), p_value, mde, ...
        subjects: For per-subject rules, the subjects that failed or cannot detect the margin.
    """

    name: str
    rule: str
    adapter: str
    kind: str
    task: str
    metric: str
    check: str
    threshold: float | None
    confidence: float | None
    subset: str
    status: str
    blocking: bool
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)
    subjects: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verdict:
    """The gate's decision, the rules behind it, and the comparison it was computed from.

    Attributes:
        verdict: "pass", "fail" or "inconclusive".
        exit_code: 0 or 1 (see module docstring).
        rules: One result per rule and adapter.
        flags: Comparison flags plus the gate's own (too_few_items, noise_floor, ...).
        comparison: The view model the numbers come from.
        policy: The policy applied.
        noise_floor: Path of the noise-floor file used, if any.
    """

    verdict: str
    exit_code: int
    rules: list[RuleResult]
    flags: list[Flag]
    comparison: Comparison
    policy: Policy
    noise_floor: str | None = None
    elapsed_s: float = 0.0
    b_vs_a: ArmVerdict | None = None  # `harness ab --vs` runs (harness.analysis.arm_gate)

    def reasons(self) -> list[str]:
        """One line per rule that did not pass."""
        return [f"{r.name}: {r.reason}" for r in self.rules if r.status in (FAIL, INCONCLUSIVE)]

    def to_doc(self) -> VerdictDoc:
        """verdict.json's document: decision, settings, rules, flags and the task-level deltas."""
        from harness import __version__

        return VerdictDoc.model_validate(_json_safe({
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "harness_version": __version__,
            "run_dir": str(self.comparison.run_dir),
            "policy": str(self.policy.source) if self.policy.source else None,
            "noise_floor": self.noise_floor,
            "base": self.comparison.base,
            "adapters": self.comparison.adapters,
            "confidence": self.policy.confidence,
            "bootstrap": self.policy.bootstrap.model_dump(),  # lets the report reproduce the bounds
            "rules": [r.to_dict() for r in self.rules],
            "flags": [f.to_dict() for f in self.flags],
            "deltas": [r.to_dict() for r in self.comparison.rows],
            # adapters against the baseline arms of `compare --baseline` (each row names its `against`)
            **({"baseline_deltas": [r.to_dict() for r in self.comparison.baseline_rows]}
               if self.comparison.baseline_rows else {}),
            # only when there are arms: a plain compare's verdict.json stays as it was
            **({"b_vs_a": self.b_vs_a.model_dump(mode="json")} if self.b_vs_a is not None else {}),
        }))


def _json_safe(x: Any) -> Any:
    """NaN -> None (not JSON), numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if hasattr(x, "item") and callable(x.item):
        return _json_safe(x.item())
    return x


def format_verdict(verdict: Verdict) -> list[str]:
    """Plain-text lines for a terminal: the verdict, each rule, then the flags."""
    mark = {PASS: "PASS", FAIL: "FAIL", INCONCLUSIVE: "INCONCLUSIVE", SKIPPED: "SKIP"}
    lines = [f"gate: {verdict.verdict.upper()} (exit {verdict.exit_code})"]
    for r in verdict.rules:
        note = "" if r.status != INCONCLUSIVE else (" [blocks]" if r.blocking else " [allowed]")
        label = "WARN" if r.status == FAIL and not r.blocking else mark[r.status]  # severity: warn
        lines.append(f"  {label:<12} {r.name}: {r.reason}{note}")
    for f in verdict.flags:
        lines.append(f"  {f.severity}: {f.message}")
    return lines
