"""Paired statistics when items come in clusters: questions asked about one background
paragraph, turns of one conversation, variants of one prompt.

Items of one cluster are not independent (a model that misreads a paragraph misses every
question about it), so treating them as independent makes error bars too narrow and
p-values too small. When a suite declares a cluster key (`fields.meta.cluster`, recorded
as `cluster` on every items.jsonl line), the comparison follows this rule instead
(docs/statistics.md):

- estimate: the mean of the item deltas, as without clusters;
- standard error: cluster-robust, V = G/(G-1) x sum_g (S_g - m_g x mean)^2 / n^2, where
  cluster g holds m_g of the n items and S_g is the sum of their deltas, G clusters;
- design effect: V / (s^2 / n), s^2 the item-level sample variance of the deltas: how many
  times larger the variance of the mean is than independence would claim. Clusters of one
  item give exactly 1; clusters of m items with intra-cluster correlation ICC give about
  1 + (m - 1) x ICC. Undefined (None) when no delta varies or there is a single cluster;
- bootstrap: G clusters drawn with replacement, replicate = sum S / sum m over the draw;
- test: a sign flip per cluster (base and adapter swapped on every item of a cluster at
  once) on the cluster sums S_g, exact up to EXACT_SIGN_FLIP_MAX changed clusters. It
  replaces McNemar for right/wrong metrics, which assumes independent pairs;
- floor: the rule of three over clusters instead of items (see `stats.RULE_OF_THREE`);
- minimum detectable effect: from the clustered standard error, so it grows with the
  design effect (by sqrt(DE)).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from harness.analysis.stats import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    PairedStats,
    bootstrap_indices,
    floored_standard_error,
    is_binary,
    sign_flip_test,
)

CLUSTER_TEST = "cluster-sign-flip"


def cluster_codes(labels: Sequence[Any]) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 for cluster labels (any hashable values), and G.

    Codes follow first appearance, so the same labels in the same order give the same codes.
    """
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(label, len(index)) for label in labels), dtype=np.int64,
                        count=len(labels))
    return codes, len(index)


def cluster_sums(values: np.ndarray, codes: np.ndarray, clusters: int) -> np.ndarray:
    """Sum of `values` within each cluster (length `clusters`)."""
    return np.bincount(codes, weights=np.asarray(values, dtype=float), minlength=clusters)


def clustered_variance(deltas: np.ndarray, codes: np.ndarray) -> float:
    """Cluster-robust variance of the mean delta (module doc); inf with fewer than 2 clusters."""
    d = np.asarray(deltas, dtype=float)
    codes, g = cluster_codes(codes)
    n = d.size
    if g < 2:
        return float("inf")
    sizes = np.bincount(codes, minlength=g)
    resid = cluster_sums(d, codes, g) - sizes * d.mean()
    return float(g / (g - 1) * np.sum(resid ** 2) / n ** 2)


def design_effect(deltas: np.ndarray, codes: np.ndarray) -> float | None:
    """Clustered variance over the variance independence assumes (module doc), or None."""
    d = np.asarray(deltas, dtype=float)
    n = d.size
    if n < 2 or len(set(codes.tolist())) < 2:
        return None
    independent = float(d.var(ddof=1)) / n
    if independent <= 0.0:
        return None
    return clustered_variance(d, codes) / independent


def cluster_bootstrap_means(deltas: np.ndarray, codes: np.ndarray, resamples: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` cluster-bootstrap resamples: G clusters drawn with replacement."""
    codes, g = cluster_codes(codes)
    counts = bootstrap_indices(g, resamples, rng).astype(float)
    sums = counts @ cluster_sums(deltas, codes, g)
    items = counts @ np.bincount(codes, minlength=g).astype(float)
    return sums / items


def paired_clustered_stats(base: Sequence[float], adapter: Sequence[float], clusters: Sequence[Any], *,
                           higher_is_better: bool = True, resamples: int = DEFAULT_RESAMPLES,
                           permutations: int = DEFAULT_PERMUTATIONS,
                           seed: int | Sequence[int] = 0) -> PairedStats | None:
    """Paired comparison of an item-level metric whose items come in clusters (module doc).

    Args:
        base: Base score per item (None/NaN = unscored; such items are dropped for both).
        adapter: Adapter score per item, same order.
        clusters: Cluster label per item, same order.
        higher_is_better: Direction of the metric.
        resamples: Bootstrap resamples (of clusters).
        permutations: Random cluster sign patterns when more than EXACT_SIGN_FLIP_MAX
            clusters changed.
        seed: Seed (or seed sequence) of the generator; same seed, same numbers.

    Returns:
        The comparison, or None when no item is scored for both models.

    Raises:
        ValueError: If the three sequences differ in length.
    """
    b = np.asarray([np.nan if v is None else v for v in base], dtype=float)
    a = np.asarray([np.nan if v is None else v for v in adapter], dtype=float)
    labels = list(clusters)
    if not (b.shape[0] == a.shape[0] == len(labels)):
        raise ValueError(f"paired scores and clusters differ in length: {b.shape[0]}, {a.shape[0]}, {len(labels)}")
    keep = np.isfinite(b) & np.isfinite(a)
    b, a = b[keep], a[keep]
    d = a - b
    n = d.size
    if n == 0:
        return None
    codes, g = cluster_codes([lab for lab, k in zip(labels, keep) if k])
    rng = np.random.default_rng(seed)
    replicates = cluster_bootstrap_means(d, codes, resamples, rng)
    sums = cluster_sums(d, codes, g)
    p_value, p_lower, p_higher = sign_flip_test(sums, permutations, rng)
    gain = d if higher_is_better else -d
    worse, better = int(np.count_nonzero(gain < 0)), int(np.count_nonzero(gain > 0))
    changed = int(np.count_nonzero(cluster_sums(d != 0, codes, g)))
    # g x the variance of the mean plays the role of the per-unit variance in the floored SE
    se = floored_standard_error(g * clustered_variance(d, codes), g, changed) if g > 1 else float("inf")
    return PairedStats(n=n, base=float(b.mean()), adapter=float(a.mean()), higher_is_better=higher_is_better,
                       replicates=replicates, standard_error=se, p_value=p_value,
                       p_worse=p_lower if higher_is_better else p_higher, test=CLUSTER_TEST, worse=worse,
                       better=better, binary=is_binary(b, a), clusters=g, changed_clusters=changed,
                       design_effect=design_effect(d, codes))
