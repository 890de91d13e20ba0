"""Paired statistics for corpus-level metrics (BLEU, chrF): resample items, re-score the corpus.

A corpus BLEU is not the mean of sentence BLEUs, so its uncertainty cannot come from item
deltas: each bootstrap resample draws items with replacement and recomputes the corpus
score of base and adapter on the same draw. The p-value comes from paired approximate
randomization: each item's base and adapter outputs are swapped with probability 1/2.

Fast path: a metric whose corpus score is a function of summed per-item statistics
(sacrebleu's n-gram counts) has those statistics extracted once; a resample is then a
matrix product `counts @ stats` and one call of the scorer on the sums. A metric that
exposes `corpus_statistics(predictions, references) -> array (n, k)` and
`score_from_statistics(sums) -> float` uses that hook (harness's BLEU and chrF do, from
sacrebleu's n-gram counts). Any other corpus metric falls back to calling
`Metric.aggregate` on every resample.

Resample counts: the fast path uses the caller's bootstrap resamples (default 2,000) but at
most CORPUS_RANDOMIZATIONS randomizations, because each one calls the scorer twice in
Python (~20 us each); 1,000 resolve p-values down to 0.001, enough for alpha = 0.05 after
Holm over a few dozen comparisons. On 200 data2text items one metric takes ~0.3-0.5 s.
The generic fallback uses only GENERIC_RESAMPLES and GENERIC_RANDOMIZATIONS because each
call re-scores the whole corpus from text (sacrebleu's BLEU through `aggregate` takes ~65 ms
for 200 items, so 300 calls already take ~20 s); its tails and p-values are coarse (p >= 1/101),
and the comparison's `test` says "corpus-randomization (generic)" so reports show it. A
plugin metric that implements the statistics hook gets the fast path.

Items in clusters (`clusters=`): both paths draw and swap whole clusters instead of items,
as `harness.analysis.clustered` does for item-level metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from harness.analysis.clustered import cluster_codes
from harness.analysis.stats import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    PairedStats,
    bootstrap_indices,
    floored_standard_error,
)

CORPUS_RANDOMIZATIONS = 1000
GENERIC_RESAMPLES = 200
GENERIC_RANDOMIZATIONS = 100


@dataclass
class CorpusStatistics:
    """Per-item sufficient statistics and the function from their column sums to a 0..1 score."""

    stats: np.ndarray
    score: Callable[[np.ndarray], float]


def sufficient_statistics(metric: Any, predictions: Sequence[str],
                          references: Sequence[Sequence[str]]) -> CorpusStatistics | None:
    """Per-item statistics whose sums determine the corpus score, when the metric has them.

    Args:
        metric: A `harness.evaluate.metrics.Metric`.
        predictions: One output per item.
        references: One list of references per item.

    Returns:
        The statistics, or None when the metric offers no such decomposition.
    """
    hook = getattr(metric, "corpus_statistics", None)
    if not (callable(hook) and callable(getattr(metric, "score_from_statistics", None))):
        return None
    stats = np.asarray(hook(list(predictions), [list(r) for r in references]), dtype=float)
    return CorpusStatistics(stats, lambda sums: float(metric.score_from_statistics(sums)))


def _p_values(observed: float, null: np.ndarray, higher_is_better: bool) -> tuple[float, float]:
    total = null.size + 1
    tol = 1e-12
    two = (np.count_nonzero(np.abs(null) >= abs(observed) - tol) + 1) / total
    lower = (np.count_nonzero(null <= observed + tol) + 1) / total
    higher = (np.count_nonzero(null >= observed - tol) + 1) / total
    return float(min(1.0, two)), float(min(1.0, lower if higher_is_better else higher))


def _fast(base: CorpusStatistics, adapter: CorpusStatistics, resamples: int, randomizations: int,
          rng: np.random.Generator, codes: np.ndarray, clusters: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    # `codes` maps items to resampling units; without clusters every item is its own unit,
    # which draws exactly what an item-level bootstrap draws.
    sa, sb = base.stats, adapter.stats
    tot_a, tot_b = sa.sum(axis=0), sb.sum(axis=0)
    score_a, score_b = base.score(tot_a), adapter.score(tot_b)
    counts = bootstrap_indices(clusters, resamples, rng)[:, codes].astype(float)
    replicates = _corpus_replicates(base, adapter, counts)
    swap = rng.integers(0, 2, size=(randomizations, clusters))[:, codes].astype(float)
    moved = swap @ (sb - sa)  # what swapping the chosen items moves from adapter to base
    null = np.array([adapter.score(tot_b - m) - base.score(tot_a + m) for m in moved])
    return score_a, score_b, replicates, null


def _corpus_replicates(base: CorpusStatistics, adapter: CorpusStatistics, counts: np.ndarray) -> np.ndarray:
    sums_a, sums_b = counts @ base.stats, counts @ adapter.stats
    return np.array([adapter.score(y) - base.score(x) for x, y in zip(sums_a, sums_b)])


def _generic(metric: Any, base_preds: list[str], adapter_preds: list[str], refs: list[list[str]],
             base_scores: np.ndarray, adapter_scores: np.ndarray, resamples: int, randomizations: int,
             rng: np.random.Generator, codes: np.ndarray, clusters: int) -> tuple[float, float, np.ndarray, np.ndarray]:
    n = len(refs)
    members = [np.flatnonzero(codes == c) for c in range(clusters)]

    def agg(preds: list[str], scores: np.ndarray, idx: np.ndarray) -> float:
        return float(metric.aggregate([preds[i] for i in idx], [refs[i] for i in idx], [float(scores[i]) for i in idx]))

    everything = np.arange(n)
    score_a, score_b = agg(base_preds, base_scores, everything), agg(adapter_preds, adapter_scores, everything)
    replicates = np.empty(resamples)
    for r in range(resamples):
        idx = np.concatenate([members[c] for c in rng.integers(0, clusters, size=clusters)])
        replicates[r] = agg(adapter_preds, adapter_scores, idx) - agg(base_preds, base_scores, idx)
    null = np.empty(randomizations)
    for r in range(randomizations):
        swap = rng.integers(0, 2, size=clusters)[codes].astype(bool)
        a_preds = [adapter_preds[i] if s else base_preds[i] for i, s in enumerate(swap)]
        b_preds = [base_preds[i] if s else adapter_preds[i] for i, s in enumerate(swap)]
        a_sc = np.where(swap, adapter_scores, base_scores)
        b_sc = np.where(swap, base_scores, adapter_scores)
        null[r] = agg(b_preds, b_sc, everything) - agg(a_preds, a_sc, everything)
    return score_a, score_b, replicates, null


def paired_corpus_stats(metric: Any, base_preds: Sequence[str], adapter_preds: Sequence[str],
                        references: Sequence[Sequence[str]], base_scores: Sequence[float],
                        adapter_scores: Sequence[float], *, higher_is_better: bool = True,
                        resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS,
                        seed: int | Sequence[int] = 0, clusters: Sequence[Any] | None = None) -> PairedStats | None:
    """Paired comparison of a corpus-level metric, resampling at corpus level.

    Args:
        metric: The `harness.evaluate.metrics.Metric` (its `aggregate` defines the corpus score).
        base_preds: Base output per item.
        adapter_preds: Adapter output for the same items.
        references: References per item.
        base_scores: Base item scores (sentence-level; they count items that got worse or
            better, and the generic path passes them to `aggregate`).
        adapter_scores: Adapter item scores.
        higher_is_better: Direction of the metric.
        resamples: Bootstrap resamples (fast path; the generic path uses at most
            GENERIC_RESAMPLES).
        permutations: Upper bound on randomizations (see the module docstring).
        seed: Generator seed.
        clusters: Cluster label per item, or None for independent items. With clusters the
            bootstrap draws and the randomization swaps whole clusters, and the design effect
            is the ratio of the cluster- to the item-bootstrap variance (fast path only: the
            generic path would need a second round of full re-scoring, so it reports None).

    Returns:
        The comparison, or None for an empty corpus.
    """
    n = len(references)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    bs = np.asarray([np.nan if v is None else v for v in base_scores], dtype=float)
    ad = np.asarray([np.nan if v is None else v for v in adapter_scores], dtype=float)
    if clusters is None:
        codes, units = np.arange(n), n
    else:
        if len(clusters) != n:
            raise ValueError(f"{len(clusters)} cluster labels for {n} items")
        codes, units = cluster_codes(list(clusters))
    base_stats = sufficient_statistics(metric, base_preds, references)
    adapter_stats = sufficient_statistics(metric, adapter_preds, references) if base_stats else None
    design = None
    if base_stats is not None and adapter_stats is not None:
        test = "corpus-randomization"
        score_a, score_b, replicates, null = _fast(base_stats, adapter_stats, resamples,
                                                   min(permutations, CORPUS_RANDOMIZATIONS), rng, codes, units)
        if clusters is not None and replicates.size > 1:
            # drawn after everything else, so the clustered numbers above do not depend on it
            independent = _corpus_replicates(base_stats, adapter_stats,
                                             bootstrap_indices(n, resamples, rng).astype(float)).var(ddof=1)
            design = float(replicates.var(ddof=1) / independent) if independent > 0 and units > 1 else None
    else:
        test = "corpus-randomization (generic)"
        score_a, score_b, replicates, null = _generic(metric, list(base_preds), list(adapter_preds),
                                                      [list(r) for r in references], bs, ad,
                                                      min(resamples, GENERIC_RESAMPLES),
                                                      min(permutations, GENERIC_RANDOMIZATIONS), rng, codes, units)
    if clusters is not None:
        test = "cluster-" + test
    p_value, p_worse = _p_values(score_b - score_a, null, higher_is_better)
    item_gain = (ad - bs) if higher_is_better else (bs - ad)
    moved = np.isfinite(item_gain) & (item_gain != 0)
    item_gain = item_gain[np.isfinite(item_gain)]
    # units x bootstrap variance of the corpus delta plays the role of the per-unit variance.
    variance = units * float(replicates.var(ddof=1)) if replicates.size > 1 else 0.0
    worse, better = int(np.count_nonzero(item_gain < 0)), int(np.count_nonzero(item_gain > 0))
    changed = worse + better if clusters is None else int(np.unique(codes[moved]).size)
    se = floored_standard_error(variance, units, changed) if units > 1 or clusters is None else float("inf")
    return PairedStats(n=n, base=score_a, adapter=score_b, higher_is_better=higher_is_better,
                       replicates=replicates, standard_error=se, p_value=p_value, p_worse=p_worse, test=test,
                       worse=worse, better=better, binary=False, clusters=None if clusters is None else units,
                       changed_clusters=changed if clusters is not None else 0, design_effect=design)
