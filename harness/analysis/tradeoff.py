"""Task gain and forgetting of one trained configuration, from its run.json aggregates.

What `harness sweep` puts on its two axes, in points (100 x a 0..1 score), signed so that
up is good for gain and up is bad for forgetting whatever the metric's direction:

- gain: the adapter's aggregate minus the base's on one task and metric (a suite's first
  metric by default), averaged over the training seeds; its sample standard deviation across
  seeds when there are several.
- forgetting: the base's aggregate minus the adapter's on every benchmark task (metric `acc`,
  or the task's first metric when it has none), averaged over the tasks without weights
  (each benchmark counts once, however many items it has), then over seeds. Positive means
  the adapter lost accuracy there. None when the run has no benchmark.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from harness.analysis.headline import AggregateDelta, aggregate_deltas
from harness.log.schema import RunMeta

FORGETTING_METRIC = "acc"


@dataclass(frozen=True)
class Tradeoff:
    """One configuration's place on the sweep chart.

    Attributes:
        gain: Mean gain over seeds (points), None when the run lacks the gain metric.
        gain_sd: Sample standard deviation of the gain across seeds; None with one seed.
        forgetting: Mean benchmark drop (points), None without benchmarks.
        per_task: "task:metric" -> mean drop over seeds (points), one entry per benchmark task.
        seeds: How many trained adapters (seeds) the numbers average over.
    """

    gain: float | None
    gain_sd: float | None
    forgetting: float | None
    per_task: dict[str, float] = field(default_factory=dict)
    seeds: int = 0


def _improvement(row: AggregateDelta) -> float:
    return row.delta if row.higher_is_better else -row.delta


def bench_metric(metrics: list[str]) -> str | None:
    """The metric forgetting is read from for one benchmark task."""
    if FORGETTING_METRIC in metrics:
        return FORGETTING_METRIC
    return metrics[0] if metrics else None


def tradeoff(meta: RunMeta, gain_task: str, gain_metric: str) -> Tradeoff:
    """Gain on `gain_task`/`gain_metric` and benchmark forgetting of every adapter in `meta`."""
    rows = aggregate_deltas(meta)
    adapters = sorted({r.model for r in rows})
    gains = [_improvement(r) for r in rows if r.kind == "suite" and r.task == gain_task and r.metric == gain_metric]
    by_task: dict[str, dict[str, list[AggregateDelta]]] = {}
    for r in rows:
        if r.kind == "bench":
            by_task.setdefault(r.task, {}).setdefault(r.metric, []).append(r)
    per_task: dict[str, float] = {}
    for task, metrics in sorted(by_task.items()):
        metric = bench_metric(list(metrics))
        if metric is not None:
            per_task[f"{task}:{metric}"] = statistics.fmean(-_improvement(r) for r in metrics[metric])
    return Tradeoff(gain=statistics.fmean(gains) if gains else None,
                    gain_sd=statistics.stdev(gains) if len(gains) > 1 else None,
                    forgetting=statistics.fmean(per_task.values()) if per_task else None,
                    per_task=per_task, seeds=len(adapters))
