"""The GPU check's Python, run on the CPU with a tiny model so that it cannot rot between the
rare sessions that have a GPU (bench/gpu.sh runs it there with --device cuda)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_every_section_on_cpu():
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--models", "tiny", "--budget-s", "150"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-3000:]
    assert "SKIPPED" not in out and "FAILED" not in out and "STOPPED" not in out, out
    parity = re.findall(r"(MMLU 0-shot|HellaSwag)\s+fp32 items\s+(\d+).*agree (\d+)/(\d+)\s+max\|dll\| (\S+)", out)
    assert {p[0] for p in parity} == {"MMLU 0-shot", "HellaSwag"}, out
    for _, items, agree, total, dll in parity:
        assert int(items) > 0 and agree == total == items and float(dll) <= 1e-4, out
    forwards = re.findall(r"fp32 (decoder|fused)\s+\d+ requests.*max\|dll\| vs fp32 decoder (\S+)", out)
    assert {f[0] for f in forwards} == {"decoder", "fused"} and all(float(d) <= 1e-4 for _, d in forwards), out
    assert re.search(r"fp32: (fused|decoder) is faster by", out), out
    assert re.search(r"tok/s\), ratio [\d.]+x, identical greedy text \d+/4", out), out


def test_budget_skips_stops_and_records_failures(capsys):
    mod = _gpu_check()
    budget = mod.Budget(30)
    assert budget.run("too big", 60, lambda: 1) is None
    assert budget.run("fine", 1, lambda x: x + 1, 1) == 2
    t0 = time.monotonic()
    assert budget.run("slow", 0.1, time.sleep, 20) is None  # slot: max(1 s, 3 x estimate)
    assert time.monotonic() - t0 < 5
    assert budget.run("broken", 1, lambda: 1 / 0) is None
    out = capsys.readouterr().out
    assert "SKIPPED too big" in out and "STOPPED slow" in out and "FAILED broken: ZeroDivisionError" in out
    assert budget.failures == ["slow", "broken"]


def test_gpu_scripts_parse():
    for script in ("gpu.sh", "gpu_wheels.sh"):
        subprocess.run(["bash", "-n", str(BENCH / script)], check=True)
