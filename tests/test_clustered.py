"""Clustered error bars (#18 item 4): items that share a cluster (questions on one background)
are resampled and permuted together, the standard error is cluster-robust, and the design
effect is reported per task and metric (docs/statistics.md)."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest

from harness.analysis.clustered import (
    clustered_variance,
    design_effect,
    paired_clustered_stats,
)
from harness.analysis.comparison import Comparison
from harness.analysis.corpus_bootstrap import paired_corpus_stats
from harness.analysis.stats import normal_quantile, paired_item_stats, percentile_interval
from harness.evaluate.suite_eval import cluster_id
from harness.log.folder import RunFolder
from harness.pipeline import gate_run
from tests.runlog_factory import squad_task, write_run
from tests.test_run import cli

# Six items in three clusters (A: items 0-1, B: items 2-4, C: item 5).
DELTAS = [0.2, 0.4, -0.1, 0.0, 0.1, 0.6]
LABELS = ["A", "A", "B", "B", "B", "C"]


def test_clustered_standard_error_and_design_effect_by_hand():
    # mean = 1.2 / 6 = 0.2; cluster sums S = A 0.6, B 0.0, C 0.6 with sizes m = 2, 3, 1
    # S - m x mean = 0.6 - 0.4 = 0.2, 0.0 - 0.6 = -0.6, 0.6 - 0.2 = 0.4; squares sum to 0.56
    # V = G / (G - 1) x 0.56 / n^2 = 1.5 x 0.56 / 36 = 0.84 / 36
    v_clustered = 0.84 / 36
    # independence: deviations 0, 0.2, -0.3, -0.2, -0.1, 0.4 -> sum of squares 0.34, s^2 = 0.34 / 5 = 0.068,
    # V = 0.068 / 6; design effect = (0.84 / 36) / (0.068 / 6) = 0.84 / 0.408
    de = 0.84 / 0.408
    base = [0.5] * 6
    adapter = [0.5 + d for d in DELTAS]
    s = paired_clustered_stats(base, adapter, LABELS, seed=1)
    assert clustered_variance(np.array(DELTAS), np.array([0, 0, 1, 1, 1, 2])) == pytest.approx(v_clustered, abs=1e-15)
    assert s.delta == pytest.approx(0.2, abs=1e-15)
    assert s.clusters == 3 and s.changed_clusters == 3 and s.n == 6
    # every cluster moved, so the rule-of-three floor (3/G x share of unchanged clusters) is 0
    assert s.standard_error == pytest.approx(math.sqrt(v_clustered), rel=1e-12)  # 0.152753
    assert s.design_effect == pytest.approx(de, rel=1e-12)  # 2.0588
    assert design_effect(np.array(DELTAS), np.array(LABELS, dtype=object)) == pytest.approx(de, rel=1e-12)
    # MDE = (z_0.95 + z_0.80) x SE = (1.644854 + 0.841621) x 0.152753 = 0.379815
    assert s.mde(0.05) == pytest.approx((normal_quantile(0.95) + normal_quantile(0.8)) * math.sqrt(v_clustered))
    assert s.mde(0.05) == pytest.approx(0.379815, abs=1e-6)
    # cluster sums 0.6, 0.0, 0.6: the two non-zero ones give 4 sign patterns with sums 1.2, 0, 0, -1.2
    assert s.test == "cluster-sign-flip"
    # two-sided: |sum| >= 1.2 in 2 of 4; H1 "worse" (sum <= 1.2): all 4
    assert s.p_value == pytest.approx(2 / 4) and s.p_worse == 1.0


def test_singleton_clusters_give_the_item_level_standard_error():
    rng = np.random.default_rng(4)
    base, adapter = rng.uniform(0, 1, 40), rng.uniform(0, 1, 40)
    clustered = paired_clustered_stats(base, adapter, [f"c{i}" for i in range(40)])
    items = paired_item_stats(base, adapter)
    assert clustered.design_effect == pytest.approx(1.0, rel=1e-12)
    assert clustered.standard_error == pytest.approx(items.standard_error, rel=1e-12)


def test_perfectly_correlated_clusters_widen_the_bootstrap_by_sqrt_design_effect():
    g, m = 100, 5
    per_cluster = np.clip(np.random.default_rng(0).normal(0.05, 0.2, g), -0.45, 0.45)
    deltas = np.repeat(per_cluster, m)  # every item of a cluster moves the same way
    labels = np.repeat(np.arange(g), m)
    base, adapter = np.full(g * m, 0.5), 0.5 + deltas
    clustered = paired_clustered_stats(base, adapter, labels, seed=3)
    items = paired_item_stats(base, adapter, seed=3)
    # identical items within a cluster: DE = m x [G / (G - 1)] / [n / (n - 1)] = (n - 1) / (G - 1) = 499 / 99
    assert clustered.design_effect == pytest.approx(499 / 99, rel=1e-9)
    assert clustered.mde() / items.mde() == pytest.approx(math.sqrt(499 / 99), rel=1e-9)
    lo_c, hi_c = percentile_interval(clustered.replicates)
    lo_i, hi_i = percentile_interval(items.replicates)
    assert (hi_c - lo_c) / (hi_i - lo_i) == pytest.approx(math.sqrt(499 / 99), rel=0.1)  # 2.245


def test_cluster_permutation_p_value_by_hand():
    # right/wrong items; deltas per cluster A (+1 +1 +1 0), B (+1 +1), C (+1 0), D (-1): sums 3, 2, 1, -1
    labels = list("AAAABBCCD")
    base = [0, 0, 0, 1, 0, 0, 0, 1, 1]
    adapter = [1, 1, 1, 1, 1, 1, 1, 1, 0]
    s = paired_clustered_stats(base, adapter, labels)
    # 16 sign patterns of (3, 2, 1, -1): sums 7, 5, 5, 3, 3, 1, 1, -1 and their negatives; observed 5
    # |sum| >= 5: 7, 5, 5, -7, -5, -5 -> 6/16; sum <= 5 (H1: the adapter is worse): all but 7 -> 15/16
    assert s.test == "cluster-sign-flip" and s.binary
    assert s.p_value == pytest.approx(6 / 16) and s.p_worse == pytest.approx(15 / 16)
    assert (s.worse, s.better, s.clusters, s.changed_clusters) == (1, 6, 4, 4)
    # treated as independent, McNemar on 6 better / 1 worse: 2 x (1 + 7) / 2^7 = 0.125
    assert paired_item_stats(base, adapter).p_value == pytest.approx(0.125)
    # one moved cluster: its two sign patterns are equally extreme, nothing can be concluded
    one = paired_clustered_stats([0] * 8 + [1] * 8, [1] * 8 + [1] * 8, ["A"] * 8 + ["B"] * 8)
    assert one.p_value == 1.0 and paired_item_stats([0] * 8 + [1] * 8, [1] * 16).p_value == pytest.approx(2 / 256)


def test_a_single_cluster_gives_no_interval():
    s = paired_clustered_stats([0, 0, 0], [1, 1, 0], ["x", "x", "x"])
    assert s.bounds() == (-1.0, 1.0) and math.isinf(s.standard_error) and s.design_effect is None


def test_corpus_metric_resamples_clusters():
    from harness.evaluate.metrics import get_metric

    metric = get_metric("chrf")
    rng = np.random.default_rng(5)
    words = "the cat sat on a mat with red blue green dog ran far away home".split()

    def sentence() -> str:
        return " ".join(rng.choice(words, size=6))

    g, m = 40, 4
    refs = [[sentence()] for _ in range(g)]
    base, adapter = [sentence() for _ in range(g)], [sentence() for _ in range(g)]
    # every cluster is one item copied m times: about m times the variance of independent items
    rep = lambda xs: [x for x in xs for _ in range(m)]  # noqa: E731
    refs, base, adapter = rep(refs), rep(base), rep(adapter)
    bs, ad = metric.score_items(base, refs), metric.score_items(adapter, refs)
    labels = np.repeat(np.arange(g), m)
    s = paired_corpus_stats(metric, base, adapter, refs, bs, ad, seed=2, clusters=labels)
    assert s.test == "cluster-corpus-randomization" and s.clusters == g
    assert s.design_effect == pytest.approx(m, rel=0.15)
    # clusters of one item draw exactly what the item-level path draws
    flat = paired_corpus_stats(metric, base, adapter, refs, bs, ad, seed=2)
    single = paired_corpus_stats(metric, base, adapter, refs, bs, ad, seed=2, clusters=list(range(g * m)))
    assert np.array_equal(flat.replicates, single.replicates) and flat.p_value == single.p_value


def test_cluster_ids_are_recorded_short():
    assert cluster_id("Super_Bowl_50") == "Super_Bowl_50"
    assert cluster_id(7) == "7" and cluster_id(None) is None
    long = "x" * 65
    assert cluster_id(long) == "sha256:" + hashlib.sha256(long.encode()).hexdigest()[:16]


def _clustered_run(tmp_path):
    # exact_match: clusters A (items 0-2) all gained, B (3-5) all lost, C, D, E unchanged, F (9-11) all gained
    n = 12
    em = ([0.0] * 3 + [1.0] * 3 + [0.0] * 6, [1.0] * 3 + [0.0] * 3 + [0.0] * 3 + [1.0] * 3)
    f1 = ([0.5] * n, [0.5 + d for d in [0.2, 0.1, 0.3, -0.1, -0.2, 0.0, 0.05, 0.0, -0.05, 0.1, 0.2, 0.3]])
    run = write_run(tmp_path / "run", [squad_task(n, em, f1)])
    folder = RunFolder(run)
    labels = list("AAABBBCDEFFF")  # item 6, 7, 8 each alone
    records = folder.read_items()
    for rec in records:
        rec.cluster = labels[int(rec.item_id.rsplit("-", 1)[1])]
    folder.write_run(folder.read_meta(), records)
    return run, em, f1, labels


def test_comparison_verdict_and_summary_report_the_design_effect(tmp_path):
    run, em, f1, labels = _clustered_run(tmp_path)
    comp = Comparison.from_run_dir(run)
    rows = {r.metric: r for r in comp.rows}
    for metric, (b, a) in (("exact_match", em), ("f1", f1)):
        d = np.array(a) - np.array(b)
        # the design effect by the formula, written out here independently of the module
        sums = {c: sum(d[i] for i in range(12) if labels[i] == c) for c in set(labels)}
        sizes = {c: labels.count(c) for c in set(labels)}
        g, n = len(sums), 12
        v_cl = g / (g - 1) * sum((sums[c] - sizes[c] * d.mean()) ** 2 for c in sums) / n ** 2
        v_ind = d.var(ddof=1) / n
        assert rows[metric].clusters == 6 and rows[metric].test == "cluster-sign-flip"
        assert rows[metric].design_effect == pytest.approx(v_cl / v_ind, rel=1e-12)
    # exact_match: cluster sums +3, -3, 0, 0, 0, +3 -> non-zero 3, -3, 3: 8 patterns, observed 3, |sum| >= 3 all 8
    assert rows["exact_match"].p_value == 1.0
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {name: squad-f1, task: squad-qa, metric: f1, max_drop: 50}\n")
    gate_run(run, policy)
    verdict = json.loads((run / "verdict.json").read_text())
    by_metric = {r["metric"]: r for r in verdict["deltas"]}
    assert by_metric["f1"]["clusters"] == 6
    assert by_metric["f1"]["design_effect"] == pytest.approx(rows["f1"].design_effect)
    summary = (run / "summary.md").read_text()
    for metric in ("exact_match", "f1"):
        assert f"cluster-sign-flip, 6 clusters, DE {rows[metric].design_effect:.2f}" in summary
    assert "Clustered tasks (squad-qa)" in summary
    from harness.outputs.report import render_report

    html = render_report(run).read_text()
    assert f"cluster-sign-flip, 6 clusters, DE {rows['f1'].design_effect:.2f}" in html


SHORT = "Paris is the capital of France."
LONG = ("The Amazon river carries more water than any other river on Earth, draining a basin of about seven "
        "million square kilometres.")
LONGER = ("Mount Everest, on the border of Nepal and the Tibet Autonomous Region, rises 8,849 metres above sea "
          "level and was first climbed in 1953.")


@pytest.mark.slow  # about a minute on 2 busy CPU cores
def test_a_clustered_suite_records_cluster_ids_and_reports_the_design_effect(tmp_path, tiny_dir, tiny_lora):
    suite = tmp_path / "bg-qa"
    suite.mkdir()
    contexts = [SHORT, LONG, LONGER] * 2  # interleaved, so clusters are not runs of adjacent items
    rows = [{"id": f"q{i}", "context": c, "question": f"Question {i} about the text?", "answer": f"answer {i}"}
            for i, c in enumerate(contexts)]
    (suite / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (suite / "suite.yaml").write_text("""\
name: bg-qa
version: "1"
data: {file: data.jsonl}
fields:
  id: id
  references: answer
  vars: {context: context, question: question}
  meta: {cluster: context}
prompt: "{{ context }}\\nQ: {{ question }}\\nA:"
generation: {max_new_tokens: 8}
metrics: [chrf, f1]
""")
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {name: bg-chrf, task: bg-qa, metric: chrf, max_drop: 100}\n")
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", out, "--batch-size", 6,
        "--policy", policy, check=False)
    assert (out / "summary.md").is_file(), "compare did not gate"
    want = {"q0": SHORT, "q3": SHORT}  # 31 characters: recorded as is
    for i in (1, 4):
        want[f"q{i}"] = "sha256:" + hashlib.sha256(LONG.encode()).hexdigest()[:16]
    for i in (2, 5):
        want[f"q{i}"] = "sha256:" + hashlib.sha256(LONGER.encode()).hexdigest()[:16]
    items = RunFolder(out).read_items()
    assert len(items) == 12 and all(r.cluster == want[r.item_id] for r in items)
    comp = Comparison.from_run_dir(out)
    for row in comp.rows:
        assert row.clusters == 3 and row.test.startswith("cluster-")
    chrf = comp.row("ft", "bg-qa", "chrf")
    assert chrf.design_effect is not None and chrf.design_effect > 0
    summary = (out / "summary.md").read_text()
    assert f"{chrf.test}, 3 clusters, DE {chrf.design_effect:.2f}" in summary
    assert f"DE {chrf.design_effect:.2f}" in (out / "report.html").read_text()
