"""The gate's B-vs-A part: a policy's `b_vs_a` settings applied to an `harness ab --vs` run.

Every `ab --vs` run gets the B-vs-A section in verdict.json (win / no-win / loss per task and
metric, harness.analysis.arms); `b_vs_a.rules` make chosen metrics block: `require: win`
fails unless B wins (a difference within the seed spread, or one the items cannot show, is
no win), `require: no-loss` fails only on a loss.
"""

from __future__ import annotations

from typing import Any

from harness.analysis.arms import LOSS, SPREAD_K, WIN, arm_verdict
from harness.analysis.comparison import Comparison
from harness.analysis.policy import ArmRule, Policy
from harness.analysis.verdict import FAIL, PASS, RuleResult
from harness.errors import ConfigError
from harness.log.schema import ArmGain, ArmVerdict

ARMS_LABEL = "B vs A"


def _row(rule: ArmRule, section: ArmVerdict, where: str) -> ArmGain:
    hits = [r for r in section.rows
            if r.task == rule.task and r.metric == rule.metric and (rule.kind is None or r.kind == rule.kind)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise ConfigError(f"{where}: '{rule.task}' is both a suite and a benchmark in this run",
                          "add `kind: suite` or `kind: bench` to the rule")
    have = ", ".join(sorted({f"{r.task}/{r.metric}" for r in section.rows}))
    raise ConfigError(f"{where} selects {rule.task}/{rule.metric}, which the B-vs-A comparison does not have "
                      f"(it has: {have})", "fix `task:`/`metric:` of the b_vs_a rule")


def _numbers(row: ArmGain) -> dict[str, Any]:
    return {"seeds": row.seed_ids, "gains": row.gains_points, "mean": row.mean_points, "sd": row.sd_points,
            "p_better": row.p_better, "p_worse": row.p_worse, "n": row.n, "outcome": row.outcome}


def arm_section(comparison: Comparison, policy: Policy) -> tuple[ArmVerdict | None, list[RuleResult]]:
    """The B-vs-A section of the verdict and one result per `b_vs_a` rule.

    Raises:
        ConfigError: A `b_vs_a` rule on a run that has no two arms, or on a task/metric the
            run lacks.
    """
    settings = policy.b_vs_a
    section = arm_verdict(comparison.paired, spread_k=settings.spread_k if settings else SPREAD_K,
                          confidence=policy.confidence, resamples=policy.bootstrap.resamples,
                          permutations=policy.bootstrap.permutations, seed=policy.bootstrap.seed)
    rules = settings.rules if settings else []
    src = policy.source or "policy"
    if rules and section is None:
        raise ConfigError(f"{src}: b_vs_a rule '{rules[0].name}' compares arm B with arm A, but {comparison.run_dir} "
                          "has no adapters of both arms with a common seed",
                          "gate a `harness ab --vs CONFIG` run, or remove `b_vs_a.rules`")
    results = []
    for rule in rules:
        row = _row(rule, section, f"{src}: b_vs_a rule '{rule.name}'")
        ok = row.outcome == WIN if rule.require == "win" else row.outcome != LOSS
        results.append(RuleResult(
            name=rule.name, rule=rule.name, adapter=ARMS_LABEL, kind=row.kind, task=row.task, metric=row.metric,
            check=f"b_vs_a_{rule.require.replace('-', '_')}", threshold=section.spread_k,
            confidence=policy.confidence, subset="all", status=PASS if ok else FAIL, blocking=not ok,
            reason=f"B vs A on {row.task} {row.metric}: {row.outcome} (requires {rule.require}); {row.reason}",
            numbers=_numbers(row)))
    return section, results
