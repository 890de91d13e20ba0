"""`harness ab` end to end on the tiny model: two seeds trained, leak-checked, compared,
gated and reported, with the per-seed spread in run.json."""

from __future__ import annotations

import json

from tests.test_run import cli, make_suite
from tests.test_train import chat_rows, write_jsonl


def test_ab_two_seeds_trains_compares_gates_and_reports(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "arith", n=6)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(offset=100))  # disjoint from the eval items
    policy = tmp_path / "gate.yaml"
    policy.write_text("version: 1\non_inconclusive: pass\nrules:\n"
                      "  - {task: arith, metric: f1, max_drop: 50.0}\n")
    out = tmp_path / "ab"
    proc = cli("ab", tiny_dir, "--train", train, "--suite", suite, "--seeds", "0,1", "--max-steps", 2,
               "--policy", policy, "--out", out, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["base", "seed0", "seed1"]
    assert set(meta["training"]) == {"seed0", "seed1"}
    assert meta["training"]["seed0"]["seed"] == 0 and meta["training"]["seed1"]["seed"] == 1
    assert meta["training"]["seed0"]["data"]["sha256"] == meta["training"]["seed1"]["data"]["sha256"]
    rows = {(r["task"], r["metric"]): r for r in meta["ab"]["summary"]}
    f1 = rows[("arith", "f1")]
    assert f1["seeds"] == 2 and len(f1["gains_points"]) == 2
    assert abs(f1["mean_points"] - sum(f1["gains_points"]) / 2) < 1e-6
    assert "leaks" in meta and (out / "leaks.jsonl").is_file()
    assert (out / "verdict.json").is_file() and (out / "report.html").is_file()
    assert "training" in (out / "report.html").read_text().lower()
