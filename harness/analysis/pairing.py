"""Read a run log and align base and adapter lines item by item, refusing unequal inputs.

A paired comparison is only meaningful when both models answered the very same items with
the very same prompts. This module checks that for every task (same item ids, no
duplicates, the same `prompt_hash` per item — or `doc_hash` for benchmark lines without
one) and raises `IncomparableError` (exit 2) otherwise. It reads the typed run log through
`RunFolder` (no pandas, no torch) because `harness gate` must start fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.clustered import cluster_codes
from harness.errors import HarnessError
from harness.log.folder import RunFolder
from harness.log.schema import ItemRecord, RunMeta

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
        Leak subsets beyond clean (contaminated, split by what was copied; dated against the
        training cutoff) are masks from the lines' tags: `subset_masks()`.
        clusters: Per item, an integer cluster code from the base lines' `cluster` (a line
            without one is a cluster of its own); None when no line carries a cluster.
    """

    kind: str
    task: str
    item_ids: list[str]
    lines: dict[str, list[ItemRecord]]
    metrics: list[str]
    subjects: list[str] | None = None
    clean: np.ndarray | None = None
    clusters: np.ndarray | None = None
    _score_cache: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _subsets: dict[str, np.ndarray] | None = field(default=None, repr=False)

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
            vals = [line.scores.get(metric) for line in self.lines[model]]
            self._score_cache[key] = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
        return self._score_cache[key]

    def predictions(self, model: str) -> list[str]:
        return [line.prediction for line in self.lines[model]]

    def references(self) -> list[list[str]]:
        """Gold answers per item; benchmark lines carry a `target` instead."""
        return [line.gold() for line in self.lines[next(iter(self.lines))]]

    def mask(self, subject: str | None = None, subset: str = "all") -> np.ndarray:
        """Boolean item mask for one subject and/or a leak subset ("clean", or one of
        harness.analysis.leak_subsets.SUBSETS; a subset without items masks everything)."""
        keep = np.ones(self.n, dtype=bool)
        if subject is not None:
            if self.subjects is None:
                raise KeyError(f"task {self.task} has no subjects")
            if "subjects" not in self._arrays:
                self._arrays["subjects"] = np.asarray(self.subjects, dtype=object)
            keep &= self._arrays["subjects"] == subject
        if subset == LEAK_CLEAN:
            keep &= self.clean if self.clean is not None else np.zeros(self.n, dtype=bool)
        elif subset != "all":
            keep &= self.subset_masks().get(subset, np.zeros(self.n, dtype=bool))
        return keep

    def subset_masks(self) -> dict[str, np.ndarray]:
        """Masks of the leak subsets that hold items, in display order (computed once)."""
        if self._subsets is None:
            from harness.analysis.leak_subsets import subset_masks

            self._subsets = subset_masks(self.lines, self.n)
        return self._subsets

    def subject_names(self) -> list[str]:
        return sorted(set(self.subjects)) if self.subjects is not None else []


@dataclass
class PairedRun:
    """A run log with every task's lines aligned across models."""

    run_dir: Path
    meta: RunMeta
    base: str
    adapters: list[str]
    tasks: dict[tuple[str, str], TaskData]
    baselines: list[str] = field(default_factory=list)  # arms of `compare --baseline`: references, not adapters

    def find(self, task: str, kind: str | None = None) -> TaskData | None:
        """The task named `task` (of `kind`, when given), or None."""
        hits = [t for (k, name), t in self.tasks.items() if name == task and (kind is None or k == kind)]
        return hits[0] if len(hits) == 1 else None


def _short(h: Any) -> str:
    return str(h)[:12] if h is not None else "none"


def _index(lines: list[ItemRecord], where: str) -> dict[str, ItemRecord]:
    out: dict[str, ItemRecord] = {}
    for line in lines:
        iid = str(line.item_id)
        if iid in out:
            raise IncomparableError(f"{where}: item '{iid}' appears twice",
                                    "the run log is corrupt; re-run the evaluation into a fresh --out folder")
        out[iid] = line
    return out


def _align(kind: str, task: str, per_model: dict[str, list[ItemRecord]], base: str, adapters: list[str],
           run_dir: Path, baselines: list[str] = ()) -> TaskData:
    where = f"{run_dir}: {kind} '{task}'"
    if base not in per_model:
        raise IncomparableError(f"{where} has no lines for the base model",
                                "re-run base and adapters together with `harness compare`")
    base_lines = per_model[base]
    base_index = _index(base_lines, f"{where} ({base})")
    order = [str(line.item_id) for line in base_lines]
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
        differ = [(i, b, a) for i, b, a in zip(order, base_lines, lines) if b.identity != a.identity]
        if differ:
            iid, b, a = differ[0]
            raise IncomparableError(
                f"{where}: {len(differ)} of {len(order)} items were prompted differently for base and '{name}' "
                f"(e.g. item '{iid}': {_short(b.identity)} vs {_short(a.identity)})",
                "evaluate both with the same suite/benchmark version and prompt, in one `harness compare`")
        aligned[name] = lines
    for name in baselines:  # asked with other prompts (or by another model) on purpose: same items only
        if name in per_model:
            aligned[name] = _align_baseline(where, name, per_model[name], order)
    metrics: list[str] = []
    seen: set[str] = set()
    for lines in aligned.values():
        for line in lines:
            for m in line.scores:
                if m not in seen:
                    seen.add(m)
                    metrics.append(m)
    subjects = [str(line.subject or task) for line in base_lines]
    has_subjects = len(set(subjects)) > 1
    labelled = any(line.leak is not None for lines in aligned.values() for line in lines)
    clean = None
    if labelled:
        clean = np.array([all(aligned[m][i].leak == LEAK_CLEAN for m in aligned) for i in range(len(order))])
    return TaskData(kind=kind, task=task, item_ids=order, lines=aligned, metrics=metrics,
                    subjects=subjects if has_subjects else None, clean=clean, clusters=_cluster_codes(base_lines))


def _cluster_codes(lines: list[ItemRecord]) -> np.ndarray | None:
    """Cluster code per line (0..G-1); a line without `cluster` is a cluster of its own."""
    if all(line.cluster is None for line in lines):
        return None
    # a tuple never equals a recorded (string) cluster id
    return cluster_codes([("item", i) if line.cluster is None else line.cluster for i, line in enumerate(lines)])[0]


def _align_baseline(where: str, name: str, lines: list[ItemRecord], order: list[str]) -> list[ItemRecord]:
    """A baseline arm's lines in the base's order; its prompts differ from the base's by design
    (a few-shot prefix, another model's template), so only the items must agree."""
    idx = _index(lines, f"{where} ({name})")
    missing = [i for i in order if i not in idx]
    known = set(order)
    extra = [i for i in idx if i not in known]
    if missing or extra:
        eg = f"'{missing[0]}' only in base" if missing else f"'{extra[0]}' only in '{name}'"
        raise IncomparableError(f"{where}: base and baseline '{name}' answered different items "
                                f"({len(missing)} only in base, {len(extra)} only in '{name}', e.g. {eg})",
                                "evaluate the baseline in the same `harness compare` as the base")
    return [idx[i] for i in order]


def load_paired_run(run_dir: str | Path | RunFolder) -> PairedRun:
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
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    run_dir = folder.path
    meta = folder.read_meta()
    records = folder.read_items()
    models = list(meta.models or dict.fromkeys(r.model for r in records))
    if BASE not in models:
        raise IncomparableError(f"{run_dir} holds only {', '.join(map(str, models)) or 'no models'}: "
                                "there is no base model to compare against",
                                "evaluate with `harness compare BASE ADAPTER ...`")
    baselines = [m for m in models if m in meta.provenance.baselines]
    adapters = [m for m in models if m != BASE and m not in baselines]
    if not adapters:
        raise IncomparableError(f"{run_dir} holds only the base model: there is nothing to gate",
                                "evaluate with `harness compare BASE ADAPTER ...`")
    grouped: dict[tuple[str, str], dict[str, list[ItemRecord]]] = {}
    for rec in records:
        grouped.setdefault((rec.kind, rec.task), {}).setdefault(rec.model, []).append(rec)
    kind_order = {"suite": 0, "bench": 1}
    keys = sorted(grouped, key=lambda k: kind_order.get(k[0], 2))  # stable: first appearance within a kind
    tasks = {k: _align(k[0], k[1], grouped[k], BASE, adapters, run_dir, baselines) for k in keys}
    return PairedRun(run_dir=run_dir, meta=meta, base=BASE, adapters=adapters, tasks=tasks, baselines=baselines)
