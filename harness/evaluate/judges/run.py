"""Judging one suite's predictions: plan the calls, ask them, score the replies.

    from harness.evaluate.judges import judge_enabled, judge_suite, validate_judge

    validate_judge(suite)                       # before any model work: ConfigError one-liners
    result = judge_suite(suite, examples, {"base": [...], "lora": [...]}, log=print)
    result.scores["lora"]["judge:faithfulness"]  # [0..1 or None per item]

Building and asking calls is `calls.JudgeSession`; turning replies into values is
`scoring`; checking a suite's judge before model work is `check`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from harness.errors import ConfigError, HarnessError
from harness.evaluate.judges.calls import JudgeSession
from harness.evaluate.judges.check import judge_fingerprint, resolve_spec, suite_where
from harness.evaluate.judges.labels import read_labels
from harness.evaluate.judges.scoring import (
    PAIRWISE_METRIC,
    JudgeResult,
    Tally,
    new_result,
    score_agreement,
    score_pairwise,
    score_pointwise,
    summary,
)
from harness.evaluate.judges.spec import CriterionSpec, JudgeSpec


def judge_suite(suite: Any, examples: Sequence[Any], predictions: dict[str, Sequence[str]],
                log: Callable[[str], None] | None = None, *, use_cache: bool = True) -> JudgeResult:
    """Judge every model's predictions on a suite with the suite's rubric.

    Pointwise: every criterion for every model and item, as `judge:<criterion>` on 0..1.
    Pairwise: base against each adapter, asked in both orders; a preference held in both
    orders scores 1.0 (adapter better) or 0.0 (base better), a tie or a flip 0.5; the metric
    `judge:pairwise` is attached to the adapter's items only. Identical responses score 0.5
    without asking. With human labels, the judge also scores the labelled responses and
    `stats["agreement"]` holds the agreement per criterion.

    Args:
        suite: A loaded `harness.evaluate.suites.Suite` with a `judge:` block.
        examples: The suite's examples that were evaluated, in order.
        predictions: Model name -> predictions aligned with `examples`; "base" is the
            reference model of pairwise comparisons.
        log: One-line progress messages (already redacted).
        use_cache: Read and write `$HARNESS_HOME/cache/judge.sqlite`.

    Returns:
        A JudgeResult; `stats` has requests, retries, failures, errors (by kind), reasks,
        calls, cached, scored, unscored, pairwise, swap_consistency, agreement, tokens,
        budget_exhausted and wall_s.

    Raises:
        ConfigError: the suite has no judge, or its judge config is invalid.
        JudgeError: the endpoint refuses the key or does not know the model.
    """
    started = time.monotonic()
    spec = resolve_spec(suite)
    if spec is None:
        raise ConfigError(f"{suite_where(suite)}: suite '{suite.name}' has no judge: block", "add one, or do not judge it")
    log = log or (lambda msg: None)
    examples = list(examples)
    for model, preds in predictions.items():
        if len(preds) != len(examples):
            raise HarnessError(f"judge: model '{model}' has {len(preds)} predictions for {len(examples)} examples",
                               "pass predictions aligned with the examples")
    judge = JudgeSession(suite, spec, log, use_cache)
    try:
        return _judge(judge, spec, examples, predictions, started)
    finally:
        judge.close()


@dataclass
class _Plan:
    """Which call answers what: keys by (model, item, group), (adapter, item) and (label row, group)."""

    groups: list[list[CriterionSpec]]
    point: dict[tuple[str, int, int], str] = field(default_factory=dict)
    pair: dict[tuple[str, int], tuple[str, str] | None] = field(default_factory=dict)
    reference_model: str | None = None
    label_rows: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[tuple[int, int], str] = field(default_factory=dict)


def _plan(judge: JudgeSession, spec: JudgeSpec, examples: list[Any], predictions: dict[str, Sequence[str]]) -> _Plan:
    plan = _Plan([[c] for c in spec.criteria] if spec.split_criteria else [list(spec.criteria)])
    if "pointwise" in spec.mode:
        for model, preds in predictions.items():
            for i, ex in enumerate(examples):
                for g, group in enumerate(plan.groups):
                    plan.point[model, i, g] = judge.pointwise_call(ex, group, preds[i])
    plan.reference_model = "base" if "base" in predictions else None
    if "pairwise" in spec.mode:
        if plan.reference_model is None:
            judge.log(f"judge · {judge.suite.name}: no 'base' predictions, pairwise comparison skipped")
        else:
            _plan_pairs(judge, plan, examples, predictions)
    if spec.human_labels is not None:
        # Human-labelled responses, scored like any model's for the agreement statistics.
        index = {ex.id: i for i, ex in enumerate(examples)}
        rows = [(row, index[row["id"]]) for row in read_labels(judge.suite, spec, judge.where) if row["id"] in index]
        plan.label_rows = [row for row, _ in rows]
        for r, (row, i) in enumerate(rows):
            for g, group in enumerate(plan.groups):
                plan.labels[r, g] = judge.pointwise_call(examples[i], group, row["response"])
    return plan


def _plan_pairs(judge: JudgeSession, plan: _Plan, examples: list[Any], predictions: dict[str, Sequence[str]]) -> None:
    """Each adapter against the base in both orders; identical responses are not asked."""
    base = predictions[plan.reference_model or "base"]
    for model, preds in predictions.items():
        if model == plan.reference_model:
            continue
        for i, ex in enumerate(examples):
            base_text, other = base[i], preds[i]
            if base_text.strip() == other.strip():
                plan.pair[model, i] = None
            else:
                plan.pair[model, i] = (judge.pairwise_call(ex, base_text, other),
                                       judge.pairwise_call(ex, other, base_text))


def _judge(judge: JudgeSession, spec: JudgeSpec, examples: list[Any], predictions: dict[str, Sequence[str]],
           started: float) -> JudgeResult:
    plan = _plan(judge, spec, examples, predictions)
    judge.run_calls()
    calls = judge.calls
    result = new_result(list(predictions), len(examples))
    tally = Tally()
    if "pointwise" in spec.mode:
        score_pointwise(result, spec, plan.groups, plan.point, calls, tally)
    if plan.pair:
        score_pairwise(result, plan.reference_model or "base", plan.pair, calls, tally)
    agreement_stats: dict[str, Any] = {}
    if spec.human_labels is not None:
        agreement_stats = score_agreement(spec, plan.groups, plan.label_rows, plan.labels, calls)
        if not plan.label_rows:
            judge.log(f"judge · {judge.suite.name}: no labelled item is among the evaluated examples")
    consistent, inconsistent = tally.pairs["consistent"], tally.pairs["inconsistent"]
    s = judge.stats
    result.stats = {
        "judge": f"{spec.backend}:{spec.model}",
        "calls": len(calls),
        "requests": s.requests,
        "retries": s.retries,
        "failures": s.failures,
        "errors": dict(sorted(s.errors.items())),
        "reasks": judge.reasks,
        "cached": judge.cached,
        "scored": tally.scored,
        "unscored": tally.unscored,
        "pairwise": tally.pairs if plan.pair else None,
        "swap_consistency": round(consistent / (consistent + inconsistent), 4) if consistent + inconsistent else None,
        "agreement": agreement_stats or None,
        "tokens": {"prompt": s.prompt_tokens, "completion": s.completion_tokens},
        "budget_exhausted": judge.budget.exhausted,
        "wall_s": round(time.monotonic() - started, 3),
    }
    result.provenance = judge_fingerprint(judge.suite) or {}
    judge.log(summary(judge.suite.name, result.stats))
    return result


def judge_records(suite: Any, examples: Sequence[Any], records: list[dict[str, Any]],
                  aggregates: dict[str, dict[str, Any]], log: Callable[[str], None] | None = None, *,
                  use_cache: bool = True, base_reference: bool = True) -> JudgeResult:
    """Judge one suite's run-log records and write the results into them, in place.

    Each record of the suite gets its judge metrics in `scores` and the per-metric details
    (raw level, rationale, verdicts; error and raw reply when unscored) under `judge`; each
    model's aggregates get the means over scored items (None when nothing was scored).

    With `base_reference`, the base's records and aggregates carry `judge:pairwise` = 0.5,
    the score of the base against itself, so paired base-vs-adapter statistics test the
    adapter's preference rate against "no preference" like any other metric.

    Args:
        suite: The loaded suite (with a `judge:` block).
        examples: The examples that were evaluated, in order.
        records: items.jsonl records; those with this suite's `task` are judged.
        aggregates: model -> aggregate dict of this suite (updated in place).
        log: One-line progress messages.
        use_cache: As in `judge_suite`.
        base_reference: Give the base the pairwise reference value (see above).

    Returns:
        The JudgeResult (for run.json: `.stats`, `.metrics`, `.provenance`).
    """
    index = {ex.id: i for i, ex in enumerate(examples)}
    mine = [r for r in records if r.get("task") == suite.name and r.get("kind", "suite") == "suite"]
    models = sorted({r["model"] for r in mine}, key=lambda m: (m != "base", m))
    preds: dict[str, list[str | None]] = {m: [None] * len(examples) for m in models}
    for r in mine:
        if r["item_id"] not in index:
            raise HarnessError(f"judge: record '{r['item_id']}' of {suite.name} is not among the evaluated examples")
        preds[r["model"]][index[r["item_id"]]] = str(r.get("prediction") or "")
    for model, values in preds.items():
        if any(v is None for v in values):
            raise HarnessError(f"judge: model '{model}' has no prediction for some items of {suite.name}")
    result = judge_suite(suite, examples, {m: [str(v) for v in vs] for m, vs in preds.items()}, log,
                         use_cache=use_cache)
    reference = base_reference and PAIRWISE_METRIC in result.metrics
    for r in mine:
        i, model = index[r["item_id"]], r["model"]
        scores = r.setdefault("scores", {})
        for metric, values in result.scores.get(model, {}).items():
            scores[metric] = values[i]
        r["judge"] = result.details[model][i]
        if reference and model == "base":
            scores[PAIRWISE_METRIC] = 0.5
            r["judge"][PAIRWISE_METRIC] = {"value": 0.5, "reference": True}
    for model, agg in aggregates.items():
        agg.update(result.aggregates(model))
        if reference and model == "base":
            agg[PAIRWISE_METRIC] = 0.5
    return result
