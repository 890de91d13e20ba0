"""`harness ab --vs`: arm B against arm A, seed paired with seed, and the seed-spread rule.

The synthetic runs give every model known right/wrong answers on the same items, so each
per-seed gain, its standard deviation and the pooled sign-flip p-value are worked out by hand
in the comments. The last test runs `harness ab --vs` end to end on the tiny model.
"""

from __future__ import annotations

import json
import math

import pytest

from harness.ab import seed_summary
from harness.analysis.arms import arm_verdict
from harness.analysis.gate import preflight
from harness.analysis.pairing import load_paired_run
from harness.analysis.policy import parse_policy
from harness.errors import ConfigError
from harness.log.folder import RunFolder
from harness.log.schema import ABSummary
from tests.runlog_factory import TaskSpec, write_run
from tests.test_run import cli, make_suite
from tests.test_train import chat_rows, write_jsonl

SQRT2 = math.sqrt(2.0)


def right(n: int, *ranges: tuple[int, int]) -> list[float]:
    """0/1 scores over n items: 1 on the half-open index ranges given."""
    out = [0.0] * n
    for lo, hi in ranges:
        for i in range(lo, hi):
            out[i] = 1.0
    return out


def ab_run(out, n: int, scores: dict[str, list[float]], arms: dict[str, tuple[str, int]]):
    """A run folder as `harness ab --vs` leaves it: models base + arm adapters, training records, ab summary.

    scores: model -> exact_match per item; `wrong` (lower is better) is 1 - exact_match.
    arms: adapter -> (arm, seed).
    """
    task = TaskSpec(name="arith", scores={m: {"exact_match": s, "wrong": [1.0 - x for x in s]}
                                          for m, s in scores.items()})
    write_run(out, [task], metric_info={"wrong": (False, False)})
    folder = RunFolder(out)
    meta = folder.read_meta()
    meta.training = {name: {"arm": arm, "seed": seed} for name, (arm, seed) in arms.items()}
    meta.ab = ABSummary(seeds=sorted({s for _, s in arms.values()}), arms=sorted({a for a, _ in arms.values()}),
                        summary=seed_summary(meta, meta.training), b_vs_a=arm_verdict(load_paired_run(out)))
    folder.write_meta(meta)
    return out


TWO_ARMS = {"A-seed0": ("A", 0), "A-seed1": ("A", 1), "B-seed0": ("B", 0), "B-seed1": ("B", 1)}


@pytest.fixture
def clear_win(tmp_path):
    # 20 items. base 0-5 right (30); A0 0-9 (50), A1 0-8 (45); B0 0-15 (80), B1 0-13 (70).
    # B - A per seed: +30, +25: mean 27.5, sd 5/sqrt(2) = 3.5355 -> clears 1 x sd.
    # Per-item means over seeds of B - A: item 9 0.5, items 10-13 1.0, items 14 and 15 0.5:
    # 7 changed items all positive -> exact sign flip p(B better) = 1/2^7 = 0.0078125.
    n = 20
    return ab_run(tmp_path / "win", n, {"base": right(n, (0, 6)), "A-seed0": right(n, (0, 10)),
                                        "A-seed1": right(n, (0, 9)), "B-seed0": right(n, (0, 16)),
                                        "B-seed1": right(n, (0, 14))}, TWO_ARMS)


@pytest.fixture
def within_spread(tmp_path):
    # 40 items. base 0-9 right (25); A0 0-9 (25), B0 0-21 (55): +30; A1 0-19 (50), B1 0-17 (45): -5.
    # mean 12.5, sd 35/sqrt(2) = 24.7487 -> within 1 x sd: no win, although the pooled test is
    # significant: items 10-17, 20, 21 average +0.5, items 18, 19 average 0 (+1 and -1), so 10
    # changed items all positive -> p = 1/2^10 = 0.0009765625.
    n = 40
    return ab_run(tmp_path / "spread", n, {"base": right(n, (0, 10)), "A-seed0": right(n, (0, 10)),
                                           "B-seed0": right(n, (0, 22)), "A-seed1": right(n, (0, 20)),
                                           "B-seed1": right(n, (0, 18))}, TWO_ARMS)


def rows(verdict_section) -> dict[str, object]:
    return {r.metric: r for r in verdict_section.rows}


def test_clear_win_beyond_the_seed_spread(clear_win):
    section = arm_verdict(load_paired_run(clear_win))
    assert section.spread_k == 1.0 and section.alpha == 0.05
    em, wrong = rows(section)["exact_match"], rows(section)["wrong"]
    assert em.seed_ids == [0, 1] and em.n == 20
    assert em.gains_points == pytest.approx([30.0, 25.0])
    assert em.mean_points == pytest.approx(27.5)
    assert em.sd_points == pytest.approx(5 / SQRT2)
    assert (em.min_points, em.max_points) == pytest.approx((25.0, 30.0))
    assert em.p_better == pytest.approx(1 / 128) and em.p_worse == pytest.approx(1.0)
    assert em.outcome == "win"
    # lower is better: B - A is -30, -25 on `wrong`, which is B getting better
    assert wrong.gains_points == pytest.approx([-30.0, -25.0])
    assert wrong.p_better == pytest.approx(1 / 128) and wrong.outcome == "win"


def test_better_on_average_but_within_seed_spread_is_no_win(within_spread):
    em = rows(arm_verdict(load_paired_run(within_spread)))["exact_match"]
    assert em.gains_points == pytest.approx([30.0, -5.0])
    assert em.mean_points == pytest.approx(12.5)
    assert em.sd_points == pytest.approx(35 / SQRT2)
    assert em.p_better == pytest.approx(1 / 1024)  # the items alone would call it
    assert em.outcome == "no-win"
    assert "within 1 × the seed spread (24.75)" in em.reason
    # a looser k lets the same numbers through: the spread is what stopped it
    assert rows(arm_verdict(load_paired_run(within_spread), spread_k=0.5))["exact_match"].outcome == "win"


def test_swapped_arms_lose_and_a_clean_spread_without_item_evidence_is_no_win(tmp_path):
    n = 20
    # B is the clear-win case's A and vice versa: -30, -25 -> loss (p(B worse) = 1/128).
    lose = ab_run(tmp_path / "lose", n, {"base": right(n, (0, 6)), "A-seed0": right(n, (0, 16)),
                                         "A-seed1": right(n, (0, 14)), "B-seed0": right(n, (0, 10)),
                                         "B-seed1": right(n, (0, 9))}, TWO_ARMS)
    em = rows(arm_verdict(load_paired_run(lose)))["exact_match"]
    assert em.mean_points == pytest.approx(-27.5) and em.p_worse == pytest.approx(1 / 128)
    assert em.outcome == "loss"
    # Both seeds gain +5 on the same single item: sd 0, so the spread test passes, but one
    # changed item gives p = 1/2: no win.
    one = ab_run(tmp_path / "one", n, {"base": right(n, (0, 5)), "A-seed0": right(n, (0, 5)),
                                       "A-seed1": right(n, (0, 5)), "B-seed0": right(n, (0, 6)),
                                       "B-seed1": right(n, (0, 6))}, TWO_ARMS)
    em = rows(arm_verdict(load_paired_run(one)))["exact_match"]
    assert em.gains_points == pytest.approx([5.0, 5.0]) and em.sd_points == 0.0
    assert em.p_better == pytest.approx(0.5) and em.outcome == "no-win"
    assert "cannot tell B from A" in em.reason
    # One seed per arm: no spread to measure, so even +30 is no win.
    single = ab_run(tmp_path / "single", n, {"base": right(n, (0, 6)), "A-seed0": right(n, (0, 6)),
                                             "B-seed0": right(n, (0, 12))},
                    {"A-seed0": ("A", 0), "B-seed0": ("B", 0)})
    em = rows(arm_verdict(load_paired_run(single)))["exact_match"]
    assert em.gains_points == pytest.approx([30.0]) and em.sd_points is None and em.outcome == "no-win"


POLICY = """version: 1
rules:
  - {task: arith, metric: exact_match, max_drop: 100}
b_vs_a:
  rules:
    - {task: arith, metric: exact_match, require: win}
"""


def test_gate_verdict_summary_and_report_carry_b_vs_a(tmp_path, clear_win, within_spread):
    policy = tmp_path / "gate.yaml"
    policy.write_text(POLICY)
    ok = cli("gate", clear_win, "--policy", policy, check=False)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads((clear_win / "verdict.json").read_text())
    em = next(r for r in doc["b_vs_a"]["rows"] if r["metric"] == "exact_match")
    assert em["gains_points"] == pytest.approx([30.0, 25.0]) and em["sd_points"] == pytest.approx(5 / SQRT2)
    assert em["outcome"] == "win"
    rule = next(r for r in doc["rules"] if r["name"] == "b-vs-a-arith-exact_match-win")
    assert rule["status"] == "pass" and rule["adapter"] == "B vs A"
    summary = (clear_win / "summary.md").read_text()
    # every gain with its spread: A vs base +20/+15, B vs base +50/+40, B vs A +30/+25
    assert "| arith | exact_match | A vs base | +20.00, +15.00 | +17.50 | 3.54 | +15.00 … +20.00 |  |" in summary
    assert "| arith | exact_match | B vs base | +50.00, +40.00 | +45.00 | 7.07 | +40.00 … +50.00 |  |" in summary
    assert "| arith | exact_match | B vs A | +30.00, +25.00 | +27.50 | 3.54 | +25.00 … +30.00 | **win** |" in summary
    html = (clear_win / "report.html").read_text() if (clear_win / "report.html").exists() else None
    assert html is None  # `harness gate` writes CI files only; the report is rendered below
    cli("report", clear_win)
    html = (clear_win / "report.html").read_text()
    assert 'id="seeds"' in html and "+30.00, +25.00" in html and ">win</span>" in html

    bad = cli("gate", within_spread, "--policy", policy, check=False)
    assert bad.returncode == 1
    doc = json.loads((within_spread / "verdict.json").read_text())
    rule = next(r for r in doc["rules"] if r["name"] == "b-vs-a-arith-exact_match-win")
    assert rule["status"] == "fail" and rule["numbers"]["outcome"] == "no-win"
    assert doc["verdict"] == "fail"
    assert "| B vs A | +30.00, -5.00 | +12.50 | 24.75 | -5.00 … +30.00 | **no-win** |" in \
        (within_spread / "summary.md").read_text()


def test_b_vs_a_rules_need_two_arms_and_evaluated_tasks(tmp_path):
    policy = parse_policy({"rules": [{"task": "arith", "metric": "f1", "max_drop": 5}],
                           "b_vs_a": {"rules": [{"task": "squad-qa", "metric": "f1"}]}}, "gate.yaml")
    with pytest.raises(ConfigError, match="b-vs-a-squad-qa-f1-win.*squad-qa"):
        preflight(policy, suites=["arith"])
    with pytest.raises(ConfigError, match="spread_k"):
        parse_policy({"rules": [{"task": "a", "metric": "f1", "max_drop": 5}], "b_vs_a": {"spread_k": 0}})
    # a plain compare run has no arms: one line, exit 2
    n = 10
    plain = write_run(tmp_path / "plain", [TaskSpec(name="arith", scores={"base": {"exact_match": right(n, (0, 3))},
                                                                          "ft": {"exact_match": right(n, (0, 4))}})])
    path = tmp_path / "gate.yaml"
    path.write_text(POLICY)
    proc = cli("gate", plain, "--policy", path, check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "harness ab --vs" in proc.stderr


def test_ab_vs_end_to_end_pairs_seeds(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "arith", n=6)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(offset=100))
    vs = tmp_path / "b.yaml"
    vs.write_text("rank: 8\nlr: 0.01\n")
    policy = tmp_path / "gate.yaml"
    policy.write_text("version: 1\non_inconclusive: pass\nrules:\n  - {task: arith, metric: f1, max_drop: 100}\n"
                      "b_vs_a:\n  rules:\n    - {task: arith, metric: f1, require: no-loss}\n")
    no_vs = cli("ab", tiny_dir, "--train", train, "--suite", suite, "--policy", policy, "--out", tmp_path / "novs",
                check=False)  # b_vs_a rules without --vs: refused before any training
    assert no_vs.returncode == 2 and "no --vs was given" in no_vs.stderr
    assert len(no_vs.stderr.strip().splitlines()) == 1 and not (tmp_path / "novs" / "adapters").exists()
    out = tmp_path / "ab"
    proc = cli("ab", tiny_dir, "--train", train, "--suite", suite, "--seeds", "0,1", "--max-steps", 2, "--vs", vs,
               "--policy", policy, "--out", out, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["base", "A-seed0", "A-seed1", "B-seed0", "B-seed1"]
    agg = meta["aggregates"]["suites"]["arith"]
    section = meta["ab"]["b_vs_a"]
    f1 = next(r for r in section["rows"] if r["metric"] == "f1")
    # every item is scored, so seed s's paired B - A is the difference of the aggregates
    expected = [100 * (agg[f"B-seed{s}"]["f1"] - agg[f"A-seed{s}"]["f1"]) for s in (0, 1)]
    assert f1["seed_ids"] == [0, 1] and f1["gains_points"] == pytest.approx(expected, abs=1e-5)
    assert f1["mean_points"] == pytest.approx(sum(expected) / 2, abs=1e-5)
    assert f1["sd_points"] == pytest.approx(abs(expected[0] - expected[1]) / SQRT2, abs=1e-5)
    assert f1["n"] == 6 and f1["outcome"] in ("win", "no-win", "loss")
    verdict = json.loads((out / "verdict.json").read_text())
    assert next(r for r in verdict["b_vs_a"]["rows"] if r["metric"] == "f1") == f1  # one computation, two files
    rule = next(r for r in verdict["rules"] if r["adapter"] == "B vs A")
    assert rule["status"] == ("fail" if f1["outcome"] == "loss" else "pass")
    assert "B vs A, seed s against seed s" in proc.stdout
    assert 'id="seeds"' in (out / "report.html").read_text()
    assert "| B vs A |" in (out / "summary.md").read_text()


def test_corpus_metric_uses_corpus_scores_per_seed(tmp_path):
    # BLEU is a corpus score: per seed B − A is the difference of corpus BLEUs. Exact copies of
    # the reference score 100, outputs sharing no word with it score 0.
    n = 8
    refs = [[f"the quick brown fox number {i} jumps over dogs"] for i in range(n)]
    exact, wrong = [r[0] for r in refs], ["zzz yyy xxx www vvv"] * n
    hit, miss = [1.0] * n, [0.0] * n

    def run(name, outputs):  # model -> (predictions, item scores)
        task = TaskSpec(name="d2t", scores={m: {"bleu": s} for m, (_, s) in outputs.items()},
                        predictions={m: p for m, (p, _) in outputs.items()}, references=refs)
        write_run(tmp_path / name, [task])
        folder = RunFolder(tmp_path / name)
        meta = folder.read_meta()
        meta.training = {name: {"arm": arm, "seed": seed} for name, (arm, seed) in TWO_ARMS.items()}
        folder.write_meta(meta)
        return rows(arm_verdict(load_paired_run(tmp_path / name)))["bleu"]

    # seed 0: A 0, B 100; seed 1: both 100 -> +100, 0: mean 50, sd 70.71, no win
    mixed = run("mixed", {"base": (wrong, miss), "A-seed0": (wrong, miss), "B-seed0": (exact, hit),
                          "A-seed1": (exact, hit), "B-seed1": (exact, hit)})
    assert mixed.gains_points == pytest.approx([100.0, 0.0]) and mixed.sd_points == pytest.approx(100 / SQRT2)
    assert mixed.outcome == "no-win" and "corpus-randomization" in mixed.test and mixed.n == n
    # both seeds +100 (sd 0); 16 (item, seed) units all favour B: only the no-swap draw reaches
    # the observed difference, so p(B better) is the floor 1/1001 and B wins
    clear = run("clear", {"base": (wrong, miss), "A-seed0": (wrong, miss), "B-seed0": (exact, hit),
                          "A-seed1": (wrong, miss), "B-seed1": (exact, hit)})
    assert clear.gains_points == pytest.approx([100.0, 100.0]) and clear.sd_points == 0.0
    assert clear.p_better == pytest.approx(1 / 1001) and clear.p_worse == pytest.approx(1.0)
    assert clear.outcome == "win"
