"""Arm B against arm A of `harness ab --vs`: per-seed paired gains, their spread, one decision.

Both arms answer the same eval items with the same prompts (one run folder), and seed s of
arm B is paired with seed s of arm A. For every task and metric:

- per seed: B − A on the items both scored (a corpus score difference for BLEU/chrF), points;
- spread: the sample standard deviation of those per-seed differences over seeds;
- pooled paired test: items are the unit. For item-level metrics each item's B − A is
  averaged over seeds and a sign-flip permutation test runs on those averages (an item
  counts once however many seeds there are); corpus-level metrics use the paired corpus
  randomization test on the seeds' outputs laid end to end.

The rule (documented in docs/ab.md): with g the per-seed gains oriented so that positive
favours B, B **wins** only when mean(g) > k × sd(g) AND the pooled test's one-sided p that B
is better is below alpha; it **loses** under the mirror condition; anything else, and any
comparison over fewer than two seeds (no spread to measure), is **no-win**. The spread check
stops a seed draw from being sold as a recipe difference; the pooled test stops item noise.

Reads only the run log (no torch). The same function feeds run.json (`ab.b_vs_a`), the
gate (verdict.json `b_vs_a`) and so the report and summary.md.
"""

from __future__ import annotations

import statistics
import zlib
from typing import Any

import numpy as np

from harness.analysis.pairing import PairedRun, TaskData
from harness.analysis.stats import DEFAULT_PERMUTATIONS, DEFAULT_RESAMPLES, sign_flip_test
from harness.fmt import pts, pval
from harness.log.schema import ArmGain, ArmVerdict

POINTS = 100.0
SPREAD_K = 1.0  # "a difference smaller than the seed spread is not a win" (docs/ab.md)
ALPHA = 0.05
WIN, NO_WIN, LOSS = "win", "no-win", "loss"


def seed_pairs(training: Any, models: list[str]) -> dict[int, tuple[str, str]]:
    """seed -> (arm A adapter, arm B adapter) for the seeds both arms trained.

    Args:
        training: run.json's `training` (adapter name -> record with `arm` and `seed`).
        models: The run's models; records of adapters the run did not evaluate are ignored.
    """
    if not isinstance(training, dict):
        return {}
    arms: dict[str, dict[int, str]] = {}
    for name, rec in training.items():
        if name in models and isinstance(rec, dict) and isinstance(rec.get("seed"), int):
            arms.setdefault(str(rec.get("arm")), {})[rec["seed"]] = name
    a, b = arms.get("A", {}), arms.get("B", {})
    return {s: (a[s], b[s]) for s in sorted(set(a) & set(b))}


def decide(gains: list[float], higher_is_better: bool, p_better: float, p_worse: float,
           spread_k: float = SPREAD_K, alpha: float = ALPHA) -> tuple[str, str]:
    """The B-vs-A outcome and one sentence saying why.

    Args:
        gains: Per-seed B − A in points (raw: for a lower-is-better metric negative favours B).
        higher_is_better: The metric's direction.
        p_better: Pooled one-sided p-value, H1: B is better.
        p_worse: Pooled one-sided p-value, H1: B is worse.
        spread_k: The mean must exceed this many seed standard deviations.
        alpha: Significance level of the pooled test.
    """
    if len(gains) < 2:
        return NO_WIN, (f"{len(gains)} seed: the seed spread is unknown, so no difference counts "
                        "(train at least 2 seeds per arm, e.g. --seeds 0,1,2)")
    oriented = [g if higher_is_better else -g for g in gains]
    mean, sd = statistics.fmean(oriented), statistics.stdev(oriented)
    bar = spread_k * sd
    shown = f"mean {pts(statistics.fmean(gains), True)} over {len(gains)} seeds, seed sd {pts(sd)}"
    for outcome, sign, p in ((WIN, 1.0, p_better), (LOSS, -1.0, p_worse)):
        if sign * mean > bar:
            if p < alpha:
                verb = "beats" if outcome == WIN else "is worse than"
                return outcome, (f"B {verb} A: {shown}; |mean| > {spread_k:g} × sd ({pts(bar)}) and the pooled "
                                 f"paired test gives p={pval(p)} < {alpha:g}")
            return NO_WIN, (f"{shown} clears {spread_k:g} × sd ({pts(bar)}), but the pooled paired test gives "
                            f"p={pval(p)} >= {alpha:g}: the items cannot tell B from A")
    return NO_WIN, (f"{shown}: the difference is within {spread_k:g} × the seed spread ({pts(bar)}), "
                    "so another seed could reverse it")


def _seed(base: int, *parts: Any) -> list[int]:
    # Each comparison draws from its own stream (as harness.analysis.comparison does).
    return [base, zlib.crc32("|".join(map(str, parts)).encode("utf-8"))]


def _corpus_metric(name: str) -> Any:
    try:
        from harness.evaluate.metrics import get_metric

        return get_metric(name)
    except Exception:  # a plugin missing here: fall back to item means (the test field says so)
        return None


def _item_level(data: TaskData, metric: str, pairs: dict[int, tuple[str, str]], hib: bool, permutations: int,
                rng_seed: list[int]) -> tuple[list[float], int, str, float, float]:
    per_seed, deltas = [], []
    for a, b in pairs.values():
        d = data.scores(b, metric) - data.scores(a, metric)  # NaN where either is unscored
        deltas.append(d)
        ok = d[np.isfinite(d)]
        per_seed.append(float(ok.mean()) * POINTS if ok.size else float("nan"))
    stacked = np.vstack(deltas)
    scored = np.isfinite(stacked).any(axis=0)
    item_means = np.nanmean(stacked[:, scored], axis=0) if scored.any() else np.zeros(0)
    _, lower, higher = sign_flip_test(item_means, permutations, np.random.default_rng(rng_seed))
    p_better, p_worse = (higher, lower) if hib else (lower, higher)
    return per_seed, int(item_means.size), "sign-flip on per-item means over seeds", p_better, p_worse


def _corpus_level(data: TaskData, metric: str, metric_obj: Any, pairs: dict[int, tuple[str, str]], hib: bool,
                  resamples: int, permutations: int,
                  rng_seed: list[int]) -> tuple[list[float], int, str, float, float]:
    from harness.analysis.corpus_bootstrap import paired_corpus_stats

    refs = data.references()
    per_seed = []
    pa_all, pb_all, refs_all, sa_all, sb_all = [], [], [], [], []
    for a, b in pairs.values():
        pa, pb = data.predictions(a), data.predictions(b)
        sa, sb = [float(x) for x in data.scores(a, metric)], [float(x) for x in data.scores(b, metric)]
        per_seed.append((float(metric_obj.aggregate(pb, refs, sb)) - float(metric_obj.aggregate(pa, refs, sa)))
                        * POINTS)
        pa_all += pa
        pb_all += pb
        refs_all += refs
        sa_all += sa
        sb_all += sb

    def p_b_worse(direction: bool) -> tuple[float, str]:
        # paired_corpus_stats reports "B worse" in the direction it is told; the same seed
        # draws the same randomizations, so the two calls give the two tails of one null.
        st = paired_corpus_stats(metric_obj, pa_all, pb_all, refs_all, sa_all, sb_all, higher_is_better=direction,
                                 resamples=resamples, permutations=permutations, seed=rng_seed)
        return st.p_worse, st.test

    p_worse, test = p_b_worse(hib)
    p_better, _ = p_b_worse(not hib)
    return per_seed, data.n, f"{test}, seeds laid end to end", p_better, p_worse


def arm_gains(paired: PairedRun, *, spread_k: float = SPREAD_K, alpha: float = ALPHA,
              resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS,
              seed: int = 0) -> list[ArmGain]:
    """B − A per task and metric for a run of `harness ab --vs` (empty for any other run).

    Args:
        paired: The aligned run (`harness.analysis.pairing.load_paired_run`).
        spread_k: The rule's k (docs/ab.md).
        alpha: The pooled test's significance level.
        resamples: Bootstrap resamples (corpus-level metrics).
        permutations: Random sign patterns / randomizations of the pooled test.
        seed: Base seed of the resampling streams.
    """
    pairs = seed_pairs(paired.meta.training, paired.adapters)
    if not pairs:
        return []
    out = []
    for data in paired.tasks.values():
        for metric in data.metrics:
            info = paired.meta.metric_info(metric)
            hib = info.higher_is_better
            if all(np.isnan(data.scores(m, metric)).all() for pair in pairs.values() for m in pair):
                continue  # nobody scored it for the arms (a base-only metric)
            rng_seed = _seed(seed, "b-vs-a", data.kind, data.task, metric)
            metric_obj = _corpus_metric(metric) if info.corpus_level else None
            if metric_obj is not None:
                gains, n, test, p_better, p_worse = _corpus_level(data, metric, metric_obj, pairs, hib, resamples,
                                                                  permutations, rng_seed)
            else:
                gains, n, test, p_better, p_worse = _item_level(data, metric, pairs, hib, permutations, rng_seed)
            kept = [(s, g) for s, g in zip(pairs, gains) if np.isfinite(g)]  # seeds whose pair scored an item
            if not kept:
                continue
            finite = [g for _, g in kept]
            outcome, reason = decide(finite, hib, p_better, p_worse, spread_k, alpha)
            out.append(ArmGain(
                kind=data.kind, task=data.task, metric=metric, arm="B-A", seeds=len(finite),
                seed_ids=[s for s, _ in kept], gains_points=[round(g, 6) for g in finite],
                mean_points=statistics.fmean(finite),
                sd_points=statistics.stdev(finite) if len(finite) > 1 else None, min_points=min(finite),
                max_points=max(finite), higher_is_better=hib, n=n, test=test, p_better=p_better, p_worse=p_worse,
                outcome=outcome, reason=reason))
    return out


def arm_verdict(paired: PairedRun, *, spread_k: float = SPREAD_K, confidence: float = 1.0 - ALPHA,
                resamples: int = DEFAULT_RESAMPLES, permutations: int = DEFAULT_PERMUTATIONS,
                seed: int = 0) -> ArmVerdict | None:
    """The B-vs-A section of run.json and verdict.json; None when the run has no two arms."""
    alpha = round(1.0 - confidence, 10)
    rows = arm_gains(paired, spread_k=spread_k, alpha=alpha, resamples=resamples, permutations=permutations,
                     seed=seed)
    if not rows:
        return None
    rule = (f"B beats A on a metric only if the mean of the per-seed paired differences exceeds {spread_k:g} × "
            f"their standard deviation over seeds and the pooled paired test over items is significant at "
            f"{alpha:g} (one-sided); the mirror condition is a loss; anything else, or fewer than 2 seeds, is no-win")
    return ArmVerdict(spread_k=spread_k, alpha=alpha, rule=rule, rows=rows)
