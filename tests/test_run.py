"""End to end through the CLI on a tiny model: run log contract, cache, resume, errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness

HARNESS = [sys.executable, "-m", "harness.cli"]


def make_suite(folder: Path, n: int = 12, max_new_tokens: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "data.jsonl", "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"qid": f"q{i:03d}", "question": f"What is {i} plus {i}? " + "pad " * (i % 5),
                                 "answer": [str(2 * i)]}) + "\n")
    (folder / "suite.yaml").write_text(f"""\
name: {folder.name}
version: "1"
data: {{file: data.jsonl}}
fields: {{id: qid, references: answer}}
prompt: "Q: {{{{ question }}}}\\nA:"
generation: {{max_new_tokens: {max_new_tokens}, stop: ["\\n"]}}
metrics: [exact_match, f1]
""")
    return folder


def cli(*args, check=True, **kw):
    proc = subprocess.run([*HARNESS, *map(str, args)], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_compare_writes_the_run_log_contract(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith")
    out = tmp_path / "run"
    proc = cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--limit", 10, "--out", out, "--batch-size", 4)
    assert "run log:" in proc.stdout and str(out / "run.json") in proc.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["schema_version"] == 1 and meta["models"] == ["base", "ft"]
    prov = meta["provenance"]
    assert len(prov["base"]["sha256"]) == 64 and len(prov["adapters"]["ft"]["sha256"]) == 64
    assert prov["adapters"]["ft"]["has_effect"] is True
    assert len(prov["suites"]["arith"]["data_hash"]) == 64
    assert {"torch", "transformers", "peft"} <= set(prov["libraries"])
    assert set(meta["aggregates"]["suites"]["arith"]) == {"base", "ft"}
    lines = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(lines) == 20
    for rec in lines:
        assert {"model", "kind", "task", "item_id", "prediction", "scores", "prompt_hash"} <= set(rec)
        assert rec["kind"] == "suite" and rec["task"] == "arith"
        assert set(rec["scores"]) == {"exact_match", "f1"}
    assert {r["item_id"] for r in lines} == {f"q{i:03d}" for i in range(10)}  # the dataset's own ids
    preds = {(r["model"], r["item_id"]): r["prediction"] for r in lines}
    assert any(preds[("base", i)] != preds[("ft", i)] for i in (f"q{k:03d}" for k in range(10)))

    run = harness.load_run(out)
    assert len(run.items) == 20 and set(run.items["model"]) == {"base", "ft"}
    assert len(run.scores) == 40 and set(run.scores["metric"]) == {"exact_match", "f1"}
    f1 = run.scores[(run.scores.model == "base") & (run.scores.metric == "f1")]["value"].mean()
    assert f1 == pytest.approx(meta["aggregates"]["suites"]["arith"]["base"]["f1"])

    again = cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--limit", 10, "--out", out, "--batch-size", 4)
    meta2 = json.loads((out / "run.json").read_text())
    assert meta2["timing"]["items_computed"] == 0 and meta2["timing"]["items_cached"] == 20, again.stdout
    assert (out / "items.jsonl").read_text() == "\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n"


def test_run_with_adapter_evaluates_only_the_adapter(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith")
    out = tmp_path / "run"
    cli("run", tiny_dir, "--adapter", tiny_lora, "--suite", suite, "--limit", 4, "--out", out)
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["good"]


def _strip_latency(text: str) -> list[dict]:
    rows = [json.loads(line) for line in text.splitlines()]
    for r in rows:
        r.pop("latency_s")
    return rows


def test_resume_after_kill_gives_identical_items(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "long", n=160, max_new_tokens=40)
    out = tmp_path / "run"
    args = ["compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", out, "--batch-size", 2]
    proc = subprocess.Popen([*HARNESS, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = Path(os.environ["HARNESS_HOME"]) / "cache" / "results.sqlite"
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    rows = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            except sqlite3.Error:
                rows = 0
            if rows >= 10:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; make the suite longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists()
    with sqlite3.connect(db) as con:
        done = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 0 < done < 320

    cli(*args)
    meta = json.loads((out / "run.json").read_text())
    assert meta["timing"]["items_cached"] == done
    assert meta["timing"]["items_computed"] == 320 - done  # only unfinished batches recomputed
    resumed = (out / "items.jsonl").read_text()

    fresh_home = tmp_path / "fresh-home"
    fresh_home.mkdir()
    (fresh_home / "assets").symlink_to(Path(os.environ["HARNESS_HOME"]) / "assets")
    env = {**os.environ, "HARNESS_HOME": str(fresh_home)}
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", tmp_path / "fresh", "--batch-size", 2, env=env)
    assert _strip_latency(resumed) == _strip_latency((tmp_path / "fresh" / "items.jsonl").read_text())


@pytest.mark.parametrize("args, message", [
    (["run", "{tiny}", "--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
    (["run", "{tmp}/missing-model", "--suite", "data2text"], "not found"),
    (["compare", "{tiny}", "{tmp}", "--suite", "data2text"], "no adapter_config.json"),
    (["run", "{tiny}", "--suite", "data2text", "--limit", "0"], "--limit must be at least 1"),
    (["run", "{tiny}", "--suite", "data2text", "--dtype", "int3"], "unknown dtype"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, tiny_dir, args, message):
    args = [a.format(tiny=tiny_dir, tmp=tmp_path) for a in args]
    proc = cli(*args, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 1


def test_other_run_in_out_dir_is_not_overwritten(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "arith")
    out = tmp_path / "run"
    cli("run", tiny_dir, "--suite", suite, "--limit", 2, "--out", out)
    before = (out / "items.jsonl").read_text()
    proc = cli("run", tiny_dir, "--suite", suite, "--limit", 3, "--out", out, check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (out / "items.jsonl").read_text() == before
    cli("run", tiny_dir, "--suite", suite, "--limit", 3, "--out", out, "--force")
    assert len((out / "items.jsonl").read_text().splitlines()) == 3


def test_debug_shows_traceback(tmp_path, tiny_dir):
    proc = cli("--debug", "run", tiny_dir, "--suite", "no-such-suite", "--out", tmp_path / "o", check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
