"""The report view model: what report.html shows, built from a run folder and its `Comparison`.

Every number about a base-vs-adapter difference comes from one `harness.analysis.comparison.Comparison`
(the object summary.md, verdict.json and the gate read) and is formatted by
`harness.fmt`, so the HTML report cannot disagree with summary.md. When the folder has
a verdict.json, the comparison is computed with the gate's settings as verdict.json records
them (confidence, bootstrap resamples and seed; the policy file is not re-read) and checked
against the deltas the gate saw.

A run without a base or without adapters (`harness run`) has no comparison: the view then
holds per-model scores, examples, cost and provenance only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import fmt
from harness.analysis.comparison import Comparison
from harness.analysis.deltas import Flag
from harness.analysis.pairing import BASE
from harness.errors import RunLogError
from harness.log.folder import RUN, VERDICT, RunFolder
from harness.log.schema import ArmVerdict, ItemRecord, RuleDoc, RunMeta, VerdictDoc
from harness.outputs.report.rows import HeadlineRow

_RULE_ORDER = {"fail": 0, "inconclusive": 1, "skipped": 2, "pass": 3}


@dataclass(frozen=True)
class ScoreRow:
    """One model's aggregate of one metric on one task (runs without a comparison)."""

    kind: str
    task: str
    metric: str
    model: str
    n: int
    value: str


@dataclass(frozen=True)
class Preference:
    """A metric scored on the adapter only (the pairwise judge: 1 win, 0.5 tie, 0 loss)."""

    adapter: str
    task: str
    metric: str
    n: int
    mean: str
    wins: int
    ties: int
    losses: int


@dataclass
class VerdictInfo:
    """The verdict banner.

    Attributes:
        status: "pass", "fail", "inconclusive", or "not gated".
        exit_code: The gate's exit code, None when not gated.
        policy: The policy file the gate used.
        created: When the gate ran.
        rules: verdict.json rules, failing ones first.
        notes: Warnings about the verdict itself (older than the run, other numbers).
    """

    status: str
    exit_code: int | None = None
    policy: str | None = None
    created: str | None = None
    rules: list[RuleDoc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    b_vs_a: ArmVerdict | None = None  # the gate's B-vs-A section (`harness ab --vs`)

    @property
    def gated(self) -> bool:
        return self.status != "not gated"

    @property
    def css(self) -> str:
        return {"pass": "pass", "fail": "fail", "inconclusive": "inconclusive"}.get(self.status, "none")


@dataclass
class ReportView:
    """Everything report.html renders; sections that are None or empty are left out.

    Attributes:
        run_dir: The run folder.
        meta: run.json.
        models: Model names in run order.
        comparison: The comparison (None for runs without base and adapter).
        settings: Keyword arguments the comparison was built with, and where they came from.
        verdict: The banner.
        flags: Facts the reader must know (adapter without effect, ...), as dicts.
        headline: One row per adapter, task and metric (the comparison's rows, in order).
        scores: Per-model aggregates, for runs without a comparison.
        preferences: Adapter-only metrics (pairwise judge).
        items: Every items.jsonl line (read once; panels share it).
        panels: Filled by `harness.outputs.report.panels.add_panels`.
    """

    run_dir: Path
    meta: RunMeta
    models: list[str]
    comparison: Comparison | None
    settings: dict[str, Any]
    verdict: VerdictInfo
    flags: list[dict[str, Any]]
    headline: list[HeadlineRow]
    scores: list[ScoreRow]
    preferences: list[Preference]
    items: list[ItemRecord]
    panels: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str | None:
        return self.comparison.base if self.comparison else None

    @property
    def adapters(self) -> list[str]:
        return list(self.comparison.adapters) if self.comparison else []

    def headline_for(self, adapter: str) -> list[HeadlineRow]:
        return [h for h in self.headline if h.row.adapter == adapter]


# --------------------------------------------------------------------------- settings


def resolve_settings(policy: Any = None, verdict: VerdictDoc | None = None) -> dict[str, Any]:
    """Comparison settings: the given policy's, else the gate's (verdict.json), else defaults.

    Returns:
        Keyword arguments for `Comparison` plus "source" (a sentence saying where they came from).
    """
    if policy is not None:
        from harness.analysis.policy import Policy, load_policy

        p = policy if isinstance(policy, Policy) else load_policy(policy)
        return {**p.comparison_settings(), "source": f"policy {p.source or '(in memory)'}"}
    settings = verdict.comparison_settings() if verdict is not None else {}
    if settings:
        return {**settings, "source": VERDICT}
    return {"source": "defaults (not gated)"}


def _read_verdict(folder: RunFolder) -> tuple[VerdictDoc | None, list[str]]:
    try:
        doc = folder.read_verdict()
    except RunLogError as exc:  # a broken verdict must not stop the report
        return None, [f"{exc.message}; the verdict is not shown"]
    notes = []
    if doc is not None and folder.has_run() and os.path.getmtime(folder.verdict_json) < os.path.getmtime(folder.run_json):
        notes.append(f"{VERDICT} is older than {RUN}: the run was redone after the gate; "
                     "re-run `harness gate` for a current verdict")
    return doc, notes


def _verdict_info(doc: VerdictDoc | None, notes: list[str]) -> VerdictInfo:
    if doc is None:
        return VerdictInfo(status="not gated", notes=notes)
    rules = sorted(doc.rules, key=lambda r: _RULE_ORDER.get(r.status, 4))
    return VerdictInfo(status=doc.verdict, exit_code=doc.exit_code, policy=doc.policy, created=doc.created,
                       rules=rules, notes=notes, b_vs_a=doc.b_vs_a)


def _check_against_verdict(comparison: Comparison, doc: VerdictDoc) -> list[str]:
    """Sentences naming deltas that differ from the gate's (a changed run or other settings)."""
    mine = {(r.adapter, r.kind, r.task, r.metric): r for r in comparison.rows}
    moved, bounds = [], []
    for d in doc.deltas:
        key = (d.get("adapter"), d.get("kind"), d.get("task"), d.get("metric"))
        r = mine.get(key)
        if r is None:
            continue
        if not _close(d.get("delta"), r.delta):
            moved.append("/".join(map(str, key[2:])))
        elif not (_close(d.get("ci_low"), r.ci_low) and _close(d.get("ci_high"), r.ci_high)):
            bounds.append("/".join(map(str, key[2:])))
    out = []
    if moved:
        out.append(f"{VERDICT} was computed on other results ({', '.join(moved[:5])} moved): "
                   "re-run `harness gate` on this run")
    if bounds:
        out.append(f"bounds differ from {VERDICT} ({', '.join(bounds[:5])}): pass the gate's policy "
                   "with `harness report --policy FILE`")
    return out


def _close(a: Any, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and (b is None or not math.isfinite(b))
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


# --------------------------------------------------------------------------- rows


def _single_scores(meta: RunMeta) -> list[ScoreRow]:
    out = []
    for kind, tasks in meta.aggregates.sections():
        for task, per_model in tasks.items():
            for model, agg in per_model.items():
                for metric, value in agg.metric_values().items():
                    if value is not None:
                        out.append(ScoreRow(kind, task, metric, model, agg.n, fmt.pts(value * 100.0)))
    return out


def _preferences(comparison: Comparison) -> list[Preference]:
    """Metrics the base never has (judge:pairwise is attached to adapter lines only)."""
    import numpy as np

    out = []
    for adapter in comparison.adapters:
        for data in comparison.tasks():
            for metric in data.metrics:
                base = data.scores(comparison.base, metric)
                mine = data.scores(adapter, metric)
                scored = mine[np.isfinite(mine)]
                if np.isfinite(base).any() or scored.size == 0:
                    continue
                out.append(Preference(adapter, data.task, metric, int(scored.size), fmt.pts(float(scored.mean()) * 100),
                                      int((scored == 1).sum()), int((scored == 0.5).sum()), int((scored == 0).sum())))
    return out


def _flag_dicts(flags: list[Any]) -> list[dict[str, Any]]:
    out = []
    for f in flags:
        d = f.to_dict() if isinstance(f, Flag) else dict(f) if isinstance(f, dict) else None
        if d and d not in out:
            out.append(d)
    return out


# --------------------------------------------------------------------------- build


def build_view(run_dir: str | Path, *, policy: Any = None, comparison: Comparison | None = None,
               verdict: Any = None, panels: bool = True) -> ReportView:
    """Reads a run folder into a `ReportView`.

    Args:
        run_dir: A folder written by `harness run`/`harness compare`.
        policy: A gate policy (file or `Policy`): its confidence and bootstrap settings are used.
        comparison: An already computed comparison of this folder (skips recomputing it).
        verdict: A `harness.analysis.verdict.Verdict` just computed (instead of reading verdict.json).
        panels: Build the panels and the examples' payload (False: verdict, flags and the
            headline only, which is all summary.md needs).

    Raises:
        RunLogError: Missing or corrupt run log.
        IncomparableError: Base and adapter answered different items or prompts.
        ConfigError: An invalid policy.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLogError(f"run folder {run_dir} does not exist",
                          "pass the --out folder of a finished `harness run` or `harness compare`")
    folder = RunFolder(run_dir)
    meta = folder.read_meta()
    models = list(meta.models)
    items: list[ItemRecord] | None = None
    if not models:  # an old run.json without `models`: the items name them
        items = folder.read_items()
        models = list(dict.fromkeys(r.model for r in items))
    notes: list[str] = []
    if verdict is not None:
        doc = verdict.to_doc()
        comparison = comparison or verdict.comparison
    else:
        doc, notes = _read_verdict(folder)
    if comparison is None:
        settings = resolve_settings(policy, doc)
        if BASE in models and len(models) > 1:
            comparison = Comparison.from_run_dir(run_dir, **{k: v for k, v in settings.items() if k != "source"})
    elif verdict is not None:
        settings = {"source": f"policy {verdict.policy.source or '(in memory)'}"}
    else:
        settings = {"source": "the caller"}
    flags: list[dict[str, Any]] = _flag_dicts([f.model_dump(exclude_none=True) for f in doc.flags] if doc else [])
    if comparison is not None:
        settings = {"confidence": comparison.confidence, "resamples": comparison.resamples,
                    "permutations": comparison.permutations, "seed": comparison.seed, "source": settings["source"]}
        flags = _flag_dicts(flags + _flag_dicts(comparison.flags))
        if doc is not None and verdict is None:
            notes += _check_against_verdict(comparison, doc)
        # The comparison already holds every line, aligned; reading the file again would double the memory.
        items = [line for data in comparison.tasks() for lines in data.lines.values() for line in lines]
    elif items is None:
        items = folder.read_items()
    view = ReportView(
        run_dir=run_dir, meta=meta, models=models, comparison=comparison, settings=settings,
        verdict=_verdict_info(doc, notes), flags=flags,
        headline=[HeadlineRow.of(r) for r in comparison.rows] if comparison else [],
        scores=[] if comparison else _single_scores(meta),
        preferences=_preferences(comparison) if comparison else [],
        items=items)
    if panels:
        from harness.outputs.report.panels import add_panels

        add_panels(view)
    return view
