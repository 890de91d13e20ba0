"""Paired statistics against scipy/statsmodels reference values (no models, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint

from harness.analysis.corpus_bootstrap import paired_corpus_stats, sufficient_statistics
from harness.analysis.stats import (
    bootstrap_indices,
    bootstrap_means,
    holm,
    mcnemar_exact,
    minimum_detectable_effect,
    paired_deltas,
    paired_item_stats,
    sign_flip_test,
    wilson_interval,
)


@pytest.mark.parametrize("worse, better", [(0, 0), (0, 5), (3, 9), (12, 4), (25, 25), (40, 61), (1, 300)])
def test_mcnemar_matches_statsmodels_and_binomtest(worse, better):
    # rows: base right/wrong; columns: adapter right/wrong
    table = [[50, worse], [better, 40]]
    ref = mcnemar(table, exact=True).pvalue
    assert mcnemar_exact(worse, better) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    n = worse + better
    if n:
        assert mcnemar_exact(worse, better) == pytest.approx(sps.binomtest(worse, n, 0.5).pvalue, rel=1e-9)
        greater = sps.binomtest(worse, n, 0.5, alternative="greater").pvalue
        assert mcnemar_exact(worse, better, "worse") == pytest.approx(greater, rel=1e-9)
        assert mcnemar_exact(worse, better, "better") == pytest.approx(
            sps.binomtest(better, n, 0.5, alternative="greater").pvalue, rel=1e-9)


@pytest.mark.parametrize("k, n, conf", [(0, 10, 0.95), (3, 10, 0.95), (10, 10, 0.9), (57, 200, 0.95),
                                        (4321, 14042, 0.99), (1, 1, 0.95)])
def test_wilson_matches_statsmodels(k, n, conf):
    lo, hi = proportion_confint(k, n, alpha=1 - conf, method="wilson")
    assert wilson_interval(k, n, conf) == pytest.approx((lo, hi), abs=1e-12)


def test_holm_matches_multipletests():
    rng = np.random.default_rng(3)
    for m in (1, 2, 7, 57):
        p = np.concatenate([rng.uniform(0, 0.02, m // 3), rng.uniform(0, 1, m - m // 3)])
        ref = multipletests(p, method="holm")[1]
        assert holm(p) == pytest.approx(ref, abs=1e-12)
    p = np.array([0.01, np.nan, 0.04, 0.03])
    out = holm(p)
    assert np.isnan(out[1])
    assert out[[0, 2, 3]] == pytest.approx(multipletests(p[[0, 2, 3]], method="holm")[1])


def test_bootstrap_is_reproducible_and_seed_dependent():
    d = np.random.default_rng(0).normal(0.02, 0.2, 500)
    a = bootstrap_means(d, 2000, np.random.default_rng(7))
    b = bootstrap_means(d, 2000, np.random.default_rng(7))
    c = bootstrap_means(d, 2000, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (2000,)
    s1 = paired_item_stats(np.zeros(300), np.random.default_rng(1).uniform(0, 1, 300), seed=5)
    s2 = paired_item_stats(np.zeros(300), np.random.default_rng(1).uniform(0, 1, 300), seed=5)
    assert s1.bounds() == s2.bounds() and s1.p_value == s2.p_value


def test_bootstrap_interval_covers_the_true_mean():
    """A 90% paired-bootstrap interval covers the true mean delta in about 90% of datasets."""
    rng = np.random.default_rng(11)
    true_shift, hits, trials = 0.03, 0, 200
    for t in range(trials):
        base = rng.uniform(0, 1, 150)
        adapter = base + true_shift + rng.normal(0, 0.15, 150)  # unclipped: the true mean delta is exact
        s = paired_item_stats(base, adapter, seed=t, permutations=1000)
        lo, hi = s.bounds(0.95)  # one-sided 95% each side = 90% two-sided
        hits += lo <= true_shift <= hi
    assert 0.83 <= hits / trials <= 0.97, hits / trials


def test_count_bootstrap_matches_index_bootstrap_in_distribution():
    """Few distinct deltas use multinomial counts; same distribution as resampling indices."""
    base, adapter = np.zeros(2000), np.zeros(2000)
    adapter[:100] = 1
    base[100:160] = 1
    d = adapter - base
    counts = bootstrap_means(d, 20000, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    idx = np.array([d[rng.integers(0, d.size, d.size)].mean() for _ in range(4000)])
    assert counts.mean() == pytest.approx(d.mean(), abs=5e-4)
    assert counts.std() == pytest.approx(idx.std(), rel=0.06)
    assert counts.std() == pytest.approx(d.std() / np.sqrt(d.size), rel=0.05)


def test_bootstrap_indices_rows_are_resamples():
    counts = bootstrap_indices(50, 300, np.random.default_rng(0))
    assert counts.shape == (300, 50) and (counts.sum(axis=1) == 50).all()
    assert counts.mean() == pytest.approx(1.0)


def _paired_perm_reference(d, alternative, n_resamples):
    def stat(x, y, axis=-1):
        return np.mean(x - y, axis=axis)

    return sps.permutation_test((d, np.zeros_like(d)), stat, permutation_type="samples",
                                alternative=alternative, n_resamples=n_resamples, random_state=0).pvalue


def test_sign_flip_exact_matches_scipy_permutation_test():
    d = np.array([0.3, -0.1, 0.25, 0.0, 0.4, 0.05, -0.2, 0.15, 0.0, 0.35])
    two, less, greater = sign_flip_test(d)
    assert two == pytest.approx(_paired_perm_reference(d, "two-sided", np.inf), rel=1e-9)
    assert less == pytest.approx(_paired_perm_reference(d, "less", np.inf), rel=1e-9)
    assert greater == pytest.approx(_paired_perm_reference(d, "greater", np.inf), rel=1e-9)


def test_sign_flip_random_agrees_with_scipy():
    d = np.random.default_rng(4).normal(0.03, 0.3, 120)
    two, less, _ = sign_flip_test(d, permutations=20000, rng=np.random.default_rng(0))
    assert two == pytest.approx(_paired_perm_reference(d, "two-sided", 20000), abs=0.015)
    assert less == pytest.approx(_paired_perm_reference(d, "less", 20000), abs=0.015)
    assert sign_flip_test(np.zeros(30)) == (1.0, 1.0, 1.0)


def test_mde_matches_statsmodels_power():
    sd, n, alpha = 0.3, 400, 0.05
    es = NormalIndPower().solve_power(effect_size=None, nobs1=n, alpha=alpha, power=0.8, ratio=0,
                                      alternative="larger")
    assert minimum_detectable_effect(sd / np.sqrt(n), alpha, 0.8) == pytest.approx(es * sd, rel=1e-6)


def test_paired_stats_binary_uses_mcnemar_and_wilson_inputs():
    base = np.array([1, 1, 1, 0, 0, 1, 0, 1] * 50, dtype=float)
    adapter = base.copy()
    adapter[:40:8] = 0  # 5 right -> wrong
    adapter[3:200:8] = 1  # 25 wrong -> right
    s = paired_item_stats(base, adapter)
    assert s.test == "mcnemar-exact" and s.binary
    assert (s.worse, s.better) == (5, 25)
    assert s.p_value == pytest.approx(mcnemar([[0, 5], [25, 0]], exact=True).pvalue)
    assert s.delta == pytest.approx((25 - 5) / 400)
    lo, hi = s.bounds(0.95)
    assert lo < s.delta < hi and lo > 0


def test_lower_is_better_metrics_turn_the_gain():
    base, adapter = np.full(100, 0.5), np.full(100, 0.4)  # lower error: an improvement
    s = paired_item_stats(base, adapter, higher_is_better=False)
    assert s.delta < 0 and s.gain > 0
    lo, hi = s.gain_bounds()
    assert lo > 0 and s.p_worse > 0.5


def test_unscored_items_are_dropped_pairwise():
    b, a, d = paired_deltas([1.0, None, 0.5, np.nan], [0.0, 1.0, None, 1.0])
    assert b.tolist() == [1.0] and a.tolist() == [0.0] and d.tolist() == [-1.0]
    assert paired_item_stats([None, None], [1.0, 0.0]) is None


def test_tiny_unchanged_subset_is_not_certified():
    """Eight items, nothing changed: the bounds are wide (rule-of-three floor), the MDE huge."""
    s = paired_item_stats(np.ones(8), np.ones(8))
    lo, hi = s.bounds(0.95)
    assert lo < -0.2 and hi > 0.2
    assert s.mde() > 0.3
    big = paired_item_stats(np.ones(5000), np.ones(5000))
    assert big.bounds(0.95)[0] > -0.001


def _d2t_like(n=60, seed=0):
    rng = np.random.default_rng(seed)
    words = "the hotel in utrecht is rated 4 out of 5 and near the station with cheap rooms".split()
    refs = [[" ".join(rng.choice(words, 10)), " ".join(rng.choice(words, 9))] for _ in range(n)]
    base = [" ".join(r[0].split()[: 6 + i % 4]) for i, r in enumerate(refs)]
    adapter = [r[0] if i % 3 else " ".join(r[1].split()[:5]) for i, r in enumerate(refs)]
    return refs, base, adapter


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_corpus_statistics_reproduce_metric_aggregate(name):
    from harness.evaluate.metrics import get_metric

    metric = get_metric(name)
    refs, base, _ = _d2t_like()
    cs = sufficient_statistics(metric, base, refs)
    scores = metric.score_items(base, refs)
    assert cs.score(cs.stats.sum(axis=0)) == pytest.approx(metric.aggregate(base, refs, scores), abs=1e-12)
    idx = np.random.default_rng(2).integers(0, len(refs), len(refs))
    resampled = metric.aggregate([base[i] for i in idx], [refs[i] for i in idx], [scores[i] for i in idx])
    assert cs.score(cs.stats[idx].sum(axis=0)) == pytest.approx(resampled, abs=1e-12)


def test_corpus_bootstrap_fast_and_generic_paths():
    from harness.evaluate.metrics import get_metric

    metric = get_metric("bleu")
    refs, base, adapter = _d2t_like()
    bs, ad = metric.score_items(base, refs), metric.score_items(adapter, refs)
    fast = paired_corpus_stats(metric, base, adapter, refs, bs, ad, seed=3)
    again = paired_corpus_stats(metric, base, adapter, refs, bs, ad, seed=3)
    assert fast.test == "corpus-randomization" and fast.replicates.size == 2000
    assert np.array_equal(fast.replicates, again.replicates)
    assert fast.base == pytest.approx(metric.aggregate(base, refs, bs))
    assert fast.adapter == pytest.approx(metric.aggregate(adapter, refs, ad))
    lo, hi = fast.bounds(0.95)
    assert lo <= fast.delta <= hi

    class Opaque:  # a corpus metric without a statistics decomposition
        def aggregate(self, p, r, s):
            return metric.aggregate(p, r, s)

    generic = paired_corpus_stats(Opaque(), base, adapter, refs, bs, ad, seed=3, resamples=2000, permutations=50)
    assert generic.test.endswith("(generic)") and generic.replicates.size == 200
    assert generic.delta == pytest.approx(fast.delta)
    assert np.sign(np.median(generic.replicates)) == np.sign(np.median(fast.replicates))
