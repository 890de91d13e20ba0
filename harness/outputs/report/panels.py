"""The report's panels beyond the headline: forgetting, flips, leaks, cost and provenance.

Each builder returns None (or an empty list) when the run log has nothing for it, and the
template leaves that section out. Comparison numbers are the `Comparison`'s own rows.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import fmt
from harness.analysis.comparison import Comparison
from harness.analysis.deltas import POINTS, DeltaRow, Flip
from harness.errors import RunLogError
from harness.log.folder import LEAKS, RunFolder
from harness.log.schema import ItemRecord, LeakSummary
from harness.outputs.report.rows import HeadlineRow
from harness.outputs.report.training import training_panels

FLIPS_SHOWN = 25
LEAK_EVIDENCE_ITEMS = 200
LEAK_EVIDENCE_PER_ITEM = 3
LEAK_LABELS = ("clean", "suspect", "contaminated")
_LEAK_RANK = {lab: i for i, lab in enumerate(LEAK_LABELS)}


# --------------------------------------------------------------------------- forgetting


@dataclass
class SubjectChart:
    """Per-subject deltas of one benchmark (MMLU), worst gain first."""

    task: str
    metric: str
    rows: list[DeltaRow]


@dataclass
class Forgetting:
    """General-ability benchmarks for one adapter."""

    adapter: str
    rows: list[HeadlineRow]  # every benchmark task and metric
    charts: list[SubjectChart]


def forgetting(view: Any) -> list[Forgetting]:
    comp: Comparison | None = view.comparison
    if comp is None:
        return []
    out = []
    for adapter in comp.adapters:
        rows = [h for h in view.headline_for(adapter) if h.row.kind == "bench"]
        if not rows:
            continue
        charts = []
        for data in comp.tasks():
            metric = comp.primary_metric(data)
            if data.kind != "bench" or not data.has_subjects or metric is None:
                continue
            subj = [r for r in comp.subject_rows if r.adapter == adapter and r.task == data.task and r.metric == metric]
            if subj:
                charts.append(SubjectChart(data.task, metric, sorted(subj, key=lambda r: (r.gain, r.subject))))
        out.append(Forgetting(adapter, rows, charts))
    return out


# --------------------------------------------------------------------------- flips


@dataclass
class FlipGroup:
    """Items of one adapter and task that moved on the task's primary metric.

    `worse`/`better` count the same way summary.md does (flips, and the row's `better`).
    """

    adapter: str
    kind: str
    task: str
    metric: str
    binary: bool
    worse: int
    better: int
    top: list[Flip]
    gains: list[Flip]


def _gains(comp: Comparison, adapter: str, data: Any, metric: str, limit: int) -> list[Flip]:
    """Items that got better, largest gain first (Flip with a negative drop)."""
    hib, _ = comp.metric_info(metric)
    base, score = data.scores(comp.base, metric), data.scores(adapter, metric)
    gain = np.nan_to_num((score - base) if hib else (base - score), nan=0.0)
    idx = np.flatnonzero(gain > 0)
    idx = idx[np.argsort(-gain[idx], kind="stable")][:limit]
    b_preds, a_preds, refs = data.predictions(comp.base), data.predictions(adapter), data.references()
    return [Flip(adapter=adapter, kind=data.kind, task=data.task, item_id=data.item_ids[i], metric=metric,
                 base_score=base[i] * POINTS, adapter_score=score[i] * POINTS, drop=-float(gain[i]) * POINTS,
                 base_prediction=b_preds[i], adapter_prediction=a_preds[i], references=refs[i],
                 subject=data.subjects[i] if data.subjects else None) for i in idx]


def flips(view: Any) -> list[FlipGroup]:
    comp: Comparison | None = view.comparison
    if comp is None:
        return []
    out = []
    for adapter in comp.adapters:
        for data in comp.tasks():
            metric = comp.primary_metric(data)
            if metric is None:
                continue
            worse = comp.flips_for(adapter, data.task)
            worse = [f for f in worse if f.kind == data.kind]
            row = comp.row(adapter, data.task, metric, kind=data.kind)
            better = row.better if row else 0
            if not worse and not better:
                continue
            binary = bool(row and row.stats is not None and row.stats.binary)
            out.append(FlipGroup(adapter, data.kind, data.task, metric, binary, len(worse), better,
                                 worse[:FLIPS_SHOWN], _gains(comp, adapter, data, metric, FLIPS_SHOWN)))
    return out


# --------------------------------------------------------------------------- leaks


@dataclass
class LeakCount:
    task: str
    kind: str
    n: int
    counts: dict[str, int]
    split: dict[str, int] = field(default_factory=dict)  # contaminated items: input_only, input_answer


@dataclass
class LeakDelta:
    """A task/metric's delta on all items and on the clean (leak-free) items only."""

    adapter: str
    full: HeadlineRow
    clean: HeadlineRow | None  # None when no item is clean


@dataclass
class LeakSubsetRow:
    """A headline task/metric on one leak subset (harness.analysis.leak_subsets)."""

    adapter: str
    subset: str  # its display label
    full: HeadlineRow
    row: HeadlineRow | None  # None when no item of the subset was scored for both models


@dataclass
class LeakPanel:
    label_rule: str | None
    training_sha256: str | None
    counts: list[LeakCount]
    deltas: list[LeakDelta]
    evidence: list[dict[str, Any]]
    evidence_total: int
    evidence_file: bool
    subsets: list[LeakSubsetRow] = field(default_factory=list)
    temporal: Any = None  # the run's TemporalSummary: cutoff and per-task counts


def _labels_from_items(items: list[ItemRecord]) -> dict[tuple[str, str, str], str]:
    """(kind, task, item_id) -> worst label any model's line carries."""
    out: dict[tuple[str, str, str], str] = {}
    for r in items:
        if r.leak is None:
            continue
        key = (r.kind, r.task, str(r.item_id))
        if key not in out or _LEAK_RANK.get(r.leak, 0) > _LEAK_RANK.get(out[key], 0):
            out[key] = r.leak
    return out


def _read_evidence(view: Any) -> tuple[list[dict[str, Any]], int, bool]:
    """Flagged items of leaks.jsonl: RUN_DIR/leaks.jsonl, or run.json's `leaks.file` (relative to RUN_DIR)."""
    folder = RunFolder(view.run_dir)
    named = view.meta.leaks.file if view.meta.leaks else None
    path = Path(named) if named else Path(LEAKS)
    if not (folder.path / path).is_file():
        return [], 0, False
    try:
        records = folder.read_leaks(path)
    except RunLogError:
        return [], 0, True  # evidence is a courtesy: a torn file must not stop the report
    flagged = [r for r in records if r.label != "clean"]
    flagged.sort(key=lambda r: -_LEAK_RANK.get(r.label, 0))
    shown = []
    for rec in flagged[:LEAK_EVIDENCE_ITEMS]:
        ev = rec.evidence[:LEAK_EVIDENCE_PER_ITEM]
        answer = [{"detector": "row with input + answer", **rec.answer_row, "span": None}] if rec.answer_row else []
        shown.append({"task": rec.task, "item_id": rec.item_id, "label": rec.label,
                      "contamination": rec.contamination, "temporal": rec.temporal,
                      "evidence": [e.model_dump(exclude={"item_tokens"}, exclude_unset=True) for e in ev] + answer})
    return shown, len(flagged), True


def leaks(view: Any) -> LeakPanel | None:
    summary = view.meta.leaks
    labels = _labels_from_items(view.items)
    if summary is None and not labels:
        return None
    summary = summary or LeakSummary()
    counts = [LeakCount(task, c.kind, c.n, {lab: getattr(c, lab) for lab in LEAK_LABELS},
                        {"input_only": c.input_only, "input_answer": c.input_answer})
              for task, c in summary.counts.items()]
    if not counts and labels:
        per: dict[tuple[str, str], dict[str, int]] = {}
        for (kind, task, _), lab in labels.items():
            c = per.setdefault((kind, task), dict.fromkeys(LEAK_LABELS, 0))
            c[lab] = c.get(lab, 0) + 1
        counts = [LeakCount(task, kind, sum(c.values()), c) for (kind, task), c in per.items()]
    deltas = []
    comp = view.comparison
    if comp is not None:
        for h in view.headline:
            data = comp.task(h.row.task, h.row.kind)
            if data is None or data.clean is None:
                continue
            clean = comp.row(h.row.adapter, h.row.task, h.row.metric, kind=h.row.kind, subset="clean")
            deltas.append(LeakDelta(h.row.adapter, h, HeadlineRow.of(clean) if clean else None))
    subsets = []
    if comp is not None:
        from harness.analysis.leak_subsets import label, subset_rows

        for full, subset, row in subset_rows(comp, [h.row for h in view.headline]):
            if subset != "clean":  # the table above has the clean items
                subsets.append(LeakSubsetRow(full.adapter, label(subset), HeadlineRow.of(full),
                                             HeadlineRow.of(row) if row else None))
    evidence, total, has_file = _read_evidence(view)
    return LeakPanel(label_rule=summary.label_rule, training_sha256=summary.training.get("sha256"), counts=counts,
                     deltas=deltas, evidence=evidence, evidence_total=total, evidence_file=has_file, subsets=subsets,
                     temporal=summary.temporal)


# --------------------------------------------------------------------------- cost


@dataclass
class CostRow:
    """Means over one task's items for one model, with the change against the base."""

    task: str
    model: str
    n: int
    latency: str
    new_tokens: str
    chars: str
    d_latency: str = ""
    d_new_tokens: str = ""
    d_chars: str = ""


@dataclass
class CostTask:
    task: str
    rows: list[CostRow]
    latency: dict[str, list[float]] = field(default_factory=dict)  # model -> per-item seconds
    length: dict[str, list[float]] = field(default_factory=dict)  # model -> per-item new tokens (or chars)
    length_unit: str = "new tokens"


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _num(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _change(new: float | None, old: float | None, digits: int = 1) -> str:
    if new is None or old is None:
        return ""
    pct = f" ({(new - old) / old:+.0%})" if old else ""
    return f"{new - old:+.{digits}f}{pct}"


def cost(view: Any) -> list[CostTask]:
    """Latency, new tokens and output length per generative task (benchmarks score, not generate)."""
    grouped: dict[str, dict[str, list[ItemRecord]]] = {}
    for r in view.items:
        if r.kind == "suite":
            grouped.setdefault(r.task, {}).setdefault(r.model, []).append(r)
    out = []
    base = view.base or (view.models[0] if view.models else None)
    for task, per_model in grouped.items():
        stats = {}
        for model in [m for m in view.models if m in per_model]:
            lines = per_model[model]
            lat = [r.latency_s for r in lines if r.latency_s is not None]
            tok = [float(r.new_tokens) for r in lines if r.new_tokens is not None]
            chars = [float(len(r.prediction)) for r in lines]
            stats[model] = (len(lines), lat, tok, chars)
        if not any(s[1] or s[2] for s in stats.values()):
            continue
        rows = []
        b = stats.get(base)
        for model, (n, lat, tok, chars) in stats.items():
            row = CostRow(task, model, n, fmt.seconds(_mean(lat)), _num(_mean(tok)), _num(_mean(chars)))
            if b is not None and model != base:
                row.d_latency = _change(_mean(lat), _mean(b[1]), 3)
                row.d_new_tokens = _change(_mean(tok), _mean(b[2]))
                row.d_chars = _change(_mean(chars), _mean(b[3]))
            rows.append(row)
        use_tokens = all(s[2] for s in stats.values())
        out.append(CostTask(task, rows, latency={m: s[1] for m, s in stats.items() if s[1]},
                            length={m: (s[2] if use_tokens else s[3]) for m, s in stats.items()},
                            length_unit="new tokens" if use_tokens else "characters"))
    return out


# --------------------------------------------------------------------------- provenance


@dataclass
class Provenance:
    """Identity of what was evaluated: each entry is (label, value) with value a string."""

    run: list[tuple[str, str]]
    code: list[tuple[str, str]]
    models: list[tuple[str, list[tuple[str, str]]]]
    data: list[tuple[str, list[tuple[str, str]]]]
    other: list[tuple[str, str]]


_SKIP_PROVENANCE = {"base", "adapters", "suites", "benchmarks", "code", "libraries", "machine", "seed", "batch_size",
                    # lm-eval's own per-subtask numbers: the report's numbers are the comparison's.
                    "lm_eval_results"}
_KNOWN_META = {"schema_version", "created", "command", "spec", "models", "provenance", "metrics", "aggregates",
               "timing", "leaks", "training"}


def _s(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float)) for x in v):
        return ", ".join(map(str, v))
    return json.dumps(v, ensure_ascii=False, default=str)


def _pairs(d: dict[str, Any], keys: list[str] | None = None) -> list[tuple[str, str]]:
    keys = keys if keys is not None else list(d)
    return [(k, _s(d[k])) for k in keys if k in d and d[k] not in (None, "", [], {})]


def _pretty(v: Any, limit: int = 20_000) -> str:
    text = json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def provenance(view: Any) -> Provenance:
    meta = view.meta
    raw = meta.model_dump(mode="json", exclude_unset=True)  # listed as written, unknown keys too
    prov = raw.get("provenance") or {}
    run = [("created", meta.created)]
    if meta.command:
        run.append(("command", shlex.join(meta.command)))
    run.append(("run folder", str(view.run_dir)))
    for key in ("seed", "batch_size"):
        if key in prov:
            run.append((key.replace("_", " "), _s(prov[key])))
    spec = raw.get("spec") or {}
    run += [(k.replace("_", " "), _s(spec[k])) for k in ("dtype", "limit", "limit_per_subject", "num_fewshot")
            if spec.get(k) is not None]
    if spec.get("benches"):
        from harness.evaluate.forgetting.chat_format import describe

        run.append(("benchmark prompts", describe(spec.get("bench_format"))))
    if view.comparison is not None:
        st = view.settings
        run.append(("comparison", f"one-sided {st['confidence']:.0%} bounds, paired bootstrap {st['resamples']} "
                                  f"resamples, {st['permutations']} permutations, seed {st['seed']} "
                                  f"(settings from {st['source']})"))
    timing = raw.get("timing") or {}
    if timing:
        run.append(("timing", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in timing.items())))
    code = _pairs(prov.get("code") or {}) + _pairs(prov.get("libraries") or {}) + _pairs(prov.get("machine") or {})
    models = []
    if isinstance(prov.get("base"), dict):
        models.append(("base", _pairs(prov["base"])))
    for name, a in (prov.get("adapters") or {}).items():
        if isinstance(a, dict):
            models.append((str(name), _pairs(a)))
    data = []
    for name, s in (prov.get("suites") or {}).items():
        if isinstance(s, dict):
            data.append((f"suite {name}", _pairs(s)))
    for name, b in (prov.get("benchmarks") or {}).items():
        if isinstance(b, dict):
            b = dict(b)
            if isinstance(b.get("tasks"), list) and len(b["tasks"]) > 6:
                b["tasks"] = f"{len(b['tasks'])} tasks ({', '.join(b['tasks'][:3])}, …)"
            data.append((f"benchmark {name}", _pairs(b)))
    other = [(k, _pretty(v)) for k, v in prov.items() if k not in _SKIP_PROVENANCE]
    other += [(k, _pretty(v)) for k, v in raw.items() if k not in _KNOWN_META]
    return Provenance(run=run, code=code, models=models, data=data, other=other)


# --------------------------------------------------------------------------- all


# --------------------------------------------------------------------------- robustness


@dataclass
class Robustness:
    """One suite asked under `--perturb` variants: each model's score on the original prompts
    and under the variants, its consistency, and the paired Δ consistency per adapter."""

    suite: str
    metric: str  # the suite's first metric
    models: list[tuple[str, str, str, str]]  # model, original, perturbed, consistent (printed points)
    rows: list[HeadlineRow]


def robustness(view: Any) -> list[Robustness]:
    from harness.evaluate.perturb import SUFFIX

    suites = view.meta.aggregates.suites
    out = []
    for task, per_model in suites.items():
        if not task.endswith(SUFFIX):
            continue
        suite = task[: -len(SUFFIX)]
        originals = suites.get(suite, {})
        first = next(iter(originals.values()), None)
        metric = next(iter(first.metric_values()), "") if first is not None else ""

        def pts(agg, name):
            value = agg.metric_values().get(name) if agg is not None else None
            return "–" if value is None else fmt.pts(100 * value)

        models = [(m, pts(originals.get(m), metric), pts(agg, metric), pts(agg, "consistent"))
                  for m, agg in per_model.items()]
        rows = [h for h in view.headline if h.row.task == task and h.row.metric == "consistent"]
        out.append(Robustness(suite, metric, models, rows))
    return out


def seeds(view: Any) -> list[Any]:
    """`harness ab`: every gain per seed with its spread, and B vs A as the gate decided it."""
    from harness.outputs.seed_spread import spread_rows

    return spread_rows(view.meta, view.verdict.b_vs_a)


def add_panels(view: Any) -> None:
    """Fills `view.panels`: forgetting, flips, leaks, training, cost, provenance, explorer."""
    from harness.outputs.report.examples import explorer

    from harness.outputs.report.baselines import baselines

    view.panels = {
        "baselines": baselines(view),
        "forgetting": forgetting(view),
        "robustness": robustness(view),
        "flips": flips(view),
        "leaks": leaks(view),
        "training": training_panels(view.meta.training),
        "seeds": seeds(view),
        "cost": cost(view),
        "provenance": provenance(view),
        "explorer": explorer(view),
    }
