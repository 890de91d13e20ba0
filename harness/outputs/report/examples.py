"""The per-example explorer's data: one compact record per item, embedded as JSON.

A 10k-item run would be hundreds of MB as HTML; as data, drawn 50 items per page by the
page's script, it stays a few MB. Scores are pre-formatted here (same `fmt.pts` as every
table), so the page never rounds a number itself.

Payload (short keys keep it small):

    {"models": [...], "base": 0 | null, "adapters": [model index, ...],
     "tasks": [{"name", "kind", "metrics": [...], "primary": metric | null}],
     "items": [{"t": task index, "i": item id, "s": subject?, "r": [references], "l": leak label?,
                "o": [per model: {"p": prediction (cut to `cap` characters), "x": full length if cut?,
                                   "c": [score per metric, "12.50" or null],
                                   "j": {metric: rationale}?, "g": drop on the primary metric?,
                                   "d": [changed ranges in p]?, "b": [changed ranges in base p]?}]}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import fmt
from harness.log.schema import ItemRecord
from harness.outputs.report.diff import word_diff

_LEAK_RANK = {"clean": 0, "suspect": 1, "contaminated": 2}
# Outputs are cut so a huge run stays a file a laptop opens: about 12 MB of text in all,
# never less than 600 characters per output (the full text stays in items.jsonl).
TEXT_BUDGET = 12_000_000
MIN_CAP, MAX_CAP = 600, 20_000
MAX_REFERENCES = 10
RATIONALE_CAP = 2_000


@dataclass
class Explorer:
    """The explorer section: its embedded payload and the filter choices the page offers."""

    payload: dict[str, Any]
    tasks: list[tuple[str, int]] = field(default_factory=list)  # (task, items)
    leak_labels: list[str] = field(default_factory=list)
    regressions: int = 0
    cap: int = MAX_CAP
    cut: int = 0

    @property
    def n_items(self) -> int:
        return len(self.payload["items"])


@dataclass
class _Task:
    kind: str
    name: str
    item_ids: list[str]
    lines: dict[str, list[ItemRecord | None]]
    metrics: list[str]
    primary: str | None


def _tasks_from_comparison(comp: Any) -> list[_Task]:
    return [_Task(d.kind, d.task, list(d.item_ids), dict(d.lines), list(d.metrics), comp.primary_metric(d))
            for d in comp.tasks()]


def _tasks_from_items(items: list[ItemRecord], models: list[str]) -> list[_Task]:
    """Groups a run without a comparison by task, aligned on the first model that has the task."""
    grouped: dict[tuple[str, str], dict[str, dict[str, ItemRecord]]] = {}
    for r in items:
        grouped.setdefault((r.kind, r.task), {}).setdefault(r.model, {}).setdefault(str(r.item_id), r)
    out = []
    for (kind, task), per_model in grouped.items():
        order = list(next(iter(per_model.values())))
        seen = set(order)
        for lines in per_model.values():
            order += [i for i in lines if i not in seen and not seen.add(i)]
        metrics = list(dict.fromkeys(m for lines in per_model.values() for r in lines.values()
                                     for m in r.scores))
        lines = {m: [per_model[m].get(i) for i in order] for m in models if m in per_model}
        out.append(_Task(kind, task, order, lines, metrics, metrics[0] if metrics else None))
    return out


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + "…"


def _refs(line: ItemRecord, cap: int) -> list[str]:
    """Distinct references in order (SQuAD repeats its answers), each cut to `cap`."""
    return [_cut(r, cap) for r in dict.fromkeys(line.gold())][:MAX_REFERENCES]


def text_cap(n_texts: int) -> int:
    """Characters kept per output so that all outputs together stay near TEXT_BUDGET."""
    return max(MIN_CAP, min(MAX_CAP, TEXT_BUDGET // max(n_texts, 1)))


def _scores(line: ItemRecord | None, metrics: list[str]) -> list[str | None]:
    scores = line.scores if line is not None else {}
    return [None if scores.get(m) is None else fmt.pts(scores[m] * 100) for m in metrics]


def _leak(lines: list[ItemRecord | None]) -> str | None:
    labels = [line.leak for line in lines if line and line.leak is not None]
    return max(labels, key=lambda lab: _LEAK_RANK.get(lab, 0)) if labels else None


def explorer(view: Any) -> Explorer | None:
    """Builds the explorer of a view (None for a run without items)."""
    comp = view.comparison
    models = [comp.base] + list(comp.adapters) if comp else list(view.models)
    tasks = _tasks_from_comparison(comp) if comp else _tasks_from_items(view.items, models)
    if not tasks:
        return None
    index = {m: i for i, m in enumerate(models)}
    cap = text_cap(sum(len(t.item_ids) for t in tasks) * len(models))
    cut = 0
    drops: dict[tuple[str, str, str, str], float] = {}
    if comp is not None:
        for f in comp.flips:
            drops[(f.adapter, f.kind, f.task, f.item_id)] = f.drop
    items: list[dict[str, Any]] = []
    counts: list[tuple[str, int]] = []
    labels: set[str] = set()
    for t_idx, t in enumerate(tasks):
        counts.append((t.name, len(t.item_ids)))
        for i, iid in enumerate(t.item_ids):
            per = [t.lines[m][i] if m in t.lines else None for m in models]
            first = next(line for line in per if line)
            rec: dict[str, Any] = {"t": t_idx, "i": iid, "r": _refs(first, cap), "o": []}
            if first.subject and first.subject != t.name:
                rec["s"] = first.subject
            leak = _leak(per)
            if leak:
                rec["l"] = leak
                labels.add(leak)
            base_text = _cut(per[0].prediction, cap) if comp and per[0] else None
            for m, line in zip(models, per, strict=True):
                out: dict[str, Any] = {"p": None, "c": _scores(line, t.metrics)}
                if line is not None:
                    full = line.prediction
                    out["p"] = _cut(full, cap)
                    if len(full) > cap:
                        out["x"] = len(full)  # the page says the text was cut, and how long it was
                        cut += 1
                    kept = {k: _cut(v, RATIONALE_CAP) for k, v in line.judge_rationales().items()}
                    if kept:
                        out["j"] = kept
                if comp is not None and m != comp.base and line is not None:
                    drop = drops.get((m, t.kind, t.name, iid))
                    if drop is not None:
                        out["g"] = fmt.pts(drop)
                    spans = word_diff(base_text or "", out["p"] or "")
                    if spans:
                        out["b"], out["d"] = spans
                rec["o"].append(out)
            items.append(rec)
    payload = {"models": models, "base": index.get(comp.base) if comp else None,
               "adapters": [index[a] for a in comp.adapters] if comp else [],
               "tasks": [{"name": t.name, "kind": t.kind, "metrics": t.metrics, "primary": t.primary,
                          "hib": [view.meta.metric_info(m).higher_is_better for m in t.metrics]} for t in tasks],
               "items": items}
    ordered = [lab for lab in _LEAK_RANK if lab in labels] + sorted(labels - set(_LEAK_RANK))
    return Explorer(payload=payload, tasks=counts, leak_labels=ordered, regressions=len(drops), cap=cap, cut=cut)
