"""summary.md's leak section: scores on leak subsets (clean, contaminated split by what the
training row held, dated against the training cutoff) beside all items.

Rows come from the `Comparison` (harness.analysis.leak_subsets.subset_rows), the same rows
the report's leak panel shows, for each task's primary metric.
"""

from __future__ import annotations

from typing import Any

from harness.analysis.leak_subsets import label, subset_rows
from harness.fmt import pts as _f
from harness.fmt import pval as _p


def summary_lines(comp: Any) -> list[str]:
    """Markdown lines (a heading and a table), or [] when the run has no leak subsets."""
    primary = [r for r in comp.rows if r.metric == comp.primary_metric(comp.task(r.task, r.kind))]
    rows = subset_rows(comp, primary)
    if not rows:
        return []
    lines = ["", "### Leak subsets", "",
             "Scores on items the adapter may have seen in training, beside all items: contaminated items split by "
             "what the matching training row held (the input only, or the input with its gold answer), and items "
             "dated against the training cutoff."]
    temporal = comp.meta.leaks.temporal if comp.meta.leaks else None
    if temporal is not None and temporal.cutoff:
        lines.append(f"Training cutoff {temporal.cutoff} (from {temporal.cutoff_source}): items dated on or before it "
                     "are at risk.")
    lines += ["", "| adapter | task | metric | items | n | base | adapter | Δ | bounds | p |", "|" + "---|" * 10]
    shown_all: set[tuple] = set()
    for full, subset, row in rows:
        key = (full.adapter, full.kind, full.task, full.metric)
        if key not in shown_all:
            shown_all.add(key)
            lines.append(_line(full, "all"))
        if row is None:
            lines.append(f"| {full.adapter} | {full.task} | {full.metric} | {label(subset)} | 0 | | | | | |")
        else:
            lines.append(_line(row, label(subset)))
    return lines


def _line(r: Any, items: str) -> str:
    return (f"| {r.adapter} | {r.task} | {r.metric} | {items} | {r.n} | {_f(r.base)} | {_f(r.score)} "
            f"| **{_f(r.delta, True)}** | {_f(r.ci_low, True)} … {_f(r.ci_high, True)} | {_p(r.p_value)} |")
