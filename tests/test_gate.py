"""Gate verdicts on constructed run logs, artifacts, exit codes through the CLI, calibrate."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.analysis.comparison import Comparison
from harness.errors import ConfigError, HarnessError
from harness.analysis.gate import apply_gate, preflight
from harness.analysis.pairing import IncomparableError
from harness.analysis.policy import load_policy
from harness.pipeline import gate_run
from tests.runlog_factory import (
    TaskSpec,
    bench_task,
    binary_pair,
    continuous_pair,
    squad_task,
    write_run,
)

HARNESS = [sys.executable, "-m", "harness.cli"]


def cli(*args):
    return subprocess.run([*HARNESS, *map(str, args)], capture_output=True, text=True)


def policy_file(tmp_path: Path, body: str, name: str = "gate.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


F1_RULE = "rules:\n  - {name: squad-f1, task: squad-qa, metric: f1, max_drop: 1.0}\n"


def squad_run(tmp_path: Path, n: int, shift: float, *, worse: int = 0, better: int = 0, name: str = "run",
              **kw) -> Path:
    em = binary_pair(n, 0.6, worse, better, seed=1)
    f1 = continuous_pair(n, 0.6, shift, sd=0.02, seed=2)
    return write_run(tmp_path / name, [squad_task(n, em, f1)], **kw)


# ---- verdicts ------------------------------------------------------------------------------


def test_clear_regression_fails_with_exit_1_and_writes_artifacts(tmp_path):
    run = squad_run(tmp_path, 400, -0.10, worse=60, better=5)
    pol = policy_file(tmp_path, F1_RULE + "  - {name: squad-em, task: squad-qa, metric: exact_match, max_drop: 1.0}\n")
    proc = cli("gate", run, "--policy", pol)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "gate: FAIL" in proc.stdout and "squad-f1" in proc.stdout and "dropped more than max_drop" in proc.stdout

    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["verdict"] == "fail" and verdict["exit_code"] == 1
    by_name = {r["name"]: r for r in verdict["rules"]}
    assert by_name["squad-f1"]["status"] == "fail" and by_name["squad-em"]["status"] == "fail"
    assert by_name["squad-f1"]["numbers"]["gain_high"] < -1.0
    assert by_name["adapter-has-effect"]["status"] == "pass"
    assert isinstance(verdict["flags"], list)

    root = ET.parse(run / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [r["name"] for r in verdict["rules"]]
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"squad-f1", "squad-em"}
    assert root.get("failures") == "2" and root.get("tests") == str(len(cases))

    summary = (run / "summary.md").read_text()
    assert "FAIL" in summary and "### Deltas" in summary and "Top flips" in summary
    comp = Comparison.from_run_dir(run)
    f1 = next(r for r in comp.rows if r.metric == "f1")
    assert f"**{f1.delta:+.2f}**" in summary  # the summary shows the view model's numbers


def test_noise_sized_change_passes_with_exit_0(tmp_path):
    n = 3000
    acc = binary_pair(n, 0.5, 30, 32, seed=3)  # ~2% of items flip both ways
    run = write_run(tmp_path / "run", [bench_task("mmlu", acc)])
    pol = policy_file(tmp_path, "rules:\n  - {task: mmlu, metric: acc, max_drop: 1.0}\n")
    proc = cli("gate", run, "--policy", pol)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["verdict"] == "pass"
    rule = verdict["rules"][-1]
    assert rule["name"] == "mmlu-acc-max-drop" and rule["numbers"]["gain_low"] >= -1.0


def test_tiny_subset_is_inconclusive(tmp_path):
    run = squad_run(tmp_path, 8, 0.0)
    pol = policy_file(tmp_path, F1_RULE)
    verdict, code = apply_gate(run, pol)
    assert verdict.verdict == "inconclusive" and code == 1
    rule = next(r for r in verdict.rules if r.name == "squad-f1")
    assert rule.status == "inconclusive" and rule.blocking and "straddle" in rule.reason
    assert any(f.code == "too_few_items" and f.severity == "warning" for f in verdict.flags)

    allowed = policy_file(tmp_path, "on_inconclusive: pass\n" + F1_RULE, "allow.yaml")
    proc = cli("gate", run, "--policy", allowed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads((run / "verdict.json").read_text())["verdict"] == "inconclusive"
    skipped = [c for c in ET.parse(run / "junit.xml").getroot().iter("testcase") if c.find("skipped") is not None]
    assert [c.get("name") for c in skipped] == ["squad-f1"]


def test_min_gain_rule(tmp_path):
    run = squad_run(tmp_path, 500, 0.08)
    pol = policy_file(tmp_path, "rules:\n  - {task: squad-qa, metric: f1, min_gain: 2.0}\n"
                                "  - {name: too-much, task: squad-qa, metric: f1, min_gain: 30.0}\n")
    verdict, code = apply_gate(run, pol)
    status = {r.name: r.status for r in verdict.rules}
    assert status == {"adapter-has-effect": "pass", "squad-qa-f1-min-gain": "pass", "too-much": "fail"}
    assert code == 1 and not (run / "verdict.json").exists()


def test_per_subject_floor_fails_on_a_collapsed_subject(tmp_path):
    subjects = [f"subject_{i % 8}" for i in range(4000)]
    base, adapter = binary_pair(4000, 0.5, 20, 20, seed=5)
    collapsed = [i for i, s in enumerate(subjects) if s == "subject_3" and base[i] == 1.0]
    for i in collapsed[: int(0.6 * len(collapsed))]:
        adapter[i] = 0.0
    run = write_run(tmp_path / "run", [bench_task("mmlu", (base, adapter), subjects)])
    pol = policy_file(tmp_path, "rules:\n  - {name: floors, task: mmlu, metric: acc, per_subject_max_drop: 10}\n")
    verdict, code = gate_run(run, pol)
    rule = next(r for r in verdict.rules if r.name == "floors")
    assert rule.status == "fail" and code == 1
    assert [s["subject"] for s in rule.subjects if s["gain"] < -10] == ["subject_3"]
    assert "subject_3" in rule.reason and "Holm" in rule.reason
    comp = verdict.comparison
    subject_rows = comp.subjects_of("ft", "mmlu", "acc")
    assert len(subject_rows) == 8 and all(r.p_holm is not None for r in subject_rows)
    assert "Weakest" in (run / "summary.md").read_text()


def test_per_subject_floor_on_tiny_subjects_is_inconclusive(tmp_path):
    subjects = [f"s{i % 10}" for i in range(50)]
    run = write_run(tmp_path / "run", [bench_task("mmlu", binary_pair(50, 0.5, 2, 2, seed=1), subjects)])
    pol = policy_file(tmp_path, "rules:\n  - {name: floors, task: mmlu, metric: acc, per_subject_max_drop: 10}\n")
    verdict, _ = apply_gate(run, pol)
    rule = next(r for r in verdict.rules if r.name == "floors")
    assert rule.status == "inconclusive" and "enough items" in rule.reason


def test_no_effect_adapter_fails_the_builtin_rule(tmp_path):
    n = 500
    em = binary_pair(n, 0.6, 0, 0)
    f1 = continuous_pair(n, 0.6, 0.0, sd=0.0)
    run = write_run(tmp_path / "run", [squad_task(n, em, f1)], has_effect={"ft": False})
    pol = policy_file(tmp_path, F1_RULE)
    verdict, code = apply_gate(run, pol)
    assert code == 1 and verdict.verdict == "fail"
    builtin = next(r for r in verdict.rules if r.name == "adapter-has-effect")
    assert builtin.status == "fail" and "no effect" in builtin.reason
    assert any(f.code == "no_effect" for f in verdict.flags)

    warn = policy_file(tmp_path, "on_no_effect: warn\n" + F1_RULE, "warn.yaml")
    verdict, code = apply_gate(run, warn)
    assert code == 0 and all(r.rule != "adapter-has-effect" for r in verdict.rules)
    assert any(f.code == "no_effect" for f in verdict.flags)


def test_several_adapters_get_one_result_per_rule_and_adapter(tmp_path):
    n = 2000
    base, good = binary_pair(n, 0.5, 10, 12, seed=1)
    _, bad = binary_pair(n, 0.5, 300, 10, seed=1)
    task = TaskSpec(name="hellaswag", kind="bench", scores={"base": {"acc": base}, "good": {"acc": good},
                                                             "bad": {"acc": bad}})
    run = write_run(tmp_path / "run", [task])
    pol = policy_file(tmp_path, "rules:\n  - {name: hs, task: hellaswag, metric: acc, max_drop: 1.0}\n")
    verdict, code = apply_gate(run, pol)
    status = {r.name: r.status for r in verdict.rules}
    assert status["hs[good]"] == "pass" and status["hs[bad]"] == "fail" and code == 1
    only_good = policy_file(tmp_path, "rules:\n  - {name: hs, task: hellaswag, metric: acc, max_drop: 1.0, "
                                      "adapters: [good]}\n", "good.yaml")
    verdict, code = apply_gate(run, only_good)
    assert code == 0 and [r.name for r in verdict.rules if r.rule == "hs"] == ["hs[good]"]


def test_judge_scores_pair_only_items_scored_for_both(tmp_path):
    n = 300
    base, ft = continuous_pair(n, 0.7, 0.0, sd=0.01, seed=9)
    base = [None if i % 10 == 0 else v for i, v in enumerate(base)]
    ft = [None if i % 15 == 0 else v for i, v in enumerate(ft)]
    em = binary_pair(n, 0.6, 3, 3)
    task = TaskSpec(name="squad-qa", scores={"base": {"exact_match": em[0], "judge:faithfulness": base},
                                             "ft": {"exact_match": em[1], "judge:faithfulness": ft}})
    run = write_run(tmp_path / "run", [task])
    both = sum(1 for i in range(n) if i % 10 and i % 15)
    comp = Comparison.from_run_dir(run)
    row = comp.row("ft", "squad-qa", "judge:faithfulness")
    assert row.n == both and row.test == "sign-flip"
    pol = policy_file(tmp_path, "rules:\n  - {task: squad-qa, metric: 'judge:faithfulness', max_drop: 2.0}\n")
    verdict, code = apply_gate(run, pol)
    assert code == 0, verdict.reasons()


def test_decide_on_clean_uses_only_leak_free_items(tmp_path):
    n = 2000
    base, ft = binary_pair(n, 0.5, 0, 0, seed=2)
    leak = ["clean" if i % 2 else "contaminated" for i in range(n)]
    for i in range(n):  # memorised contaminated items; genuine losses on clean ones
        if leak[i] == "contaminated" and base[i] == 0:
            ft[i] = 1.0
        elif leak[i] == "clean" and base[i] == 1 and i % 5 == 1:
            ft[i] = 0.0
    task = TaskSpec(name="squad-qa", scores={"base": {"exact_match": base}, "ft": {"exact_match": ft}}, leak=leak)
    run = write_run(tmp_path / "run", [task])
    rule = "rules:\n  - {name: em, task: squad-qa, metric: exact_match, max_drop: 1.0}\n"
    all_items, _ = apply_gate(run, policy_file(tmp_path, rule, "all.yaml"))
    clean, code = apply_gate(run, policy_file(tmp_path, "decide_on: clean\n" + rule, "clean.yaml"))
    assert next(r for r in all_items.rules if r.name == "em").status == "pass"
    em = next(r for r in clean.rules if r.name == "em")
    assert em.status == "fail" and em.subset == "clean" and em.numbers["n"] == n // 2 and code == 1

    unlabelled = squad_run(tmp_path, 200, 0.0, name="unlabelled")
    verdict, _ = apply_gate(unlabelled, policy_file(tmp_path, "decide_on: clean\n" + F1_RULE, "c2.yaml"))
    assert any(f.code == "no_leak_labels" for f in verdict.flags)


def test_corpus_metric_is_bootstrapped_at_corpus_level(tmp_path):
    from harness.evaluate.metrics import get_metric

    refs = [[f"the hotel number {i} is in utrecht and is rated {i % 5} out of 5"] for i in range(80)]
    base_p = [f"hotel {i} in utrecht rated {i % 5}" for i in range(80)]
    ft_p = [r[0] if i % 2 else base_p[i] for i, r in enumerate(refs)]
    bleu = get_metric("bleu")
    task = TaskSpec(name="data2text", references=refs, predictions={"base": base_p, "ft": ft_p},
                    scores={"base": {"bleu": bleu.score_items(base_p, refs)},
                            "ft": {"bleu": bleu.score_items(ft_p, refs)}})
    run = write_run(tmp_path / "run", [task])
    row = Comparison.from_run_dir(run).row("ft", "data2text", "bleu")
    assert row.corpus_level and row.test == "corpus-randomization"
    assert row.base == pytest.approx(100 * bleu.aggregate(base_p, refs, [0.0] * 80))
    assert row.ci_low > 0 and row.p_value < 0.01


# ---- refusals and errors (exit 2) ----------------------------------------------------------


def _gate_error(run, pol):
    proc = cli("gate", run, "--policy", pol)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    return errors[0]


def test_mismatched_prompt_hashes_are_refused(tmp_path):
    n = 50
    task = squad_task(n, binary_pair(n, 0.5, 1, 1), continuous_pair(n, 0.5, 0.0))
    task.prompt_hashes = {"ft": [f"other-template-{i}" for i in range(n)]}
    run = write_run(tmp_path / "run", [task])
    (run / "verdict.json").write_text('{"verdict": "pass"}')  # a stale verdict must not survive
    err = _gate_error(run, policy_file(tmp_path, F1_RULE))
    assert "prompted differently" in err and "fix:" in err
    assert not (run / "verdict.json").exists()


def test_different_item_sets_are_refused(tmp_path):
    run = squad_run(tmp_path, 40, 0.0)
    lines = (run / "items.jsonl").read_text().splitlines()
    edited = []
    for line in lines:
        rec = json.loads(line)
        if rec["model"] == "ft" and rec["item_id"] == "squad-qa-0007":
            rec["item_id"] = "squad-qa-9999"
        edited.append(json.dumps(rec))
    (run / "items.jsonl").write_text("\n".join(edited) + "\n")
    with pytest.raises(IncomparableError, match="different items"):
        Comparison.from_run_dir(run)
    assert "different items" in _gate_error(run, policy_file(tmp_path, F1_RULE))


def test_run_without_base_is_refused(tmp_path):
    task = TaskSpec(name="squad-qa", scores={"good": {"f1": [0.5] * 5}})
    run = write_run(tmp_path / "run", [task])
    assert "no base model" in _gate_error(run, policy_file(tmp_path, F1_RULE))


@pytest.mark.parametrize("body, message", [
    ("rules:\n  - {task: squad-qa, metric: f1, max_dorp: 1}\n", "did you mean 'max_drop'"),
    ("rules:\n  - {task: squad-qa, metric: f1}\n", "exactly one of max_drop"),
    ("rules:\n  - {task: squad-qa, metric: f1, max_drop: 1, min_gain: 2}\n", "exactly one of"),
    ("on_inconclusive: maybe\nrules:\n  - {task: squad-qa, metric: f1, max_drop: 1}\n", "on_inconclusive"),
    ("rules: []\n", "rules"),
    ("rules:\n  - {task: squad-qa, metric: f1, max_drop: -1}\n", "rules[0].max_drop"),
    ("rules: [\n", "not valid YAML"),
    ("bootstrap: {resamples: 100}\nrules:\n  - {task: squad-qa, metric: f1, max_drop: 1}\n", "bootstrap.resamples"),
    ("rules:\n  - {task: squad-qa, metric: f11, max_drop: 1}\n", "did you mean 'f1'"),
    ("rules:\n  - {task: mmlu, metric: acc, max_drop: 1}\n", "did not evaluate"),
    ("rules:\n  - {task: squad-qa, metric: f1, per_subject_max_drop: 5}\n", "has no subjects"),
    ("rules:\n  - {task: squad-qa, metric: f1, max_drop: 1, adapters: [nope]}\n", "adapter 'nope'"),
])
def test_policy_errors_are_one_line_exit_2(tmp_path, body, message):
    run = squad_run(tmp_path, 30, 0.0)
    pol = policy_file(tmp_path, body)
    err = _gate_error(run, pol)
    assert message in err and str(pol) in err and "fix:" in err


def test_optional_rule_for_a_missing_task_is_skipped(tmp_path):
    run = squad_run(tmp_path, 300, 0.05)
    pol = policy_file(tmp_path, F1_RULE + "  - {name: hs, task: hellaswag, kind: bench, metric: acc, "
                                          "max_drop: 1, optional: true}\n")
    verdict, code = apply_gate(run, pol)
    assert code == 0 and {r.name: r.status for r in verdict.rules}["hs"] == "skipped"


def test_missing_run_log_and_policy_exit_2(tmp_path):
    pol = policy_file(tmp_path, F1_RULE)
    assert "no run.json" in _gate_error(tmp_path / "nowhere", pol)
    run = squad_run(tmp_path, 10, 0.0)
    assert "not found" in _gate_error(run, tmp_path / "missing.yaml")


def test_preflight_catches_rules_the_run_will_not_evaluate():
    policy = load_policy(Path(__file__).parents[1] / "ci" / "gate.yaml")
    preflight(policy, suites=["squad-qa"], benches=["mmlu", "hellaswag"])
    with pytest.raises(ConfigError, match="hellaswag-acc-non-inferior.*--bench hellaswag"):
        preflight(policy, suites=["squad-qa"], benches=["mmlu"])


def test_example_policy_loads():
    policy = load_policy(Path(__file__).parents[1] / "ci" / "gate.yaml")
    checks = {(r.task, r.metric, r.check) for r in policy.rules}
    assert ("squad-qa", "f1", "max_drop") in checks and ("mmlu", "acc", "per_subject_max_drop") in checks
    assert ("hellaswag", "acc", "max_drop") in checks


# ---- noise floor -----------------------------------------------------------------------------


def _noise_doc(prompt_hash: str | None, drift: float) -> dict:
    from harness.analysis.noise import SCHEMA

    fp = {"name": "squad-qa", "version": "1"}
    if prompt_hash:
        fp["prompt_hash"] = prompt_hash
    return {"schema": SCHEMA, "model_name": "base", "batch_sizes": [16, 3],
            "tasks": [{"kind": "suite", "task": "squad-qa", "fingerprint": fp, "n": 100,
                       "prediction_flip_share": 0.02,
                       "metrics": {"f1": {"first": 60.0, "second": 60.0 + drift, "drift_points": drift,
                                          "flip_share": 0.02}}}]}


def test_threshold_below_noise_floor_is_flagged(tmp_path):
    run = squad_run(tmp_path, 300, 0.05)
    run_fp = json.loads((run / "run.json").read_text())["provenance"]["suites"]["squad-qa"]["prompt_hash"]
    noise = tmp_path / "noise.json"
    noise.write_text(json.dumps(_noise_doc(run_fp, 1.7)))
    proc = cli("gate", run, "--policy", policy_file(tmp_path, F1_RULE), "--noise", noise)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "below the noise floor" in proc.stdout
    flags = json.loads((run / "verdict.json").read_text())["flags"]
    assert [f["code"] for f in flags if f["code"].startswith("noise")] == ["noise_floor"]

    in_policy = policy_file(tmp_path, "noise_floor: noise.json\n" + F1_RULE, "p2.yaml")  # relative to the policy
    verdict, _ = apply_gate(run, in_policy)
    assert verdict.noise_floor == str(noise) and any(f.code == "noise_floor" for f in verdict.flags)

    noise.write_text(json.dumps(_noise_doc("another-prompt-version", 1.7)))
    verdict, _ = apply_gate(run, in_policy)
    assert [f.code for f in verdict.flags if f.code.startswith("noise")] == ["noise_floor_version"]

    noise.write_text(json.dumps(_noise_doc(run_fp, 0.2)))
    verdict, _ = apply_gate(run, in_policy)
    assert not [f for f in verdict.flags if f.code.startswith("noise")]


def _fake_execute(flip_every: int):
    """Stands in for harness.evaluate.run.execute: writes a one-model run whose answers depend on batch size."""
    seen = []

    def execute(cfg, warn=None):
        seen.append(cfg)
        n = 40
        flip = cfg.batch_size != 16
        em = [float(i % 2 == 0) for i in range(n)]
        if flip:
            em = [1.0 - v if i % flip_every == 0 else v for i, v in enumerate(em)]
        name = cfg.adapters[0] if cfg.adapters else "base"
        task = TaskSpec(name="squad-qa", scores={name: {"exact_match": em}})
        write_run(cfg.out, [task])
        meta = json.loads((cfg.out / "run.json").read_text())
        meta["provenance"]["batch_size"] = cfg.batch_size
        (cfg.out / "run.json").write_text(json.dumps(meta))
        return meta

    return execute, seen


def test_calibrate_records_drift_and_gate_reads_it(tmp_path, monkeypatch):
    import harness.evaluate.run

    execute, seen = _fake_execute(flip_every=10)
    monkeypatch.setattr(harness.evaluate.run, "execute", execute)
    out = tmp_path / "noise.json"
    from harness.analysis.noise import load_noise
    from harness.evaluate.calibrate import calibrate

    doc = calibrate("tiny", out=out, suites=["squad-qa"], batch_sizes=(16, 3), limit=40)
    assert [c.batch_size for c in seen] == [16, 3] and all(not c.use_cache for c in seen)
    assert [c.order_seed for c in seen] == [None, 1]  # the second run also shuffles the item order
    assert doc["item_order"] == ["length-sorted", "shuffled (seed 1)"]
    assert all(not hasattr(c, "benches") or not c.benches for c in seen)  # --bench not given: not passed
    entry = doc["tasks"][0]
    assert entry["metrics"]["exact_match"]["flip_share"] == pytest.approx(4 / 40)
    assert entry["metrics"]["exact_match"]["drift_points"] == pytest.approx(100 * 4 / 40)  # 4 of 20 right items lost
    assert entry["prediction_flip_share"] == pytest.approx(4 / 40)
    assert doc["batch_sizes"] == [16, 3]
    assert load_noise(out).lookup("suite", "squad-qa", "exact_match") is not None


def test_calibrate_with_bench_needs_runconfig_support(tmp_path, monkeypatch):
    import dataclasses

    import harness.evaluate.run
    from harness.evaluate.calibrate import calibrate

    execute, seen = _fake_execute(flip_every=5)
    monkeypatch.setattr(harness.evaluate.run, "execute", execute)
    has_benches = "benches" in {f.name for f in dataclasses.fields(harness.evaluate.run.RunConfig)}
    if has_benches:
        calibrate("tiny", out=tmp_path / "n.json", suites=["squad-qa"], benches=["mmlu"])
        assert seen[0].benches == ["mmlu"]
    else:
        with pytest.raises(ConfigError, match="cannot run benchmarks"):
            calibrate("tiny", out=tmp_path / "n.json", suites=[], benches=["mmlu"])
    with pytest.raises(ConfigError, match="must differ"):
        calibrate("tiny", out=tmp_path / "n.json", suites=["squad-qa"], batch_sizes=(4, 4))


def test_calibrate_cli_validates_before_loading_models(tmp_path):
    proc = cli("calibrate", "tiny", "--suite", "squad-qa", "--out", tmp_path / "n.json", "--batch-sizes", "8")
    assert proc.returncode == 2 and "--batch-sizes" in proc.stderr


# ---- speed, imports, determinism -------------------------------------------------------------


def test_gate_does_not_import_torch_and_is_fast(tmp_path):
    subjects = [f"s{i % 57}" for i in range(5700)]
    n = 1000
    tasks = [squad_task(n, binary_pair(n, 0.6, 20, 25), continuous_pair(n, 0.6, 0.0)),
             bench_task("mmlu", binary_pair(5700, 0.3, 100, 110, seed=3), subjects),
             bench_task("hellaswag", binary_pair(4000, 0.4, 80, 75, seed=4))]
    run = write_run(tmp_path / "run", tasks)
    pol = Path(__file__).parents[1] / "ci" / "gate.yaml"
    code = ("import sys, runpy\n"
            f"sys.argv = ['harness', 'gate', {str(run)!r}, '--policy', {str(pol)!r}, '--quiet']\n"
            "try:\n    runpy.run_module('harness.cli', run_name='__main__')\n"
            "except SystemExit as e:\n    print('EXIT', e.code)\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    wall = time.perf_counter() - started
    print(f"harness gate wall time: {wall:.2f}s")  # sanity print only; the machine is shared
    assert "TORCH False" in proc.stdout, proc.stdout + proc.stderr
    assert "EXIT" in proc.stdout and "gate:" in proc.stdout


def test_same_seed_same_verdict(tmp_path):
    run = squad_run(tmp_path, 300, -0.005)
    pol = policy_file(tmp_path, F1_RULE)
    first, _ = gate_run(run, pol)
    a = json.loads((run / "verdict.json").read_text())
    second, _ = gate_run(run, pol)
    b = json.loads((run / "verdict.json").read_text())
    assert a["rules"] == b["rules"] and a["deltas"] == b["deltas"]
    assert first.comparison.to_dict()["rows"] == second.comparison.to_dict()["rows"]


def test_apply_gate_library_api(tmp_path):
    run = squad_run(tmp_path, 300, 0.05)
    verdict, code = gate_run(run, policy_file(tmp_path, F1_RULE))
    assert code == 0 and verdict.exit_code == 0 and verdict.verdict == "pass"
    assert {p.name for p in run.iterdir()} >= {"summary.md", "junit.xml", "verdict.json"}
    view = verdict.comparison.to_dict()
    assert {r["metric"] for r in view["rows"]} == {"exact_match", "f1"}
    assert all(isinstance(r["ci_low"], float) for r in view["rows"])
    with pytest.raises(HarnessError):
        gate_run(tmp_path / "missing", policy_file(tmp_path, F1_RULE))


def test_calibrate_end_to_end_on_a_tiny_model(tmp_path, tiny_dir):
    from tests.test_run import make_suite

    suite = make_suite(tmp_path / "arith", n=6, max_new_tokens=4)
    out = tmp_path / "noise.json"
    proc = cli("calibrate", tiny_dir, "--suite", suite, "--out", out, "--batch-sizes", "4,1", "--limit", 6)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["batch_sizes"] == [4, 1] and doc["model_name"] == "base"
    entry = doc["tasks"][0]
    assert entry["task"] == "arith" and entry["n"] == 6
    assert set(entry["metrics"]) == {"exact_match", "f1"}
    assert all(m["drift_points"] is not None and m["drift_points"] >= 0 for m in entry["metrics"].values())
    assert "drift" in proc.stdout
