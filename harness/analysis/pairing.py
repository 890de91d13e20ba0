"""Read a run log and align base and adapter lines item by item, refusing unequal inputs.

A paired comparison is only meaningful when both models answered the very same items with
the very same prompts. This module checks that for every task (same item ids, no
duplicates, the same `prompt_hash` per item — or `doc_hash` for benchmark lines without
one) and raises `IncomparableError` (exit 2) otherwise. It reads raw JSON (no pandas, no
torch) because `harness gate` must start fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.log.runlog import read_items, read_meta

BASE = "base"
LEAK_CLEAN = "clean"


class IncomparableError(HarnessError):
    """Base and adapter were evaluated on different items or prompts: no paired comparison."""


@dataclass
class TaskData:
    """One task's lines for every model, aligned on the base's item order.

    Attributes:
        kind: "suite" or "bench".
        task: Suite or benchmark name.
        item_ids: Item ids in the base's order.
        lines: model -> its items.jsonl lines, aligned with `item_ids`.
        metrics: Metric names found in `scores`, in order of first appearance.
        subjects: Subject per item (MMLU subjects); None for tasks without subjects.
        clean: Per item, True when every model's line says `leak: clean`; None when no line
            of the task carries a leak label.
    """

    kind: str
    task: str
    item_ids: list[str]
    lines: dict[str, list[dict[str, Any]]]
    metrics: list[str]
    subjects: list[str] | None = None
    clean: np.ndarray | None = None
    _score_cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.item_ids)

    @property
    def has_subjects(self) -> bool:
        return self.subjects is not None

    def scores(self, model: str, metric: str) -> np.ndarray:
        """Per-item scores of `model` for `metric` (NaN where unscored, e.g. a null judge score)."""
        key = (model, metric)
        if key not in self._score_cache:
            vals = [line.get("scores", {}).get(metric) for line in self.lines[model]]
            self._score_cache[key] = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
        return self._score_cache[key]

    def predictions(self, model: str) -> list[str]:
        return [str(line.get("prediction", "")) for line in self.lines[model]]

    def references(self) -> list[list[str]]:
        """Gold answers per item; benchmark lines carry a `target` instead."""
        out = []
        for line in self.lines[next(iter(self.lines))]:
            refs = line.get("references")
            if not refs and line.get("target") is not None:
                refs = [str(line["target"])]
            out.append([str(r) for r in refs or []])
        return out

    def mask(self, subject: str | None = None, subset: str = "all") -> np.ndarray:
        """Boolean item mask for one subject and/or the clean (leak-free) subset."""
        keep = np.ones(self.n, dtype=bool)
        if subject is not None:
            if self.subjects is None:
                raise KeyError(f"task {self.task} has no subjects")
            if "subjects" not in self._arrays:
                self._arrays["subjects"] = np.asarray(self.subjects, dtype=object)
            keep &= self._arrays["subjects"] == subject
        if subset == LEAK_CLEAN:
            keep &= self.clean if self.clean is not None else np.zeros(self.n, dtype=bool)
        return keep

    def subject_names(self) -> list[str]:
        return sorted(set(self.subjects)) if self.subjects is not None else []


@dataclass
class PairedRun:
    """A run log with every task's lines aligned across models."""

    run_dir: Path
    meta: dict[str, Any]
    base: str
    adapters: list[str]
    tasks: dict[tuple[str, str], TaskData]

    def find(self, task: str, kind: str | None = None) -> TaskData | None:
        """The task named `task` (of `kind`, when given), or None."""
        hits = [t for (k, name), t in self.tasks.items() if name == task and (kind is None or k == kind)]
        return hits[0] if len(hits) == 1 else None


def _identity(line: dict[str, Any]) -> Any:
    """What must agree between models for an item: the exact prompt (or the benchmark doc)."""
    return line.get("prompt_hash") if line.get("prompt_hash") is not None else line.get("doc_hash")


def _short(h: Any) -> str:
    return str(h)[:12] if h is not None else "none"


def _index(lines: list[dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in lines:
        iid = str(line.get("item_id"))
        if iid in out:
            raise IncomparableError(f"{where}: item '{iid}' appears twice",
                                    "the run log is corrupt; re-run the evaluation into a fresh --out folder")
        out[iid] = line
    return out


def _align(kind: str, task: str, per_model: dict[str, list[dict]], base: str, adapters: list[str],
           run_dir: Path) -> TaskData:
    where = f"{run_dir}: {kind} '{task}'"
    if base not in per_model:
        raise IncomparableError(f"{where} has no lines for the base model",
                                "re-run base and adapters together with `harness compare`")
    base_lines = per_model[base]
    base_index = _index(base_lines, f"{where} ({base})")
    order = [str(line.get("item_id")) for line in base_lines]
    aligned = {base: base_lines}
    for name in adapters:
        if name not in per_model:
            raise IncomparableError(f"{where} was evaluated for the base but not for adapter '{name}'",
                                    "re-run base and adapters together with `harness compare`")
        idx = _index(per_model[name], f"{where} ({name})")
        only_base = [i for i in order if i not in idx]
        only_adapter = [i for i in idx if i not in base_index]
        if only_base or only_adapter:
            parts = []
            if only_base:
                parts.append(f"{len(only_base)} only in base (e.g. '{only_base[0]}')")
            if only_adapter:
                parts.append(f"{len(only_adapter)} only in '{name}' (e.g. '{only_adapter[0]}')")
            raise IncomparableError(f"{where}: base and '{name}' were evaluated on different items: "
                                    + ", ".join(parts),
                                    "evaluate both on the same items (same suite version, --limit and data)")
        lines = [idx[i] for i in order]
        differ = [(i, b, a) for i, b, a in zip(order, base_lines, lines) if _identity(b) != _identity(a)]
        if differ:
            iid, b, a = differ[0]
            raise IncomparableError(
                f"{where}: {len(differ)} of {len(order)} items were prompted differently for base and '{name}' "
                f"(e.g. item '{iid}': {_short(_identity(b))} vs {_short(_identity(a))})",
                "evaluate both with the same suite/benchmark version and prompt, in one `harness compare`")
        aligned[name] = lines
    metrics: list[str] = []
    seen: set[str] = set()
    for lines in aligned.values():
        for line in lines:
            for m in line.get("scores", {}):
                if m not in seen:
                    seen.add(m)
                    metrics.append(m)
    subjects = [str(line.get("subject") or task) for line in base_lines]
    has_subjects = len(set(subjects)) > 1
    labelled = any("leak" in line for lines in aligned.values() for line in lines)
    clean = None
    if labelled:
        clean = np.array([all(aligned[m][i].get("leak") == LEAK_CLEAN for m in aligned) for i in range(len(order))])
    return TaskData(kind=kind, task=task, item_ids=order, lines=aligned, metrics=metrics,
                    subjects=subjects if has_subjects else None, clean=clean)


def load_paired_run(run_dir: str | Path) -> PairedRun:
    """Reads run.json and items.jsonl and aligns every task's items across models.

    Args:
        run_dir: The --out folder of `harness compare`.

    Returns:
        The aligned run.

    Raises:
        RunLogError: Missing or corrupt run log.
        IncomparableError: No base or no adapter, or base and an adapter differ in items or
            prompts for some task.
    """
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    records = read_items(run_dir)
    models = list(meta.get("models") or dict.fromkeys(r.get("model") for r in records))
    if BASE not in models:
        raise IncomparableError(f"{run_dir} holds only {', '.join(map(str, models)) or 'no models'}: "
                                "there is no base model to compare against",
                                "evaluate with `harness compare BASE ADAPTER ...`")
    adapters = [m for m in models if m != BASE]
    if not adapters:
        raise IncomparableError(f"{run_dir} holds only the base model: there is nothing to gate",
                                "evaluate with `harness compare BASE ADAPTER ...`")
    grouped: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for rec in records:
        key = (str(rec.get("kind", "suite")), str(rec.get("task")))
        grouped.setdefault(key, {}).setdefault(str(rec.get("model")), []).append(rec)
    kind_order = {"suite": 0, "bench": 1}
    keys = sorted(grouped, key=lambda k: kind_order.get(k[0], 2))  # stable: first appearance within a kind
    tasks = {k: _align(k[0], k[1], grouped[k], BASE, adapters, run_dir) for k in keys}
    return PairedRun(run_dir=run_dir, meta=meta, base=BASE, adapters=adapters, tasks=tasks)
