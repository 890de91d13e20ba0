"""The comparison view model: every base-vs-adapter delta of a run, with CIs, tests and flips.

`Comparison` is computed once from a run folder and is the single source for everything
that shows a comparison — `summary.md`, `verdict.json`, the gate's rules and the HTML
report — so no two outputs can disagree about a number.

Units: every score field of `DeltaRow`/`Flip` is in points (100 x the 0..1 value);
p-values are plain probabilities.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.analysis.clustered import paired_clustered_stats
from harness.analysis.deltas import POINTS, DeltaRow, Flag, Flip, to_points
from harness.analysis.pairing import PairedRun, TaskData, load_paired_run
from harness.analysis.stats import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    holm,
    paired_item_stats,
    wilson_interval,
)
from harness.log.schema import RunMeta


class Comparison:
    """All paired comparisons of a run folder; build with `Comparison.from_run_dir`.

    Attributes:
        run_dir: The run folder.
        meta: run.json.
        base: Name of the base model ("base").
        adapters: Adapter names, in run order.
        confidence: One-sided confidence of every row's bounds.
        rows: Task-level rows of every adapter, task and metric (all items). `p_holm`
            corrects across each adapter's rows.
        subject_rows: Per-subject rows of tasks with subjects; `p_holm` corrects across
            the subjects of one adapter/task/metric.
        baselines: Baseline arms of `compare --baseline/--baseline-model` (references, not adapters).
        baseline_rows: Task-level rows of every adapter against every baseline arm (`against`
            names the arm; `base` holds its score); `p_holm` corrects within each adapter/arm.
        flips: Items that got worse on each task's primary metric, worst first.
        flags: Facts about the run (adapter without effect, identical outputs, metrics that
            could not be re-scored).
    """

    def __init__(self, paired: PairedRun, *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                 permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0):
        self.paired = paired
        self.run_dir: Path = paired.run_dir
        self.meta: RunMeta = paired.meta
        self.base = paired.base
        self.adapters = list(paired.adapters)
        self.baselines = list(paired.baselines)
        self.confidence = confidence
        self.resamples = resamples
        self.permutations = permutations
        self.seed = seed
        self.flags: list[Flag] = []
        self._cache: dict[tuple, DeltaRow | None] = {}
        self._metric_objects: dict[str, Any] = {}
        self._provenance_flags()
        self.rows = self._task_rows()
        self.subject_rows = self._subject_rows()
        self.flips = self._flips()
        self.baseline_rows = self._baseline_rows()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, **kwargs: Any) -> "Comparison":
        """Loads and aligns a run folder (see `harness.analysis.pairing.load_paired_run`) and compares it.

        Args:
            run_dir: The --out folder of `harness compare`.
            **kwargs: confidence, resamples, permutations, seed.

        Raises:
            RunLogError: Missing or corrupt run log.
            IncomparableError: Base and an adapter saw different items or prompts.
        """
        return cls(load_paired_run(run_dir), **kwargs)

    # ---- lookups -------------------------------------------------------------------------

    def tasks(self) -> list[TaskData]:
        """Every task of the run, suites first."""
        return list(self.paired.tasks.values())

    def task(self, task: str, kind: str | None = None) -> TaskData | None:
        return self.paired.find(task, kind)

    def metric_info(self, metric: str) -> tuple[bool, bool]:
        """(higher_is_better, corpus_level) from run.json; unknown metrics (judges) are item-level, higher better."""
        info = self.meta.metric_info(metric)
        return info.higher_is_better, info.corpus_level

    def row(self, adapter: str, task: str, metric: str, *, kind: str | None = None, subject: str | None = None,
            subset: str = "all", against: str | None = None) -> DeltaRow | None:
        """The comparison of one adapter/task/metric (optionally one subject, or the clean subset).

        Rows outside `rows`/`subject_rows` (the clean subset) are computed on first use.
        `against` names a baseline arm to compare with instead of the base.

        Returns:
            The row, or None when the task/metric does not exist, the arm did not answer the
            task, or no item is scored for both models.
        """
        data = self.task(task, kind)
        ref = against or self.base
        if data is None or metric not in data.metrics or ref not in data.lines:
            return None
        key = (adapter, data.kind, data.task, metric, subject, subset) + ((ref,) if ref != self.base else ())
        if key not in self._cache:
            r = self._compute(adapter, data, metric, subject, subset, ref)
            self._cache[key] = r if r is None or ref == self.base else replace(r, against=ref)
        return self._cache[key]

    def subjects_of(self, adapter: str, task: str, metric: str, *, kind: str | None = None,
                    subset: str = "all", against: str | None = None) -> list[DeltaRow]:
        """One row per subject of a task (empty when the task has no subjects), Holm within."""
        data = self.task(task, kind)
        if data is None or not data.has_subjects:
            return []
        rows = [self.row(adapter, data.task, metric, kind=data.kind, subject=s, subset=subset, against=against)
                for s in data.subject_names()]
        return _with_holm([r for r in rows if r is not None])

    def primary_metric(self, data: TaskData) -> str | None:
        """The metric flips are counted on: a benchmark's acc, a suite's first declared metric."""
        if data.kind == "bench" and "acc" in data.metrics:
            return "acc"
        declared = (self.meta.fingerprint("suite", data.task) or {}).get("metrics") or []
        for m in list(declared) + data.metrics:
            if m in data.metrics:
                return m
        return None

    # ---- computation ---------------------------------------------------------------------

    def _seed(self, *parts: Any) -> list[int]:
        # Each comparison draws from its own stream, so adding a task or a rule never changes
        # another comparison's numbers.
        return [self.seed, zlib.crc32("|".join(map(str, parts)).encode("utf-8"))]

    def _metric(self, name: str) -> Any:
        if name not in self._metric_objects:
            try:
                from harness.evaluate.metrics import get_metric

                self._metric_objects[name] = get_metric(name)
            except Exception as exc:  # a plugin missing here must not stop the gate
                self._metric_objects[name] = None
                self.flags.append(Flag("metric_unavailable", "warning",
                                       f"corpus metric '{name}' could not be loaded ({exc}); its deltas are "
                                       "means of item scores, not corpus scores"))
        return self._metric_objects[name]

    def _compute(self, adapter: str, data: TaskData, metric: str, subject: str | None, subset: str,
                 ref: str | None = None) -> DeltaRow | None:
        mask = data.mask(subject, subset)
        if not mask.any():
            return None
        hib, corpus = self.metric_info(metric)
        ref = ref or self.base  # the base, or a baseline arm
        base = data.scores(ref, metric)[mask]
        score = data.scores(adapter, metric)[mask]
        seed = self._seed(adapter, data.kind, data.task, metric, subject, subset, *([ref] if ref != self.base else []))
        clusters = data.clusters[mask] if data.clusters is not None else None  # resampled as wholes
        stats = None
        metric_obj = self._metric(metric) if corpus else None
        if metric_obj is not None:
            from harness.analysis.corpus_bootstrap import paired_corpus_stats

            keep = np.flatnonzero(mask)
            b_preds, a_preds, refs = data.predictions(ref), data.predictions(adapter), data.references()
            stats = paired_corpus_stats(metric_obj, [b_preds[i] for i in keep], [a_preds[i] for i in keep],
                                        [refs[i] for i in keep], base, score, higher_is_better=hib,
                                        resamples=self.resamples, permutations=self.permutations, seed=seed,
                                        clusters=clusters)
        elif clusters is not None:
            corpus = False
            stats = paired_clustered_stats(base, score, clusters, higher_is_better=hib, resamples=self.resamples,
                                           permutations=self.permutations, seed=seed)
        else:
            corpus = False
            stats = paired_item_stats(base, score, higher_is_better=hib, resamples=self.resamples,
                                      permutations=self.permutations, seed=seed)
        if stats is None:
            return None
        lo, hi = stats.bounds(self.confidence)
        wb = ws = None
        if stats.binary:
            both = np.isfinite(base) & np.isfinite(score)
            wb = tuple(x * POINTS for x in wilson_interval(int(base[both].sum()), int(both.sum())))
            ws = tuple(x * POINTS for x in wilson_interval(int(score[both].sum()), int(both.sum())))
        return DeltaRow(adapter=adapter, kind=data.kind, task=data.task, metric=metric, subject=subject,
                        subset=subset, n=stats.n, base=to_points(stats.base), score=to_points(stats.adapter),
                        delta=to_points(stats.delta), ci_low=lo * POINTS, ci_high=hi * POINTS,
                        confidence=self.confidence, p_value=stats.p_value, p_worse=stats.p_worse, p_holm=None,
                        test=stats.test, mde=stats.mde(1.0 - self.confidence) * POINTS, worse=stats.worse,
                        better=stats.better, higher_is_better=hib, corpus_level=corpus, base_wilson=wb,
                        score_wilson=ws, clusters=stats.clusters, design_effect=stats.design_effect, stats=stats)

    def _task_rows(self) -> list[DeltaRow]:
        out: list[DeltaRow] = []
        for adapter in self.adapters:
            rows = []
            for data in self.tasks():
                for metric in data.metrics:
                    r = self.row(adapter, data.task, metric, kind=data.kind)
                    if r is not None:
                        rows.append(r)
            rows = _with_holm(rows)
            for r in rows:
                self._cache[(r.adapter, r.kind, r.task, r.metric, None, "all")] = r
            out.extend(rows)
        return out

    def _baseline_rows(self) -> list[DeltaRow]:
        out: list[DeltaRow] = []
        for adapter in self.adapters:
            for arm in self.baselines:
                rows = [r for data in self.tasks() for metric in data.metrics
                        if (r := self.row(adapter, data.task, metric, kind=data.kind, against=arm)) is not None]
                rows = _with_holm(rows)
                for r in rows:
                    self._cache[(r.adapter, r.kind, r.task, r.metric, None, "all", arm)] = r
                out.extend(rows)
        return out

    def _subject_rows(self) -> list[DeltaRow]:
        out: list[DeltaRow] = []
        for adapter in self.adapters:
            for data in self.tasks():
                if not data.has_subjects:
                    continue
                for metric in data.metrics:
                    rows = self.subjects_of(adapter, data.task, metric, kind=data.kind)
                    for r in rows:
                        self._cache[(r.adapter, r.kind, r.task, r.metric, r.subject, "all")] = r
                    out.extend(rows)
        return out

    def _flips(self) -> list[Flip]:
        out: list[Flip] = []
        for adapter in self.adapters:
            for data in self.tasks():
                metric = self.primary_metric(data)
                if metric is None:
                    continue
                hib, _ = self.metric_info(metric)
                base, score = data.scores(self.base, metric), data.scores(adapter, metric)
                drop = (base - score) if hib else (score - base)
                worse = np.flatnonzero(np.nan_to_num(drop, nan=0.0) > 0)
                worse = worse[np.argsort(-drop[worse], kind="stable")]
                b_preds, a_preds, refs = data.predictions(self.base), data.predictions(adapter), data.references()
                for i in worse:
                    out.append(Flip(adapter=adapter, kind=data.kind, task=data.task, item_id=data.item_ids[i],
                                    metric=metric, base_score=base[i] * POINTS, adapter_score=score[i] * POINTS,
                                    drop=float(drop[i]) * POINTS, base_prediction=b_preds[i],
                                    adapter_prediction=a_preds[i], references=refs[i],
                                    subject=data.subjects[i] if data.subjects else None))
        return out

    def _provenance_flags(self) -> None:
        for task, (cut, n) in self.meta.aggregates.truncated().items():
            self.flags.append(Flag("truncated_prompts", "warning",
                                   f"{cut} of {n} prompts of '{task}' were cut on the left to fit the model's "
                                   "context (items.jsonl: truncated_tokens)", task=task))
        adapters = self.meta.provenance.adapters
        for name in self.adapters:
            if name in adapters and adapters[name].has_effect is False:
                self.flags.append(Flag("no_effect", "warning",
                                       f"adapter '{name}' has no effect: its logits equal the base's on the probe, "
                                       "so every comparison is base vs base", adapter=name))
                continue
            same = all(data.predictions(self.base) == data.predictions(name) for data in self.tasks())
            if same and self.tasks():
                self.flags.append(Flag("identical_outputs", "warning",
                                       f"adapter '{name}' gave the base's output on every item", adapter=name))

    # ---- export --------------------------------------------------------------------------

    def flips_for(self, adapter: str, task: str | None = None) -> list[Flip]:
        return [f for f in self.flips if f.adapter == adapter and (task is None or f.task == task)]

    def to_dict(self, max_flips: int = 50) -> dict[str, Any]:
        """JSON-ready view: rows, subject rows, flip counts and the first flips per adapter/task."""
        flips: list[dict[str, Any]] = []
        for adapter in self.adapters:
            for data in self.tasks():
                flips.extend(f.to_dict() for f in self.flips_for(adapter, data.task)[:max_flips])
        return {
            "run_dir": str(self.run_dir),
            "base": self.base,
            "adapters": self.adapters,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "permutations": self.permutations,
            "seed": self.seed,
            "rows": [r.to_dict() for r in self.rows],
            **({"baselines": self.baselines, "baseline_rows": [r.to_dict() for r in self.baseline_rows]}
               if self.baselines else {}),
            "subject_rows": [r.to_dict() for r in self.subject_rows],
            "flips": flips,
            "flags": [f.to_dict() for f in self.flags],
        }


def _with_holm(rows: list[DeltaRow]) -> list[DeltaRow]:
    if not rows:
        return rows
    adjusted = holm([r.p_value for r in rows])
    return [replace(r, p_holm=float(p)) for r, p in zip(rows, adjusted)]
