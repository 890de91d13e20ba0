"""The shared pipeline: preflight fails before any training or model loading; the gate writes
its CI files only through the pipeline; compare and ab both end in gate -> CI files -> report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness.ab
from harness.ab import ABConfig, run_ab
from harness.analysis.gate import apply_gate
from harness.errors import ConfigError
from harness.analysis.policy import load_policy
from harness.pipeline import GateSetup, finish, gate_run, preflight
from tests.runlog_factory import binary_pair, continuous_pair, squad_task, write_run
from tests.test_run import make_suite

MISSING_BENCH = "rules:\n  - {name: mmlu-floor, task: mmlu, kind: bench, metric: acc, max_drop: 1.0}\n"
F1_RULE = "rules:\n  - {name: squad-f1, task: squad-qa, metric: f1, max_drop: 1.0}\n"


def _policy(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(body)
    return path


def test_ab_preflights_the_policy_before_training(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(harness.ab, "train_arms", lambda ab, log: trained.append(ab) or ([], {}))
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "a", "completion": "b"}\n')
    suite = make_suite(tmp_path / "arith", n=4)
    cfg = ABConfig(base="tiny", train=train, out=tmp_path / "ab", suites=[str(suite)])
    with pytest.raises(ConfigError, match="mmlu.*will not evaluate"):
        run_ab(cfg, policy=_policy(tmp_path, MISSING_BENCH), log=lambda m: None)
    assert trained == [] and not (tmp_path / "ab").exists()


def test_compare_preflights_the_policy_before_loading_models(tmp_path):
    suite = make_suite(tmp_path / "arith", n=4)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "compare", "no-such-model", "ft=nowhere",
                           "--suite", str(suite), "--policy", str(_policy(tmp_path, MISSING_BENCH)),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "mmlu" in proc.stderr and "will not evaluate" in proc.stderr, proc.stderr
    assert not (tmp_path / "run").exists()


def test_preflight_fails_on_a_missing_noise_file(tmp_path):
    with pytest.raises(ConfigError, match="noise-floor file"):
        preflight(_policy(tmp_path, F1_RULE), tmp_path / "nope.json", benches=["squad-qa"])


def test_apply_gate_writes_nothing_and_the_pipeline_writes_ci_files_then_the_report(tmp_path):
    n = 200
    run = write_run(tmp_path / "run", [squad_task(n, binary_pair(n, 0.5, 2, 2), continuous_pair(n, 0.5, 0.02))])
    policy = _policy(tmp_path, F1_RULE)
    apply_gate(run, policy)
    assert sorted(p.name for p in run.iterdir()) == ["items.jsonl", "run.json"]
    lines = []
    code = finish(run, GateSetup(policy=load_policy(policy)), lines.append)
    verdict, again = gate_run(run, policy)
    assert code == again == verdict.exit_code
    assert {"summary.md", "junit.xml", "verdict.json", "report.html"} <= {p.name for p in run.iterdir()}
    assert lines[0].startswith("gate: ") and lines[-1] == f"report: {run / 'report.html'}"
