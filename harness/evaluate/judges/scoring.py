"""Scoring judge replies: per-item values, pairwise outcomes, agreement with people, stats.

Pointwise: every criterion for every model and item, as `judge:<criterion>` on 0..1.
Pairwise: the base against each adapter, asked in both orders; a preference held in both
orders scores 1.0 (adapter better) or 0.0 (base better), a tie or a flip 0.5. An unusable
reply leaves its item unscored (None) with the raw reply kept in `details`, never a silent 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.evaluate.judges.agreement import agreement
from harness.evaluate.judges.base import redact
from harness.evaluate.judges.calls import Call
from harness.evaluate.judges.parse import PairwiseParse, PointwiseParse
from harness.evaluate.judges.spec import CriterionSpec, JudgeSpec

PAIRWISE_METRIC = "judge:pairwise"
PAIR_COUNTS = ("pairs", "consistent", "inconsistent", "ties", "identical", "unscored", "adapter_preferred",
               "base_preferred")


@dataclass
class JudgeResult:
    """Judge scores for one suite, shaped like the run log's per-item metrics.

    Attributes:
        scores: model -> metric -> per-item value on 0..1 (None = unscored).
        rationales: model -> metric -> per-item rationale (None = unscored or none given).
        details: model -> per-item {metric: {...}} with raw levels, verdicts, errors and the raw
            reply of unscored items; meant for the item's record in items.jsonl.
        stats: requests, retries, failures, reasks, cached, scored, unscored, swap_consistency,
            pairwise counts, agreement per criterion, tokens, wall_s (see `judge_suite`).
        metrics: metric name -> {"higher_is_better": True, "corpus_level": False, "judge": True}.
        provenance: the judge's identity and settings for run.json (never the API key).
    """

    scores: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    rationales: dict[str, dict[str, list[str | None]]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def aggregates(self, model: str) -> dict[str, float | None]:
        """Per metric: the mean over scored items (None when no item was scored)."""
        out: dict[str, float | None] = {}
        for metric, values in self.scores.get(model, {}).items():
            scored = [v for v in values if v is not None]
            out[metric] = sum(scored) / len(scored) if scored else None
        return out

    def unscored(self, model: str) -> dict[str, int]:
        """Per metric: how many items the judge left unscored."""
        return {metric: sum(v is None for v in values) for metric, values in self.scores.get(model, {}).items()}


@dataclass
class Tally:
    """Items scored and left unscored over a judging pass, and the pairwise counts."""

    scored: int = 0
    unscored: int = 0
    pairs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PAIR_COUNTS, 0))

    def count(self, value: float | None) -> None:
        if value is None:
            self.unscored += 1
        else:
            self.scored += 1


def new_result(models: list[str], n: int) -> JudgeResult:
    """An empty result with a slot per model and item."""
    result = JudgeResult()
    for model in models:
        result.scores[model] = {}
        result.rationales[model] = {}
        result.details[model] = [{} for _ in range(n)]
    return result


def score_pointwise(result: JudgeResult, spec: JudgeSpec, groups: list[list[CriterionSpec]],
                    keys: dict[tuple[str, int, int], str], calls: dict[str, Call], tally: Tally) -> None:
    """Fill `judge:<criterion>` for every model and item from the pointwise calls.

    Args:
        result: Filled in place.
        spec: The judge spec.
        groups: Criteria asked together in one call.
        keys: (model, item, group) -> call key.
        calls: Call key -> answered call.
        tally: Counts scored and unscored items.
    """
    for c in spec.criteria:
        result.metrics[f"judge:{c.name}"] = {"higher_is_better": True, "corpus_level": False, "judge": True,
                                             "scale": [c.scale.min, c.scale.max]}
    for model in result.scores:
        n = len(result.details[model])
        for c in spec.criteria:
            result.scores[model][f"judge:{c.name}"] = [None] * n
            result.rationales[model][f"judge:{c.name}"] = [None] * n
        for i in range(n):
            for g, group in enumerate(groups):
                call = calls[keys[model, i, g]]
                got = call.parsed.scores if isinstance(call.parsed, PointwiseParse) else {}
                for c in group:
                    _score_criterion(result, model, i, c, got.get(c.name), call)
                    tally.count(result.scores[model][f"judge:{c.name}"][i])


def _score_criterion(result: JudgeResult, model: str, i: int, c: CriterionSpec, entry: Any, call: Call) -> None:
    metric = f"judge:{c.name}"
    if entry is None:
        result.details[model][i][metric] = {"score": None, "value": None, "error": call.error or "not scored",
                                            "raw": _raw(call)}
        return
    value = c.scale.normalise(entry.score)
    result.scores[model][metric][i] = value
    result.rationales[model][metric][i] = entry.rationale
    result.details[model][i][metric] = {"score": entry.score, "value": value, "rationale": entry.rationale,
                                        "cached": _was_cached(call)}


def score_pairwise(result: JudgeResult, reference_model: str,
                   keys: dict[tuple[str, int], tuple[str, str] | None], calls: dict[str, Call], tally: Tally) -> None:
    """Fill `judge:pairwise` for every adapter and item from the calls in both orders.

    Args:
        result: Filled in place.
        reference_model: The model every other is compared with ("base").
        keys: (adapter, item) -> (base-first key, adapter-first key), None for identical responses.
        calls: Call key -> answered call.
        tally: Counts scored items and the pairwise outcomes.
    """
    # The base has no item values of its own here; 0.5 (no preference) is what it scores
    # against itself, and the level an adapter's pairwise mean is compared with.
    result.metrics[PAIRWISE_METRIC] = {"higher_is_better": True, "corpus_level": False, "judge": True,
                                       "reference_model": reference_model, "reference_value": 0.5}
    for model in result.scores:
        if model == reference_model:
            continue
        n = len(result.details[model])
        result.scores[model][PAIRWISE_METRIC] = [None] * n
        result.rationales[model][PAIRWISE_METRIC] = [None] * n
        for i in range(n):
            pair = keys[model, i]
            tally.pairs["pairs"] += 1
            if pair is None:
                tally.pairs["identical"] += 1
                tally.pairs["ties"] += 1
                detail: dict[str, Any] = {"value": 0.5, "identical": True}
                rationale: str | None = "identical responses (not asked)"
            else:
                detail = _pair_outcome(calls[pair[0]], calls[pair[1]], tally.pairs)
                rationale = detail.get("rationale")
            result.details[model][i][PAIRWISE_METRIC] = detail
            result.scores[model][PAIRWISE_METRIC][i] = detail["value"]
            result.rationales[model][PAIRWISE_METRIC][i] = rationale
            tally.count(detail["value"])


def score_agreement(spec: JudgeSpec, groups: list[list[CriterionSpec]], label_rows: list[dict[str, Any]],
                    keys: dict[tuple[int, int], str], calls: dict[str, Call]) -> dict[str, Any]:
    """Per labelled criterion: how the judge's levels agree with the people's on the labelled rows."""
    assert spec.human_labels is not None
    out: dict[str, Any] = {}
    for c in spec.criteria:
        if c.name not in spec.human_labels.scores:
            continue
        g = next(g for g, group in enumerate(groups) if c in group)
        judged: list[float | None] = []
        human: list[float | None] = []
        for r, row in enumerate(label_rows):
            call = calls[keys[r, g]]
            entry = call.parsed.scores.get(c.name) if isinstance(call.parsed, PointwiseParse) else None
            judged.append(entry.score if entry else None)
            human.append(row["labels"][c.name])
        out[c.name] = agreement(judged, human, spec.human_labels.method)
    return out


def _was_cached(call: Call) -> bool:
    last = call.reask_reply or call.reply
    return bool(last and last.cached)


RAW_LIMIT = 4000  # characters kept per unusable reply; enough to see what went wrong


def _raw(call: Call) -> str | None:
    if not call.raw:
        return None
    kept = [r if len(r) <= RAW_LIMIT else f"{r[:RAW_LIMIT]}... [{len(r) - RAW_LIMIT} more characters]"
            for r in call.raw]
    return redact("\n----- re-ask -----\n".join(kept))


def _pair_outcome(base_first: Call, adapter_first: Call, counts: dict[str, int]) -> dict[str, Any]:
    """Combine the two orders into one score; positions are mapped back to models first."""
    pb, pa = base_first.parsed, adapter_first.parsed
    if not (isinstance(pb, PairwiseParse) and pb.winner and isinstance(pa, PairwiseParse) and pa.winner):
        counts["unscored"] += 1
        failed = [c for c in (base_first, adapter_first) if not (isinstance(c.parsed, PairwiseParse) and c.parsed.winner)]
        return {"value": None, "error": "; ".join(c.error or "not scored" for c in failed),
                "raw": "\n===== other order =====\n".join(r for r in (_raw(c) for c in failed) if r)}
    # base-first: A is base, B is the adapter; adapter-first: the other way round.
    pref_1 = {"A": "base", "B": "adapter", "tie": "tie"}[pb.winner]
    pref_2 = {"A": "adapter", "B": "base", "tie": "tie"}[pa.winner]
    detail: dict[str, Any] = {"verdicts": {"base_first": pb.winner, "adapter_first": pa.winner},
                              "rationale": f"base shown first: {pb.rationale or '-'} | adapter shown first: "
                                           f"{pa.rationale or '-'}",
                              "cached": _was_cached(base_first) and _was_cached(adapter_first)}
    if pref_1 == pref_2:
        counts["consistent"] += 1
        detail["consistent"] = True
        if pref_1 == "adapter":
            counts["adapter_preferred"] += 1
            detail["value"] = 1.0
        elif pref_1 == "base":
            counts["base_preferred"] += 1
            detail["value"] = 0.0
        else:
            counts["ties"] += 1
            detail["value"] = 0.5
    else:
        counts["inconsistent"] += 1
        counts["ties"] += 1  # a preference that flips with position is no preference
        detail["consistent"] = False
        detail["value"] = 0.5
    return detail


def summary(name: str, st: dict[str, Any]) -> str:
    """The one-line log message at the end of a judging pass."""
    parts = [f"judge · {name}: {st['scored']} scored, {st['unscored']} unscored",
             f"{st['requests']} requests ({st['retries']} retries, {st['failures']} failed, {st['reasks']} re-asks)",
             f"{st['cached']} from cache"]
    if st.get("swap_consistency") is not None:
        parts.append(f"swap consistency {100 * st['swap_consistency']:.0f}%")
    if st.get("budget_exhausted"):
        parts.append(f"budget: {st['budget_exhausted']}")
    parts.append(f"{st['wall_s']:.1f}s")
    return ", ".join(parts)
