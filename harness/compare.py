"""Per-metric base/adapter/delta rows from a saved run (no torch, no models).

Paired statistics and the gate build on these rows in `harness.analysis.stats` / `harness.analysis.gate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeltaRow:
    kind: str
    task: str
    metric: str
    model: str
    base: float
    value: float
    higher_is_better: bool
    n: int

    @property
    def delta(self) -> float:
        return self.value - self.base

    @property
    def improved(self) -> bool | None:
        if self.delta == 0:
            return None
        return (self.delta > 0) == self.higher_is_better


def delta_rows(meta: dict[str, Any]) -> list[DeltaRow]:
    """One row per (task, metric, adapter), against the base, from run.json's aggregates."""
    rows = []
    info = meta.get("metrics", {})
    for kind, tasks in meta.get("aggregates", {}).items():
        for task, per_model in tasks.items():
            base = per_model.get("base")
            if base is None:
                continue
            for model, agg in per_model.items():
                if model == "base":
                    continue
                for metric, value in agg.items():
                    if metric in ("n", "mean_latency_s", "mean_new_tokens") or not isinstance(value, (int, float)):
                        continue
                    if not isinstance(base.get(metric), (int, float)):  # e.g. a judge metric nobody scored
                        continue
                    rows.append(DeltaRow(kind=kind, task=task, metric=metric, model=model, base=float(base[metric]),
                                         value=float(value), n=int(agg.get("n", 0)),
                                         higher_is_better=info.get(metric, {}).get("higher_is_better", True)))
    return rows
