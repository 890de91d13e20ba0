"""Synthetic run logs (run.json + items.jsonl) for gate and statistics tests: no model needed.

Built through the run log's own models (`harness.log.schema`) and written by `RunFolder`, so
the factory cannot drift from the contract the readers validate against.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.log.folder import RunFolder
from harness.log.schema import ItemRecord, RunMeta

METRIC_INFO = {"exact_match": (True, False), "f1": (True, False), "acc": (True, False), "acc_norm": (True, False),
               "bleu": (True, True), "chrf": (True, True)}


def _h(*parts: Any) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def binary_pair(n: int, base_acc: float, worse: int, better: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Base 0/1 scores with accuracy `base_acc`; the adapter loses `worse` right items and gains `better`."""
    rng = np.random.default_rng(seed)
    base = np.zeros(n)
    base[rng.permutation(n)[: round(n * base_acc)]] = 1.0
    adapter = base.copy()
    right, wrong = np.flatnonzero(base == 1), np.flatnonzero(base == 0)
    adapter[rng.choice(right, size=worse, replace=False)] = 0.0
    adapter[rng.choice(wrong, size=better, replace=False)] = 1.0
    return base.tolist(), adapter.tolist()


def continuous_pair(n: int, base_mean: float, shift: float, sd: float = 0.1, seed: int = 0) -> tuple[list, list]:
    """Base scores in 0..1 and adapter = base + shift + noise, clipped (a paired continuous metric)."""
    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(base_mean, 0.25, n), 0, 1)
    adapter = np.clip(base + shift + rng.normal(0, sd, n), 0, 1)
    return base.tolist(), adapter.tolist()


@dataclass
class TaskSpec:
    """One task of a synthetic run.

    scores: model -> metric -> one value per item (None = unscored).
    """

    name: str
    scores: dict[str, dict[str, list[float | None]]]
    kind: str = "suite"
    subjects: list[str] | None = None
    predictions: dict[str, list[str]] | None = None
    references: list[list[str]] | None = None
    leak: list[str] | None = None
    item_ids: list[str] | None = None
    prompt_hashes: dict[str, list[str]] | None = None  # model -> per item (default: same for all models)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        first = next(iter(self.scores.values()))
        return len(next(iter(first.values())))


def write_run(out: Path, tasks: list[TaskSpec], *, has_effect: dict[str, bool] | None = None,
              metric_info: dict[str, tuple[bool, bool]] | None = None) -> Path:
    """Writes `out/run.json` and `out/items.jsonl` in the run-log contract of harness.evaluate.run.

    Args:
        out: Run folder (created).
        tasks: The tasks; every TaskSpec lists the same models, "base" first.
        has_effect: adapter -> provenance has_effect (default True for every adapter).
        metric_info: metric -> (higher_is_better, corpus_level), merged over METRIC_INFO.
    """
    info = {**METRIC_INFO, **(metric_info or {})}
    models = list(tasks[0].scores)
    adapters = [m for m in models if m != "base"]
    records, aggregates = [], {"suites": {}, "bench": {}}
    suites_fp, bench_fp, metrics_seen = {}, {}, {}
    for t in tasks:
        ids = t.item_ids or [f"{t.name}-{i:04d}" for i in range(t.n)]
        refs = t.references or [[f"gold {i}"] for i in range(t.n)]
        section = "suites" if t.kind == "suite" else "bench"
        metric_names = list(next(iter(t.scores.values())))
        fp = {"name": t.name, "version": "1", "data_hash": _h("data", t.name), "prompt_hash": _h("prompt", t.name),
              "metrics": metric_names}
        (suites_fp if t.kind == "suite" else bench_fp)[t.name] = fp
        for m in metric_names:
            hib, corpus = info.get(m, (True, False))
            metrics_seen[m] = {"higher_is_better": hib, "corpus_level": corpus}
        for model, per_metric in t.scores.items():
            agg: dict[str, Any] = {}
            for m, vals in per_metric.items():
                ok = [v for v in vals if v is not None]
                agg[m] = sum(ok) / len(ok) if ok else None
            agg["n"] = t.n
            aggregates[section].setdefault(t.name, {})[model] = agg
            for i in range(t.n):
                scores = {m: vals[i] for m, vals in per_metric.items()}
                first = next(iter(scores.values()))
                if t.predictions:
                    pred = t.predictions[model][i]
                else:
                    pred = refs[i][0] if first is not None and first >= 0.5 else f"wrong {i} ({model} {first})"
                ph = t.prompt_hashes[model][i] if t.prompt_hashes and model in t.prompt_hashes else _h("p", t.name, i)
                rec: dict[str, Any] = {"model": model, "kind": t.kind, "task": t.name, "item_id": ids[i],
                                       "prompt_hash": ph, "prediction": pred, "references": refs[i], "scores": scores,
                                       "latency_s": 0.01, "prompt_tokens": 10, "new_tokens": 3, "stopped_by": "stop"}
                if t.kind == "bench":
                    rec["subject"] = t.subjects[i] if t.subjects else t.name
                    rec["correct"] = bool(scores.get("acc") == 1.0)
                    rec["doc_hash"] = _h("doc", t.name, i)
                if t.leak:
                    rec["leak"] = t.leak[i]
                rec.update(t.extra)
                records.append(ItemRecord.model_validate(rec))
    meta = RunMeta.model_validate({
        "created": "2025-01-01T00:00:00+0000",
        "command": ["harness", "compare"],
        "spec": {"base": "tiny", "adapters": adapters, "suites": [t.name for t in tasks if t.kind == "suite"]},
        "models": models,
        "provenance": {
            "base": {"path": "tiny", "sha256": _h("base")},
            "adapters": {a: {"path": a, "sha256": _h("adapter", a),
                             "has_effect": (has_effect or {}).get(a, True)} for a in adapters},
            "suites": suites_fp,
            "benchmarks": bench_fp,
            "seed": 0,
            "batch_size": 16,
        },
        "metrics": metrics_seen,
        "aggregates": {k: v for k, v in aggregates.items() if v},
        "timing": {"load_s": 0.1, "total_s": 1.0, "items_computed": len(records), "items_cached": 0},
    })
    RunFolder(out).write_run(meta, records)
    return out


def squad_task(n: int, em: tuple[list, list], f1: tuple[list, list], name: str = "squad-qa") -> TaskSpec:
    """A suite task with exact_match and f1 for base and 'ft'."""
    return TaskSpec(name=name, scores={"base": {"exact_match": em[0], "f1": f1[0]},
                                       "ft": {"exact_match": em[1], "f1": f1[1]}})


def bench_task(name: str, acc: tuple[list, list], subjects: list[str] | None = None,
               acc_norm: tuple[list, list] | None = None) -> TaskSpec:
    """A benchmark task ('acc', optionally 'acc_norm') for base and 'ft'."""
    base, ft = {"acc": acc[0]}, {"acc": acc[1]}
    if acc_norm:
        base["acc_norm"], ft["acc_norm"] = acc_norm
    preds = {m: [str(int(v)) for v in s["acc"]] for m, s in (("base", base), ("ft", ft))}
    return TaskSpec(name=name, kind="bench", scores={"base": base, "ft": ft}, subjects=subjects, predictions=preds)
