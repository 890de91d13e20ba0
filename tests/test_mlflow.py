"""`--log-to mlflow`: runs land in a real MLflow file store and are read back with MLflow's own
client; a missing package or an unknown target is one line before any model loads; a
tracker that fails after the run is written costs a warning, never the run or the gate's code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import harness.ab
from harness.ab import ABConfig, run_ab
from harness.analysis.policy import load_policy
from harness.cli import main
from harness.errors import ConfigError
from harness.outputs.trackers import prepare
from harness.outputs.trackers.flatten import key
from harness.outputs.trackers.mlflow import open_tracker
from harness.pipeline import GateSetup, finish
from tests.runlog_factory import TaskSpec, write_run
from tests.test_bad_input import tripwire  # noqa: F401  (fixture: loading a model fails the test)
from tests.test_run import make_suite

# mlflow-skinny is in the dev extra (`make setup` installs it): these tests import it where
# they read the store back, and fail rather than skip when it is missing.

ARTIFACTS = {"run.json", "verdict.json", "summary.md", "report.html"}
# The hellaswag rule fails: the adapter loses 10 of 20 right answers (-50 points).
POLICY = """rules:
  - {name: arith-em, task: arith, metric: exact_match, max_drop: 5}
  - {name: hellaswag-acc, task: hellaswag, kind: bench, metric: acc, max_drop: 5}
"""


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch):
    """No tracking settings from the machine; the file-store opt-in the code sets is undone after."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_ALLOW_FILE_STORE",
                 "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)


def _client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.resolve().as_uri())


def _runs(store: Path) -> list:
    client = _client(store)
    exp = client.get_experiment_by_name("harness")
    assert exp is not None, f"no 'harness' experiment in {store}"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _expected_aggregates(run_dir: Path) -> dict[str, float]:
    """Every aggregate of run.json under its MLflow name, read from the raw JSON (not via harness)."""
    meta = json.loads((run_dir / "run.json").read_text())
    out = {}
    for section, kind in (("suites", "suite"), ("bench", "bench")):
        for task, per_model in meta["aggregates"].get(section, {}).items():
            for model, agg in per_model.items():
                for metric, value in agg.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        out[f"{kind}/{task.replace('~', '_')}/{model}/{metric}"] = float(value)
    return out


def _synthetic(tmp_path: Path) -> Path:
    """Three tasks with hand-set scores: arith EM 0.5 -> 0.75, f1 0.4 -> 0.6; the perturbed
    task's consistency 1.0 -> 0.5; hellaswag acc 0.5 -> 0.0."""
    arith = TaskSpec(name="arith", scores={
        "base": {"exact_match": [1.0, 0.0] * 10, "f1": [0.4] * 20},
        "ft": {"exact_match": [1.0, 1.0, 1.0, 0.0] * 5, "f1": [0.6] * 20}})
    perturbed = TaskSpec(name="arith~perturbed", scores={
        "base": {"consistent": [1.0] * 20}, "ft": {"consistent": [1.0, 0.0] * 10}})
    hellaswag = TaskSpec(name="hellaswag", kind="bench", scores={
        "base": {"acc": [1.0] * 10 + [0.0] * 10}, "ft": {"acc": [0.0] * 20}},
        predictions={"base": ["0"] * 20, "ft": ["1"] * 20})
    return write_run(tmp_path / "run", [arith, perturbed, hellaswag])


def test_finish_logs_params_metrics_verdict_and_artifacts_to_a_real_store(tmp_path, capsys):
    run = _synthetic(tmp_path)
    (tmp_path / "gate.yaml").write_text(POLICY)
    store = tmp_path / "mlruns"
    lines = []
    code = finish(run, GateSetup(policy=load_policy(tmp_path / "gate.yaml")), lines.append,
                  trackers=prepare(["mlflow"], str(store)))
    assert code == 1 and capsys.readouterr().err == ""  # the failing hellaswag rule; no tracker warning
    (logged,) = _runs(store)
    assert lines[-1] == f"mlflow: run {logged.info.run_id} in experiment 'harness' at {store.resolve().as_uri()}"
    got = _client(store).get_run(logged.info.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "run"

    p = got.data.params
    assert (p["base"], p["adapters"], p["suites"], p["benches"], p["seed"]) == ("tiny", "ft", "arith,arith~perturbed", "", "0")
    assert p["policy"] == str(tmp_path / "gate.yaml") and len(p["adapter_sha256/ft"]) == 64

    m = got.data.metrics
    expected = _expected_aggregates(run)
    assert {k: m[k] for k in expected} == expected and len(expected) == 14  # 2 models x (3 + 2 + 2: metrics and n per task)
    assert m["suite/arith/ft/exact_match"] == 0.75 and m["bench/hellaswag/ft/acc"] == 0.0
    assert m["suite/arith/base/n"] == 20.0
    assert m["delta_pts/suite/arith/ft/exact_match"] == pytest.approx(25.0)
    assert m["delta_pts/suite/arith/ft/f1"] == pytest.approx(20.0)
    assert m["delta_pts/suite/arith_perturbed/ft/consistent"] == pytest.approx(-50.0)
    assert m["delta_pts/bench/hellaswag/ft/acc"] == pytest.approx(-50.0)
    assert (m["gate/pass"], m["gate/exit_code"], m["gate/rules_fail"]) == (0.0, 1.0, 1.0)
    verdict = json.loads((run / "verdict.json").read_text())
    assert m["gate/rules_pass"] == sum(r["status"] == "pass" for r in verdict["rules"]) >= 1
    assert set(m) == set(expected) | {k for k in m if k.startswith(("delta_pts/", "gate/"))}

    t = got.data.tags
    assert (t["harness.verdict"], t["harness.rule.hellaswag-acc"], t["harness.rule.arith-em"]) == ("fail", "fail", "pass")
    assert t["harness.run_dir"] == str(run.resolve())

    client = _client(store)
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == ARTIFACTS
    copy = Path(client.download_artifacts(logged.info.run_id, "run.json", str(tmp_path / "dl")))
    assert copy.read_bytes() == (run / "run.json").read_bytes()


def test_a_tracker_failure_warns_and_keeps_the_run_and_the_gate_exit_code(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    run = _synthetic(tmp_path)
    (tmp_path / "gate.yaml").write_text(POLICY)
    store = tmp_path / "mlruns"
    trackers = prepare(["mlflow"], str(store))

    def full_disk(self, run_id, local_path, artifact_path=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MlflowClient, "log_artifact", full_disk)
    lines = []
    code = finish(run, GateSetup(policy=load_policy(tmp_path / "gate.yaml")), lines.append, trackers=trackers)
    assert code == 1  # the gate's, not the tracker's
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: --log-to mlflow failed (OSError:"), err
    assert f"the run folder {run} is complete" in err[0]
    assert not any(line.startswith("mlflow:") for line in lines)
    assert ARTIFACTS <= {f.name for f in run.iterdir()}
    (logged,) = _runs(store)
    assert logged.info.status == "FAILED"  # marked, not left running


def test_compare_and_run_on_the_tiny_model_log_through_the_cli(tmp_path, tiny_dir, tiny_lora, capsys):
    suite = make_suite(tmp_path / "arith", n=4)
    store = tmp_path / "store"
    common = ["--suite", str(suite), "--limit", "4", "--batch-size", "4", "--log-to", "mlflow", "--mlflow-uri", str(store)]
    with pytest.raises(SystemExit) as done:
        main(["compare", str(tiny_dir), f"ft={tiny_lora}", *common, "--out", str(tmp_path / "cmp")])
    assert done.value.code == 0, capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["run", str(tiny_dir), *common, "--out", str(tmp_path / "base")])
    assert done.value.code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.count("mlflow: run ") == 2

    cmp_run, base_run = _runs(store)
    client = _client(store)
    assert {a.path for a in client.list_artifacts(cmp_run.info.run_id)} == {"run.json", "report.html"}  # not gated
    assert {a.path for a in client.list_artifacts(base_run.info.run_id)} == {"run.json"}
    for logged, folder in ((cmp_run, tmp_path / "cmp"), (base_run, tmp_path / "base")):
        expected = _expected_aggregates(folder)
        assert expected and {k: logged.data.metrics[k] for k in expected} == expected
        assert not any(k.startswith("gate/") for k in logged.data.metrics)
    assert cmp_run.data.params["adapters"] == f"ft={tiny_lora}" and cmp_run.data.params["limit"] == "4"
    assert base_run.data.params["adapters"] == "" and base_run.data.params["base"] == str(tiny_dir)


def test_ab_logs_its_seed_summary(tmp_path, tiny_dir, tiny_lora, monkeypatch):
    # Training is replaced by an existing adapter: what is tested is that ab's finished run,
    # seed summary included, reaches the tracker.
    monkeypatch.setattr(harness.ab, "train_arms",
                        lambda ab, log: ([f"seed0={tiny_lora}"], {"seed0": {"arm": "A", "seed": 0}}))
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "What is 1 plus 1?", "completion": "2"}\n')
    suite = make_suite(tmp_path / "arith", n=4)
    store = tmp_path / "store"
    cfg = ABConfig(base=str(tiny_dir), train=train, out=tmp_path / "ab", suites=[str(suite)], limit=4)
    meta, code = run_ab(cfg, log=lambda m: None, trackers=prepare(["mlflow"], str(store)))
    assert code == 0
    (logged,) = _runs(store)
    gain = next(g for g in meta.ab.summary if g.metric == "f1")
    assert logged.data.metrics["ab_gain_pts/suite/arith/A/f1/mean"] == pytest.approx(gain.mean_points)
    assert logged.data.metrics["delta_pts/suite/arith/seed0/f1"] == pytest.approx(gain.gains_points[0], abs=1e-3)


def _one_line_exit_2(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("command", ["compare", "run", "ab", "gate"])
def test_missing_mlflow_is_one_line_before_any_model_loads(command, tmp_path, tiny_dir, tiny_lora, tripwire,
                                                           monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    suite = str(make_suite(tmp_path / "arith", n=4))
    out = tmp_path / "out"
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "gate.yaml").write_text(POLICY)
    argv = {"compare": ["compare", str(tiny_dir), f"ft={tiny_lora}", "--suite", suite, "--out", str(out)],
            "run": ["run", str(tiny_dir), "--suite", suite, "--out", str(out)],
            "ab": ["ab", str(tiny_dir), "--train", str(train), "--suite", suite, "--out", str(out)],
            "gate": ["gate", str(_synthetic(tmp_path)), "--policy", str(tmp_path / "gate.yaml")]}[command]
    line = _one_line_exit_2([*argv, "--log-to", "mlflow"], capsys)
    assert line.startswith("error: --log-to mlflow needs the mlflow package") and "pip install 'harness[mlflow]'" in line
    assert not out.exists() and not (tmp_path / "mlruns").exists()
    if command == "gate":
        assert not (tmp_path / "run" / "verdict.json").exists()  # refused before gating


@pytest.mark.parametrize("value, says", [
    ("wandb", "unknown --log-to target 'wandb'"),
    ("mlfow", "did you mean 'mlflow'?"),
    ("mlflow,tensorboard", "unknown --log-to target 'tensorboard'"),
])
def test_unknown_log_to_target_is_one_line(value, says, tmp_path, tiny_dir, tiny_lora, tripwire, capsys):
    suite = str(make_suite(tmp_path / "arith", n=4))
    line = _one_line_exit_2(["compare", str(tiny_dir), f"ft={tiny_lora}", "--suite", suite,
                             "--out", str(tmp_path / "out"), "--log-to", value], capsys)
    assert line.startswith("error: ") and says in line and "fix: pass --log-to mlflow" in line
    assert not (tmp_path / "out").exists()


def test_bad_mlflow_uri_and_uri_without_target_are_one_line(tmp_path, tiny_dir, tripwire, capsys):
    suite = str(make_suite(tmp_path / "arith", n=4))
    (tmp_path / "afile").write_text("mine\n")
    base = ["run", str(tiny_dir), "--suite", suite, "--out", str(tmp_path / "out")]
    line = _one_line_exit_2([*base, "--log-to", "mlflow", "--mlflow-uri", str(tmp_path / "afile")], capsys)
    assert f"--mlflow-uri {tmp_path / 'afile'} is a file, not a folder" in line
    line = _one_line_exit_2([*base, "--mlflow-uri", str(tmp_path / "store")], capsys)
    assert "--mlflow-uri is set but --log-to does not name mlflow" in line
    assert (tmp_path / "afile").read_text() == "mine\n" and not (tmp_path / "store").exists()


def test_store_defaults_to_mlruns_here_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert open_tracker(None).uri == (tmp_path / "mlruns").as_uri()
    assert not (tmp_path / "mlruns").exists()  # checked, not created, until a run is logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    tracker = open_tracker(None)
    assert (tracker.uri, tracker.experiment) == ((tmp_path / "elsewhere").as_uri(), "team")
    assert open_tracker(f"file://{tmp_path}/flag").uri == (tmp_path / "flag").as_uri()  # the flag wins
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuch://x")
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI nosuch://x: MLflow cannot open"):
        open_tracker(None)


def test_a_tracking_server_that_is_down_fails_up_front_and_quickly():
    import os
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"--mlflow-uri http://127.0.0.1:{port}: MLflow cannot open this tracking store"):
        open_tracker(f"http://127.0.0.1:{port}")
    assert time.monotonic() - start < 60  # MLflow's default retries wait about 4 minutes
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # the probe's settings are not left behind


def test_names_are_made_safe_for_tracker_stores():
    assert key("suite", "arith~perturbed", "ft", "json_schema:json-extract") == "suite/arith_perturbed/ft/json_schema:json-extract"
    assert key("suite", "t", "m", "evaluate:./metrics/bleu.py") == "suite/t/m/evaluate:._metrics_bleu.py"
    assert key("suite", "..", "a b", "") == "suite/_../a b/_"
