"""Paired statistics for base-vs-adapter comparisons (numpy + scipy.special, no models).

Base and adapter answer the same items, so every comparison here is paired: it works on
per-item deltas `adapter - base`, which removes the item-difficulty variance that an
unpaired comparison of two means would carry.

Tests:
- right/wrong metrics (every value 0 or 1): exact McNemar, i.e. a binomial test on the
  discordant pairs;
- continuous item metrics (F1, ROUGE, judge scores): paired sign-flip permutation test;
- corpus-level metrics (BLEU, chrF): see `harness.analysis.corpus_bootstrap`;
- items in clusters (a suite's `fields.meta.cluster`): see `harness.analysis.clustered`.
Intervals are seeded paired-bootstrap percentile intervals; `wilson_interval` is for a
single accuracy; `holm` corrects families of p-values; `minimum_detectable_effect` tells
how large a change a run of this size can detect.

Distribution functions come from `scipy.special` (binomial CDF `bdtr`, normal quantile
`ndtri`) rather than `scipy.stats`: the gate must start fast, and importing scipy.stats
costs ~0.8 s against ~0.3 s here. The tests check the results against
`scipy.stats.binomtest` and statsmodels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import special

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10000
DEFAULT_POWER = 0.8
# Permutation tests enumerate every sign pattern exactly up to this many changed items.
EXACT_SIGN_FLIP_MAX = 16
# Items whose score did not change can still hide changes: with none seen among n, the
# share of changing items could be up to 3/n at 95% confidence ("rule of three"), and a
# delta in [-1, 1] has variance up to that share. Intervals and detectable effects never
# assume less than 3/n x (share of unchanged items), so a tiny or unchanged subset is never
# certified by a zero-width interval, while a run where most items moved is left to its
# observed variance.
RULE_OF_THREE = 3.0
# Index-resampling chunk, in elements, to bound memory on large runs.
_CHUNK_ELEMENTS = 4_000_000
# Above this many distinct delta values the bootstrap resamples indices instead of counts.
_MAX_DISTINCT_FOR_COUNTS = 64
_TIE_EPS = 1e-9


def normal_quantile(q: float) -> float:
    """Quantile of the standard normal distribution (scipy.special.ndtri)."""
    return float(special.ndtri(q))


def paired_deltas(base: Sequence[float], adapter: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aligns two score vectors item by item and drops items missing in either.

    Args:
        base: Base score per item; None or NaN means unscored.
        adapter: Adapter score for the same items, in the same order.

    Returns:
        (base, adapter, delta) float arrays over the items scored for both models.

    Raises:
        ValueError: If the vectors differ in length.
    """
    b = np.asarray([np.nan if v is None else v for v in base], dtype=float)
    a = np.asarray([np.nan if v is None else v for v in adapter], dtype=float)
    if b.shape != a.shape:
        raise ValueError(f"paired scores differ in length: {b.shape[0]} vs {a.shape[0]}")
    keep = np.isfinite(b) & np.isfinite(a)
    b, a = b[keep], a[keep]
    return b, a, a - b


def is_binary(*arrays: np.ndarray) -> bool:
    """True when every value in every array is exactly 0 or 1 (a right/wrong metric)."""
    return all(np.isin(arr, (0.0, 1.0)).all() for arr in arrays)


def mcnemar_exact(worse: int, better: int, alternative: str = "two-sided") -> float:
    """Exact McNemar test: a binomial test with p = 1/2 on the discordant pairs.

    Args:
        worse: Items right for the base and wrong for the adapter.
        better: Items wrong for the base and right for the adapter.
        alternative: "two-sided"; "worse" (H1: the adapter is worse) or "better".

    Returns:
        The p-value; 1.0 when there are no discordant pairs.
    """
    n = worse + better
    if n == 0:
        return 1.0
    if alternative == "two-sided":
        # Binomial(n, 1/2) is symmetric, so twice the smaller tail is binomtest's p-value.
        return float(min(1.0, 2.0 * special.bdtr(min(worse, better), n, 0.5)))
    if alternative not in ("worse", "better"):
        raise ValueError(f"unknown alternative {alternative!r}")
    k = worse if alternative == "worse" else better
    # P(X >= k) = 1 - P(X <= k - 1); bdtrc is that upper tail.
    return 1.0 if k == 0 else float(special.bdtrc(k - 1, n, 0.5))


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` bootstrap resamples (n items drawn with replacement).

    When the values take few distinct levels (right/wrong deltas take three), the counts of
    each level in a resample are drawn from the multinomial they follow, which is the same
    distribution in O(levels) per resample instead of O(n).

    Args:
        values: Per-item values (deltas), at least one.
        resamples: Number of bootstrap resamples.
        rng: Seeded generator; the same seed gives the same replicates.

    Returns:
        Array of `resamples` means.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        raise ValueError("bootstrap of an empty sample")
    levels, inverse = np.unique(values, return_inverse=True)
    if levels.size <= _MAX_DISTINCT_FOR_COUNTS:
        freq = np.bincount(inverse, minlength=levels.size) / n
        counts = rng.multinomial(n, freq, size=resamples)
        return counts @ levels / n
    out = np.empty(resamples)
    rows = max(1, _CHUNK_ELEMENTS // n)
    for lo in range(0, resamples, rows):
        hi = min(resamples, lo + rows)
        out[lo:hi] = values[rng.integers(0, n, size=(hi - lo, n))].mean(axis=1)
    return out


def bootstrap_indices(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resample counts: row r holds how often each of the n items appears in resample r.

    Corpus-level metrics sum per-item statistics, so `counts @ stats` gives every resample's
    corpus statistics in one matrix product.

    Returns:
        int array of shape (resamples, n), each row summing to n.
    """
    out = np.empty((resamples, n), dtype=np.int32)
    rows = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, resamples, rows):
        hi = min(resamples, lo + rows)
        idx = rng.integers(0, n, size=(hi - lo, n)) + (np.arange(hi - lo) * n)[:, None]
        out[lo:hi] = np.bincount(idx.ravel(), minlength=(hi - lo) * n).reshape(hi - lo, n)
    return out


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap replicates.

    Args:
        replicates: Bootstrap replicates of a statistic.
        confidence: Two-sided coverage, e.g. 0.95.

    Returns:
        (low, high).
    """
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(replicates, [tail, 1.0 - tail])
    return float(lo), float(hi)


def sign_flip_test(deltas: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS,
                   rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Paired permutation test: under H0 each item's delta is as likely negated.

    Only items that changed carry information (a zero delta flips to zero), so the test
    runs on the non-zero deltas: exactly over all 2^k sign patterns when k is small,
    otherwise on `permutations` random patterns with the (count + 1) / (B + 1) estimate,
    which never reports p = 0.

    Args:
        deltas: Per-item deltas (adapter - base).
        permutations: Random sign patterns when k > EXACT_SIGN_FLIP_MAX.
        rng: Seeded generator for the random patterns.

    Returns:
        (two-sided p, p for H1 "sum of deltas is lower", p for H1 "higher").
    """
    d = np.asarray(deltas, dtype=float)
    d = d[d != 0]
    k = d.size
    if k == 0:
        return 1.0, 1.0, 1.0
    observed = d.sum()
    tol = _TIE_EPS * max(1.0, np.abs(d).sum())
    if k <= EXACT_SIGN_FLIP_MAX:
        patterns = ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1) * 2 - 1
        sums = patterns @ d
        total, extra = sums.size, 0
    else:
        rng = rng or np.random.default_rng(0)
        sums = np.empty(permutations)
        rows = max(1, _CHUNK_ELEMENTS // k)
        for lo in range(0, permutations, rows):
            hi = min(permutations, lo + rows)
            signs = rng.integers(0, 2, size=(hi - lo, k), dtype=np.int8) * 2 - 1
            sums[lo:hi] = signs @ d
        total, extra = permutations + 1, 1  # the observed pattern counts as one permutation
    two = (np.count_nonzero(np.abs(sums) >= abs(observed) - tol) + extra) / total
    lower = (np.count_nonzero(sums <= observed + tol) + extra) / total
    higher = (np.count_nonzero(sums >= observed - tol) + extra) / total
    return float(min(1.0, two)), float(min(1.0, lower)), float(min(1.0, higher))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a single proportion (e.g. one model's accuracy).

    Args:
        successes: Items right.
        n: Items scored.
        confidence: Two-sided coverage.

    Returns:
        (low, high) on the 0..1 scale; (0, 1) when n is 0.
    """
    if n <= 0:
        return 0.0, 1.0
    z = normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control, any dependence).

    NaN entries (comparisons without a p-value) are left NaN and do not count toward the
    family size.

    Args:
        pvalues: One p-value per comparison.

    Returns:
        Adjusted p-values, same order; reject where adjusted < alpha.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    steps = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return out


def variance_floor(n: int, changed: int) -> float:
    """Smallest per-item delta variance assumed for n items of which `changed` moved (see RULE_OF_THREE)."""
    if n <= 0:
        return float("inf")
    return RULE_OF_THREE / n * max(0.0, 1.0 - changed / n)


def floored_standard_error(variance: float, n: int, changed: int = 0) -> float:
    """Standard error of a mean of n deltas, never below the rule-of-three floor.

    Args:
        variance: Sample variance of the deltas (or, for a corpus statistic, n x the
            bootstrap variance).
        n: Number of items.
        changed: Items whose score changed.
    """
    if n <= 0:
        return float("inf")
    return float(np.sqrt(max(variance, variance_floor(n, changed)) / n))


def minimum_detectable_effect(standard_error: float, alpha: float = 0.05, power: float = DEFAULT_POWER) -> float:
    """Smallest true change a one-sided test at `alpha` detects with probability `power`.

    For paired deltas the test statistic's standard error is `standard_error`; the change
    detectable with the given power is (z_{1-alpha} + z_{power}) x SE. For McNemar the
    delta variance is the discordance rate minus the squared delta, so the same formula
    applied to the observed deltas is the usual discordance-based approximation.

    Args:
        standard_error: Standard error of the mean delta (see `floored_standard_error`).
        alpha: One-sided significance level.
        power: Desired power.

    Returns:
        The effect, on the metric's scale (0..1).
    """
    return float((normal_quantile(1.0 - alpha) + normal_quantile(power)) * standard_error)


@dataclass(frozen=True)
class PairedStats:
    """One paired comparison on the 0..1 scale: estimate, bootstrap, test, detectable effect.

    Attributes:
        n: Items scored for both models.
        base: Base score on those items (mean, or corpus score).
        adapter: Adapter score on the same items.
        higher_is_better: Direction of the metric.
        replicates: Bootstrap replicates of `adapter - base`.
        standard_error: Floored standard error of the delta.
        p_value: Two-sided p-value of "no difference".
        p_worse: One-sided p-value, H1: the adapter is worse (direction-aware).
        test: "mcnemar-exact", "sign-flip" or "corpus-randomization".
        worse: Items whose score moved in the bad direction.
        better: Items whose score moved in the good direction.
        binary: All scores were 0/1.
        clusters: Clusters resampled and permuted (`harness.analysis.clustered`); None when
            items are treated as independent.
        changed_clusters: Clusters holding at least one item whose score moved.
        design_effect: Variance of the clustered estimate over the variance independence
            would claim; None without clusters or when it cannot be estimated.
    """

    n: int
    base: float
    adapter: float
    higher_is_better: bool
    replicates: np.ndarray = field(repr=False)
    standard_error: float
    p_value: float
    p_worse: float
    test: str
    worse: int
    better: int
    binary: bool
    clusters: int | None = None
    changed_clusters: int = 0
    design_effect: float | None = None

    @property
    def delta(self) -> float:
        """adapter - base."""
        return self.adapter - self.base

    @property
    def gain(self) -> float:
        """The delta with its sign turned so that positive is always an improvement."""
        return self.delta if self.higher_is_better else -self.delta

    def bounds(self, confidence: float = 0.95) -> tuple[float, float]:
        """One-sided bounds of the delta: each holds with probability `confidence`.

        The percentile bootstrap interval at two-sided level 2c - 1, widened to at least
        +/- z x sqrt(variance_floor / n) around the estimate so that a subset where nothing
        (or almost nothing) changed does not get a zero-width interval.

        Args:
            confidence: One-sided confidence of each bound, e.g. 0.95.

        Returns:
            (low, high) of `adapter - base`, within [-1, 1].
        """
        if self.clusters is not None and self.clusters < 2:
            return -1.0, 1.0  # one cluster: resampling it says nothing about another
        lo, hi = percentile_interval(self.replicates, 2.0 * confidence - 1.0)
        # with clusters, the rule of three counts clusters (the independent units), not items
        units, changed = ((self.clusters, self.changed_clusters) if self.clusters is not None
                          else (self.n, self.worse + self.better))
        floor = normal_quantile(confidence) * np.sqrt(variance_floor(units, changed) / max(units, 1))
        # Scores are 0..1, so a delta lies in [-1, 1] whatever the floor says.
        return max(-1.0, min(lo, self.delta - floor)), min(1.0, max(hi, self.delta + floor))

    def gain_bounds(self, confidence: float = 0.95) -> tuple[float, float]:
        """`bounds` for the gain (positive = better), so rules read the same in both directions."""
        lo, hi = self.bounds(confidence)
        return (lo, hi) if self.higher_is_better else (-hi, -lo)

    def mde(self, alpha: float = 0.05, power: float = DEFAULT_POWER) -> float:
        """Minimum detectable effect of this comparison (see `minimum_detectable_effect`)."""
        return minimum_detectable_effect(self.standard_error, alpha, power)


def paired_item_stats(base: Sequence[float], adapter: Sequence[float], *, higher_is_better: bool = True,
                      resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS,
                      seed: int | Sequence[int] = 0) -> PairedStats | None:
    """Paired comparison of an item-level metric (aggregate = mean of item scores).

    Args:
        base: Base score per item (None/NaN = unscored; such items are dropped for both).
        adapter: Adapter score per item, same order.
        higher_is_better: Direction of the metric.
        resamples: Bootstrap resamples.
        permutations: Random sign patterns for the permutation test (continuous metrics).
        seed: Seed (or seed sequence) of the generator; same seed, same numbers.

    Returns:
        The comparison, or None when no item is scored for both models.
    """
    b, a, d = paired_deltas(base, adapter)
    n = d.size
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    replicates = bootstrap_means(d, resamples, rng)
    gain = d if higher_is_better else -d
    worse, better = int(np.count_nonzero(gain < 0)), int(np.count_nonzero(gain > 0))
    binary = is_binary(b, a)
    if binary:
        test = "mcnemar-exact"
        p_value = mcnemar_exact(worse, better)
        p_worse = mcnemar_exact(worse, better, "worse")
    else:
        test = "sign-flip"
        p_value, p_lower, p_higher = sign_flip_test(d, permutations, rng)
        p_worse = p_lower if higher_is_better else p_higher
    variance = float(d.var(ddof=1)) if n > 1 else 0.0
    return PairedStats(n=n, base=float(b.mean()), adapter=float(a.mean()), higher_is_better=higher_is_better,
                       replicates=replicates, standard_error=floored_standard_error(variance, n, worse + better),
                       p_value=p_value, p_worse=p_worse, test=test, worse=worse, better=better, binary=binary)
