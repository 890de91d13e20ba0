"""Item subsets by leak evidence, beyond clean-vs-all.

A gain measured on items the adapter saw in training says little about new inputs. The
split shows how much: contaminated items, divided by what the training row held (the
input only, or the input with its gold answer, harness.leaks.contamination), and items
dated on or before the last day of the training data ("at risk") against those dated
after it (harness.leaks.temporal).

One rule, read from the item tags that `compare --train` writes (`leak`, `contamination`,
`temporal`), serves run.json (`leaks.subset_aggregates`, from the evaluation's records),
the paired comparison (`Comparison.row(..., subset=...)`), summary.md and the report.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

# subset id -> label shown in summary.md and the report, in display order
SUBSETS: dict[str, str] = {
    "contaminated": "contaminated (all)",
    "input_only": "contaminated: input only",
    "input_answer": "contaminated: input + answer",
    "at_risk": "dated on/before cutoff (at risk)",
    "after_cutoff": "dated after cutoff",
    "undated": "undated",
}


def subsets_of(leak: Any, contamination: Any, temporal: Any) -> list[str]:
    """The SUBSETS one item belongs to, from its tags."""
    out = []
    if leak == "contaminated":
        out.append("contaminated")
        if contamination in ("input_only", "input_answer"):
            out.append(contamination)
    if temporal in ("at_risk", "after_cutoff", "undated"):
        out.append(temporal)
    return out


def subset_aggregates(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Item-level metric means per subset, kind, task and model (run.json `leaks.subset_aggregates`).

    Args:
        records: items.jsonl lines as dicts.

    Returns:
        subset -> kind -> task -> model -> {metric: mean, "n": items}; subsets without
        items are left out.
    """
    sums: dict[tuple, list[float]] = {}
    counts: dict[tuple, int] = {}
    for r in records:
        for subset in subsets_of(r.get("leak"), r.get("contamination"), r.get("temporal")):
            key = (subset, r["kind"], r["task"], r["model"])
            counts[key] = counts.get(key, 0) + 1
            for metric, value in (r.get("scores") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    sums.setdefault(key + (metric,), []).append(float(value))
    out: dict[str, dict[str, Any]] = {}
    for key, n in counts.items():
        subset, kind, task, model = key
        out.setdefault(subset, {}).setdefault(kind, {}).setdefault(task, {})[model] = {"n": n}
    for (subset, kind, task, model, metric), vals in sums.items():
        out[subset][kind][task][model][metric] = sum(vals) / len(vals)
    return {s: out[s] for s in SUBSETS if s in out}


def subset_masks(lines: Mapping[str, list[Any]], n: int) -> dict[str, np.ndarray]:
    """Per subset, a bool mask over `n` aligned items: in the subset when any model's line
    says so (lines of one run carry the same tags). Subsets with no item are left out.

    Args:
        lines: model -> its ItemRecord lines, aligned item by item.
        n: Items per model.
    """
    masks: dict[str, np.ndarray] = {}
    for per_model in lines.values():
        for i, line in enumerate(per_model[:n]):
            for subset in subsets_of(line.leak, line.contamination, line.temporal):
                masks.setdefault(subset, np.zeros(n, dtype=bool))[i] = True
    return {s: masks[s] for s in SUBSETS if s in masks}


def subset_rows(comp: Any, rows: Iterable[Any]) -> list[tuple[Any, str, Any]]:
    """Paired comparisons of `rows` (task-level `DeltaRow`s of a `Comparison`) on every leak
    subset their task has: clean, then SUBSETS in order.

    Returns:
        (the all-items row, subset id, the subset's DeltaRow or None when no item of the
        subset was scored for both models).
    """
    out = []
    for row in rows:
        data = comp.task(row.task, row.kind)
        if data is None:
            continue
        names = (["clean"] if data.clean is not None else []) + list(data.subset_masks())
        for subset in names:
            out.append((row, subset, comp.row(row.adapter, row.task, row.metric, kind=row.kind, subset=subset)))
    return out


def label(subset: str) -> str:
    """How a subset is named in summary.md and the report."""
    return "clean (no leak evidence)" if subset == "clean" else SUBSETS.get(subset, subset)
