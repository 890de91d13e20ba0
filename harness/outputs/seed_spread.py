"""The seed-spread table of an `harness ab` run, shared by summary.md and report.html.

One row per task, metric and comparison: each arm against the base (run.json `ab.summary`)
and, with `--vs`, arm B against arm A (`ab.b_vs_a`, or the gate's own B-vs-A section when
verdict.json has one, so that the outcome shown is the one the gate decided).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness import fmt
from harness.log.schema import ArmVerdict, RunMeta

B_VS_A = "B vs A"


@dataclass(frozen=True)
class SpreadRow:
    """One comparison across seeds, formatted (points; Δ raw, as the other tables print it)."""

    task: str
    metric: str
    comparison: str  # "A vs base", "B vs base", "B vs A", or "vs base" for a single arm
    per_seed: str
    mean: str
    sd: str
    range: str
    outcome: str = ""  # B vs A only: win, no-win or loss
    reason: str = ""
    lower_is_better: bool = False  # then a negative Δ is the improvement


def spread_rows(meta: RunMeta, arms: ArmVerdict | None = None) -> list[SpreadRow]:
    """Rows grouped by task and metric: A vs base, B vs base, then B vs A.

    Args:
        meta: run.json of an `harness ab` run (no rows without its `ab` summary).
        arms: The gate's B-vs-A section; default run.json's.
    """
    ab = meta.ab
    if ab is None:
        return []
    arms = arms if arms is not None else ab.b_vs_a
    single = len(ab.arms) < 2
    groups: dict[tuple[str, str, str], list[SpreadRow]] = {}
    for g in ab.summary:
        label = "vs base" if single else f"{g.arm} vs base"
        groups.setdefault((g.kind, g.task, g.metric), []).append(_row(meta, g, label))
    for g in arms.rows if arms else []:
        groups.setdefault((g.kind, g.task, g.metric), []).append(_row(meta, g, B_VS_A, g.outcome, g.reason))
    return [r for rows in groups.values() for r in rows]


def _row(meta: RunMeta, g, label: str, outcome: str = "", reason: str = "") -> SpreadRow:
    sd = "n/a (1 seed)" if g.sd_points is None else fmt.pts(g.sd_points)
    return SpreadRow(task=g.task, metric=g.metric, comparison=label,
                     per_seed=", ".join(fmt.pts(x, True) for x in g.gains_points), mean=fmt.pts(g.mean_points, True),
                     sd=sd, range=f"{fmt.pts(g.min_points, True)} … {fmt.pts(g.max_points, True)}", outcome=outcome,
                     reason=reason, lower_is_better=not meta.metric_info(g.metric).higher_is_better)


def summary_lines(meta: RunMeta, arms: ArmVerdict | None = None) -> list[str]:
    """summary.md's "Seeds" section (empty for runs that are not `harness ab` runs)."""
    rows = spread_rows(meta, arms)
    if not rows:
        return []
    arms = arms if arms is not None else meta.ab.b_vs_a
    out = ["", "### Seeds", "", f"Seeds {', '.join(map(str, meta.ab.seeds))}: Δ per seed, its mean, standard "
           "deviation and range (points). B vs A pairs seed s of B with seed s of A on the same items."]
    if arms is not None:
        out += ["", f"Rule: {arms.rule}."]
    out += ["", "| task | metric | comparison | Δ per seed | mean | sd | range | B vs A |", "|" + "---|" * 8]
    for r in rows:
        verdict = f"**{r.outcome}**" if r.outcome else ""
        metric = f"{r.metric} (↓ better)" if r.lower_is_better else r.metric
        out.append(f"| {r.task} | {metric} | {r.comparison} | {r.per_seed} | {r.mean} | {r.sd} | {r.range} "
                   f"| {verdict} |")
    reasons = [r for r in rows if r.reason]
    if reasons:
        out += [""] + [f"- {r.task} {r.metric}: {r.outcome}: {r.reason}" for r in reasons]
    return out
