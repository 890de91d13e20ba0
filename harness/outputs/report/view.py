"""The report view model: what report.html shows, built from a run folder and its `Comparison`.

Every number about a base-vs-adapter difference comes from one `harness.analysis.comparison.Comparison`
(the object summary.md, verdict.json and the gate read) and is formatted by
`harness.outputs.report.fmt`, so the HTML report cannot disagree with summary.md. When the folder has
a verdict.json, the comparison is computed with the gate's settings (confidence, bootstrap
resamples and seed) and checked against the deltas the gate saw.

A run without a base or without adapters (`harness run`) has no comparison: the view then
holds per-model scores, examples, cost and provenance only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.comparison import Comparison, DeltaRow, Flag
from harness.errors import RunLogError
from harness.analysis.pairing import BASE
from harness.outputs.report import fmt
from harness.outputs.report.fmt import Cells, Tone
from harness.log.runlog import read_items, read_meta

VERDICT_FILE = "verdict.json"
_RULE_ORDER = {"fail": 0, "inconclusive": 1, "skipped": 2, "pass": 3}


@dataclass(frozen=True)
class HeadlineRow:
    """A `DeltaRow` (the very object of `Comparison.rows`) with its printed cells and tone."""

    row: DeltaRow
    cells: Cells
    tone: Tone

    @classmethod
    def of(cls, row: DeltaRow) -> "HeadlineRow":
        return cls(row, fmt.cells(row), fmt.tone(row))


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
        rules: verdict.json rules (name, status, reason, blocking), failing ones first.
        notes: Warnings about the verdict itself (older than the run, other numbers).
    """

    status: str
    exit_code: int | None = None
    policy: str | None = None
    created: str | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

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
    meta: dict[str, Any]
    models: list[str]
    comparison: Comparison | None
    settings: dict[str, Any]
    verdict: VerdictInfo
    flags: list[dict[str, Any]]
    headline: list[HeadlineRow]
    scores: list[ScoreRow]
    preferences: list[Preference]
    items: list[dict[str, Any]]
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


def _load_policy(policy: Any):
    from harness.analysis.policy import Policy, load_policy

    return policy if isinstance(policy, Policy) else load_policy(policy)


def resolve_settings(run_dir: Path, policy: Any = None, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Comparison settings: the given policy's, else the gate's (verdict.json), else defaults.

    Returns:
        Keyword arguments for `Comparison` plus "source" (a sentence saying where they came from).
    """
    if policy is not None:
        p = _load_policy(policy)
        return {**p.comparison_settings(), "source": f"policy {p.source or '(in memory)'}"}
    if verdict:
        path = verdict.get("policy")
        if path and Path(path).is_file():
            try:
                return {**_load_policy(path).comparison_settings(), "source": f"policy {path} (from {VERDICT_FILE})"}
            except Exception:  # an edited or broken policy must not stop the report
                pass
        out: dict[str, Any] = {}
        if isinstance(verdict.get("confidence"), (int, float)):
            out["confidence"] = float(verdict["confidence"])
        boot = verdict.get("bootstrap")
        if isinstance(boot, dict):
            out.update({k: int(boot[k]) for k in ("resamples", "permutations", "seed") if k in boot})
        if out:
            return {**out, "source": f"{VERDICT_FILE}"}
    return {"source": "defaults (not gated)"}


def _read_verdict(run_dir: Path) -> tuple[dict[str, Any] | None, list[str]]:
    path = run_dir / VERDICT_FILE
    if not path.is_file():
        return None, []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return None, [f"{VERDICT_FILE} is not valid JSON ({exc}); the verdict is not shown"]
    if not isinstance(doc, dict) or "verdict" not in doc:
        return None, [f"{VERDICT_FILE} has no verdict; it is not shown"]
    notes = []
    run_json = run_dir / "run.json"
    if run_json.is_file() and os.path.getmtime(path) < os.path.getmtime(run_json):
        notes.append(f"{VERDICT_FILE} is older than run.json: the run was redone after the gate; "
                     "re-run `harness gate` for a current verdict")
    return doc, notes


def _verdict_info(doc: dict[str, Any] | None, notes: list[str]) -> VerdictInfo:
    if doc is None:
        return VerdictInfo(status="not gated", notes=notes)
    rules = [r for r in doc.get("rules") or [] if isinstance(r, dict)]
    rules.sort(key=lambda r: _RULE_ORDER.get(str(r.get("status")), 4))
    return VerdictInfo(status=str(doc.get("verdict")), exit_code=doc.get("exit_code"), policy=doc.get("policy"),
                       created=doc.get("created"), rules=rules, notes=notes)


def _check_against_verdict(comparison: Comparison, doc: dict[str, Any]) -> list[str]:
    """Sentences naming deltas that differ from the gate's (a changed run or other settings)."""
    mine = {(r.adapter, r.kind, r.task, r.metric): r for r in comparison.rows}
    moved, bounds = [], []
    for d in doc.get("deltas") or []:
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
        out.append(f"{VERDICT_FILE} was computed on other results ({', '.join(moved[:5])} moved): "
                   "re-run `harness gate` on this run")
    if bounds:
        out.append(f"bounds differ from {VERDICT_FILE} ({', '.join(bounds[:5])}): pass the gate's policy "
                   "with `harness report --policy FILE`")
    return out


def _close(a: Any, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and (b is None or not math.isfinite(b))
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


# --------------------------------------------------------------------------- rows


def _single_scores(meta: dict[str, Any]) -> list[ScoreRow]:
    out = []
    for section, tasks in (meta.get("aggregates") or {}).items():
        kind = "bench" if section == "bench" else "suite"
        for task, per_model in (tasks or {}).items():
            for model, agg in (per_model or {}).items():
                for metric, value in (agg or {}).items():
                    if metric in ("n", "mean_latency_s", "mean_new_tokens") or isinstance(value, bool) \
                            or not isinstance(value, (int, float)):
                        continue
                    out.append(ScoreRow(kind, task, metric, model, int(agg.get("n") or 0),
                                        fmt.pts(float(value) * 100.0)))
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
        verdict: A `harness.analysis.gate.Verdict` just computed (instead of reading verdict.json).
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
    meta = read_meta(run_dir)
    models = list(meta.get("models") or [])
    items: list[dict[str, Any]] | None = None
    if not models:  # an old run.json without `models`: the items name them
        items = read_items(run_dir)
        models = list(dict.fromkeys(str(r.get("model")) for r in items))
    notes: list[str] = []
    if verdict is not None:
        doc = verdict.to_dict()
        comparison = comparison or verdict.comparison
    else:
        doc, notes = _read_verdict(run_dir)
    if comparison is None:
        settings = resolve_settings(run_dir, policy, doc)
        if BASE in models and len(models) > 1:
            comparison = Comparison.from_run_dir(run_dir, **{k: v for k, v in settings.items() if k != "source"})
    elif verdict is not None:
        settings = {"source": f"policy {verdict.policy.source or '(in memory)'}"}
    else:
        settings = {"source": "the caller"}
    flags: list[dict[str, Any]] = _flag_dicts(list(doc.get("flags") or []) if doc else [])
    if comparison is not None:
        settings = {"confidence": comparison.confidence, "resamples": comparison.resamples,
                    "permutations": comparison.permutations, "seed": comparison.seed, "source": settings["source"]}
        flags = _flag_dicts(flags + _flag_dicts(comparison.flags))
        if doc is not None and verdict is None:
            notes += _check_against_verdict(comparison, doc)
        # The comparison already holds every line, aligned; reading the file again would double the memory.
        items = [line for data in comparison.tasks() for lines in data.lines.values() for line in lines]
    elif items is None:
        items = read_items(run_dir)
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
