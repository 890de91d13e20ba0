"""Headline deltas from run.json's aggregates: no items, no statistics, no torch.

This is what the terminal prints right after a run and what `harness ab` spreads across
seeds. Paired statistics (bounds, p-values) are `harness.analysis.comparison`'s; both use
points (100 x a 0..1 score).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.analysis.pairing import BASE
from harness.log.schema import RunMeta

POINTS = 100.0


@dataclass(frozen=True)
class AggregateDelta:
    """One adapter's aggregate of one metric on one task against the base's, in points.

    Attributes:
        kind: "suite" or "bench".
        task: Task name.
        metric: Metric name.
        model: The adapter.
        n: Items the adapter's aggregate is over.
        base: The base's aggregate (points).
        score: The adapter's aggregate (points).
        delta: 100 x (adapter - base), computed on the 0..1 values.
        higher_is_better: The metric's direction.
    """

    kind: str
    task: str
    metric: str
    model: str
    n: int
    base: float
    score: float
    delta: float
    higher_is_better: bool

    @property
    def improved(self) -> bool | None:
        """True for a change in the metric's good direction, False for a regression, None for none."""
        if self.delta == 0:
            return None
        return (self.delta > 0) == self.higher_is_better


def aggregate_deltas(meta: RunMeta) -> list[AggregateDelta]:
    """One row per (task, metric, adapter) that both the base and the adapter have a number for."""
    rows = []
    for kind, tasks in meta.aggregates.sections():
        for task, per_model in tasks.items():
            if BASE not in per_model:
                continue
            base = per_model[BASE].metric_values()
            for model, agg in per_model.items():
                if model == BASE:
                    continue
                for metric, value in agg.metric_values().items():
                    if value is None or base.get(metric) is None:  # e.g. a judge metric nobody scored
                        continue
                    b = base[metric]
                    rows.append(AggregateDelta(kind=kind, task=task, metric=metric, model=model, n=agg.n,
                                               base=POINTS * b, score=POINTS * value, delta=POINTS * (value - b),
                                               higher_is_better=meta.metric_info(metric).higher_is_better))
    return rows


def baseline_deltas(meta: RunMeta) -> list[AggregateDelta]:
    """One row per (task, metric, adapter, baseline arm): the adapter's aggregate against the
    arm's (`compare --baseline`); `model` reads "ADAPTER vs ARM" and `base` is the arm's score."""
    arms = [m for m in meta.models if m in meta.provenance.baselines]
    adapters = [m for m in meta.models if m != BASE and m not in arms]
    rows = []
    for kind, tasks in meta.aggregates.sections():
        for task, per_model in tasks.items():
            for arm in (a for a in arms if a in per_model):
                ref = per_model[arm].metric_values()
                for adapter in (a for a in adapters if a in per_model):
                    for metric, value in per_model[adapter].metric_values().items():
                        if value is None or ref.get(metric) is None:
                            continue
                        b = ref[metric]
                        rows.append(AggregateDelta(kind=kind, task=task, metric=metric, model=f"{adapter} vs {arm}",
                                                   n=per_model[adapter].n, base=POINTS * b, score=POINTS * value,
                                                   delta=POINTS * (value - b),
                                                   higher_is_better=meta.metric_info(metric).higher_is_better))
    return rows
