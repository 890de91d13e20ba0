"""Data-parallel runs: two processes (gloo, launched by torchrun) give the run a single
process gives, and both ranks' cache writes are usable by the next run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_run import cli, make_suite

TORCHRUN = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", "2", "--master-port", "29517",
            "-m", "harness"]


def _items(folder: Path) -> list[dict]:
    rows = [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("latency_s", None)  # wall time of the decode, different in every run
    return rows


def test_two_ranks_write_the_single_process_run(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=10, max_new_tokens=5)
    policy = tmp_path / "gate.yaml"
    policy.write_text("version: 1\non_inconclusive: pass\non_no_effect: warn\nrules:\n"
                      "  - {task: arith, metric: f1, max_drop: 5.0}\n"
                      "  - {task: hellaswag, kind: bench, metric: acc, max_drop: 5.0}\n")
    args = ["compare", str(tiny_dir), f"ft={tiny_lora}", "--suite", str(suite), "--bench", "hellaswag",
            "--limit", "6", "--batch-size", "2", "--device", "cpu", "--policy", str(policy)]
    cli(*args, "--no-cache", "--out", tmp_path / "single")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*TORCHRUN, *args, "--out", str(tmp_path / "dp")], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run log:") == 1  # rank 0 alone reports and writes
    single, dp = _items(tmp_path / "single"), _items(tmp_path / "dp")
    assert len(single) == 2 * (6 + 6) and single == dp
    a = json.loads((tmp_path / "single" / "run.json").read_text())
    b = json.loads((tmp_path / "dp" / "run.json").read_text())
    assert b["provenance"]["distributed"] == {"world_size": 2} and a["provenance"]["distributed"] == {"world_size": 1}
    for meta in (a, b):
        for key in ("created", "command", "timing"):
            meta.pop(key)
        meta["provenance"].pop("distributed")
        for per_model in meta["aggregates"]["suites"].values():
            for agg in per_model.values():
                agg.pop("mean_latency_s")
    assert a == b
    verdicts = [json.loads((tmp_path / d / "verdict.json").read_text()) for d in ("single", "dp")]
    for v in verdicts:
        v.pop("created", None)
        v.pop("run_dir")
    assert verdicts[0] == verdicts[1] and verdicts[0]["rules"]
    # both ranks wrote their share to the one result cache: a single process now computes nothing
    cli(*args, "--out", tmp_path / "again")
    again = json.loads((tmp_path / "again" / "run.json").read_text())["timing"]
    assert again["items_computed"] == 0 and again["items_cached"] > 0
    assert _items(tmp_path / "again") == single
