"""The rows of a comparison: `DeltaRow` (one adapter/task/metric, optionally one subject or
the clean subset), `Flip` (an item that got worse) and `Flag` (a fact the reader must know).

Units: every score field is in points (100 x the 0..1 value); p-values are plain probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.stats import PairedStats

POINTS = 100.0


def to_points(x: float | None) -> float | None:
    """A 0..1 value in points (None stays None)."""
    return None if x is None else float(x) * POINTS


def _num(x: Any) -> Any:
    """JSON-safe number: NaN/inf become None, numpy scalars become Python floats."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


@dataclass(frozen=True)
class Flag:
    """Something the reader must know besides the numbers.

    Attributes:
        code: Stable identifier, e.g. "no_effect", "too_few_items", "noise_floor".
        severity: "error" (blocks the gate), "warning" or "info".
        message: One sentence with the numbers.
        adapter: The adapter concerned, if any.
        task: The task concerned, if any.
    """

    code: str
    severity: str
    message: str
    adapter: str | None = None
    task: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class DeltaRow:
    """One paired comparison (adapter vs base, or vs a baseline arm: `against`) of one metric on
    one task, subject or subset. Against an arm, `base` and its intervals are the arm's.

    Attributes:
        adapter: Adapter name.
        kind: "suite" or "bench".
        task: Task name.
        metric: Metric name.
        subject: Subject (MMLU) or None for the whole task.
        subset: "all", or "clean" for items labelled leak-free.
        n: Items scored for both models.
        base: Base score, points.
        score: Adapter score, points.
        delta: score - base, points.
        ci_low: Lower one-sided bound of delta at `confidence`, points.
        ci_high: Upper one-sided bound of delta at `confidence`, points.
        confidence: One-sided confidence of each bound (two-sided coverage 2c - 1).
        p_value: Two-sided p-value of "no difference".
        p_worse: One-sided p-value, H1: the adapter is worse.
        p_holm: Holm-adjusted `p_value` within its family (an adapter's task rows, or one
            task/metric's subject rows); None when the row is outside any family.
        test: "mcnemar-exact", "sign-flip", "corpus-randomization".
        mde: Minimum detectable effect (one-sided alpha = 1 - confidence, power 0.8), points.
        worse: Items whose score moved in the bad direction.
        better: Items whose score moved in the good direction.
        higher_is_better: Direction of the metric.
        corpus_level: The score is a corpus statistic (BLEU, chrF).
        base_wilson: 95% Wilson interval of the base score (right/wrong metrics), points.
        score_wilson: 95% Wilson interval of the adapter score, points.
        clusters: Clusters the bootstrap and test resampled (the suite declares a cluster
            key); None when items were treated as independent.
        design_effect: Variance of the clustered estimate over the variance independence
            would claim (`harness.analysis.clustered`); None without clusters or when no
            delta varies.
        stats: The underlying `harness.analysis.stats.PairedStats` (0..1 scale, bootstrap replicates).
    """

    adapter: str
    kind: str
    task: str
    metric: str
    subject: str | None
    subset: str
    n: int
    base: float
    score: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    p_worse: float
    p_holm: float | None
    test: str
    mde: float
    worse: int
    better: int
    higher_is_better: bool
    corpus_level: bool
    base_wilson: tuple[float, float] | None = None
    score_wilson: tuple[float, float] | None = None
    clusters: int | None = None
    design_effect: float | None = None
    stats: PairedStats | None = field(default=None, repr=False, compare=False)
    against: str = "base"  # the reference model: the base, or a baseline arm (`compare --baseline`)

    @property
    def gain(self) -> float:
        """delta with its sign turned so that positive is an improvement, points."""
        return self.delta if self.higher_is_better else -self.delta

    @property
    def label(self) -> str:
        parts = [self.task] + ([self.subject] if self.subject else []) + ([self.subset] if self.subset != "all" else [])
        return "/".join(parts)

    def gain_bounds(self, confidence: float | None = None) -> tuple[float, float]:
        """One-sided bounds of the gain at `confidence` (default: the row's), points."""
        lo, hi = self.stats.gain_bounds(confidence or self.confidence)
        return lo * POINTS, hi * POINTS

    def mde_at(self, alpha: float) -> float:
        """Minimum detectable effect at another one-sided alpha, points."""
        return self.stats.mde(alpha) * POINTS

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("adapter", "kind", "task", "metric", "subject", "subset", "n", "test",
                                             "worse", "better", "higher_is_better", "corpus_level", "confidence",
                                             "clusters")}
        for k in ("base", "score", "delta", "ci_low", "ci_high", "mde", "p_value", "p_worse", "p_holm", "design_effect"):
            out[k] = _num(getattr(self, k))
        for k in ("base_wilson", "score_wilson"):
            v = getattr(self, k)
            out[k] = [_num(v[0]), _num(v[1])] if v else None
        if self.against != "base":  # `base` is then the arm's score
            out["against"] = self.against
        return out


@dataclass(frozen=True)
class Flip:
    """An item whose score moved between base and adapter (right -> wrong when binary).

    Scores are points; `drop` is how much the adapter lost on the item (positive = worse).
    """

    adapter: str
    kind: str
    task: str
    item_id: str
    metric: str
    base_score: float
    adapter_score: float
    drop: float
    base_prediction: str
    adapter_prediction: str
    references: list[str]
    subject: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
