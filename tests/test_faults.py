"""Faults a run meets on real machines: a read-only cache home or output, a full disk mid-run,
Ctrl-C, prompts longer than the model's context, and replacing a run folder."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.log.folder import RunFolder
from tests.test_bad_input import tripwire  # noqa: F401 - fixture
from tests.test_run import HARNESS, cli, make_suite


def _tmpfs(folder: Path, options: str, why_not: str):
    """Mounts a tmpfs with `options` on `folder` for a fixture's lifetime, or skips saying `why_not`."""
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip(why_not)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture
def readonly(tmp_path):
    """A folder nobody may write to, root included: a read-only tmpfs where mounting is allowed,
    else permission bits (which bind everyone but root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    yield from _tmpfs(folder, "size=1m,ro", "running as root where tmpfs cannot be mounted: no way to make a "
                                             "folder read-only")


def test_read_only_out_fails_before_the_model_loads(tmp_path, readonly, tiny_dir, tiny_lora, tripwire, capfd):  # noqa: F811
    suite = make_suite(tmp_path / "arith", n=4)
    with pytest.raises(SystemExit) as stop:
        main(["compare", str(tiny_dir), str(tiny_lora), "-s", str(suite), "--out", str(readonly / "run")])
    err = capfd.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1
    assert "read-only" in err[0] or "not writable" in err[0]


def test_a_read_only_cache_home_costs_a_warning_never_the_run(tmp_path, readonly, tiny_dir):
    suite = make_suite(tmp_path / "arith", n=4)
    env = {**os.environ, "HARNESS_HOME": str(readonly)}
    quiet = cli("run", tiny_dir, "-s", suite, "--out", tmp_path / "a", "--no-cache", env=env)
    assert "warning" not in quiet.stderr  # --no-cache: nothing is even attempted there
    cached = cli("run", tiny_dir, "-s", suite, "--out", tmp_path / "b", env=env)
    assert "warning: cannot open the result cache" in cached.stderr
    for run in ("a", "b"):
        assert len(RunFolder(tmp_path / run).read_items()) == 4
    assert list(readonly.iterdir()) == []


def _valid_cache_rows(db: Path) -> int:
    """Rows in a result cache that passes SQLite's integrity check."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    finally:
        con.close()


def _file_size_limit(limit: int):
    def apply() -> None:  # Python ignores SIGXFSZ, so an over-limit write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_mid_run_stops_with_one_line_keeps_cache_and_folder_valid_and_resumes(tmp_path, tiny_dir,
                                                                                          tiny_lora):
    """A per-file size limit makes the kernel refuse writes past 48 KB: the result cache fills
    first (a warning, the run goes on), then items.jsonl cannot be written (one line, exit 2)."""
    suite = make_suite(tmp_path / "long", n=100, max_new_tokens=12)  # 200 item lines > 48 KB
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--limit", 3, "--out", out, "--batch-size", 4)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    args = ["compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", out, "--batch-size", 4, "--force"]
    proc = subprocess.run([*HARNESS, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=_file_size_limit(48 * 1024))
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2, proc.stderr
    assert len(errors) == 1 and "no space left" in errors[0] and "re-run the same command" in errors[0]
    assert "Traceback" not in proc.stderr
    assert "warning: cannot write the result cache" in proc.stderr
    # the earlier run is intact and self-consistent; the cache is a valid database holding the batches done
    assert (out / "run.json").read_bytes() == before["run.json"] and (out / "items.jsonl").read_bytes() == before["items.jsonl"]
    assert len(RunFolder(out).read_items()) == 6
    cached = _valid_cache_rows(Path(os.environ["HARNESS_HOME"]) / "cache" / "results.sqlite")
    assert cached > 6
    cli(*args)  # space again: the rerun resumes from what was cached
    meta = RunFolder(out).read_meta()
    assert meta.timing.items_cached == cached and meta.timing.items_computed == 200 - cached
    assert len(RunFolder(out).read_items()) == 200


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a real file system that runs out of space (needs the right to mount)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    yield from _tmpfs(folder, "size=4m", "cannot mount a tmpfs here (not root); the file-size-limit test covers "
                                         "the same path")


def test_a_file_system_that_fills_mid_run_gives_enospc_as_one_line_and_the_rerun_resumes(small_disk, tmp_path,
                                                                                          tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "long", n=60, max_new_tokens=12)
    home, out = small_disk / "home", small_disk / "run"
    home.mkdir()
    env = {**os.environ, "HARNESS_HOME": str(home)}
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--limit", 3, "--out", out, "--batch-size", 4, env=env)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    st = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 96 * 1024))  # leave 96 KB
    args = ["compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", out, "--batch-size", 4, "--force"]
    proc = cli(*args, check=False, env=env)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left" in errors[0] and "No space left on device" in errors[0]
    assert "result cache" in proc.stderr  # the cache ran out first: a warning, and the run went on
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    cached = _valid_cache_rows(home / "cache" / "results.sqlite")
    assert cached > 6
    filler.unlink()
    cli(*args, env=env)
    meta = RunFolder(out).read_meta()
    assert meta.timing.items_cached == cached and len(RunFolder(out).read_items()) == 120


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "long", n=160, max_new_tokens=40)
    args = ["compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", tmp_path / "run", "--batch-size", 2]
    proc = subprocess.Popen([*HARNESS, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    db = Path(os.environ["HARNESS_HOME"]) / "cache" / "results.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not db.exists():
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1].startswith("interrupted: re-run the same command to resume")
    assert "Traceback" not in err


def test_prompts_longer_than_the_context_are_cut_on_the_left_and_counted(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "long", n=3, max_new_tokens=6)
    rows = [json.loads(x) for x in (suite / "data.jsonl").read_text().splitlines()]
    rows[1]["question"] = "filler words " * 700 + rows[1]["question"]  # ~2100 tokens, context 1024
    (suite / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = cli("run", tiny_dir, "-s", suite, "--out", tmp_path / "run", "--no-cache")
    assert "1 prompts of 'long' were cut on the left" in proc.stderr
    items = {r.item_id: r for r in RunFolder(tmp_path / "run").read_items()}
    cut = items["q001"]
    assert cut.truncated_tokens and cut.prompt_tokens + cut.truncated_tokens > 1024 - 6
    assert cut.prompt_tokens == 1024 - 6 and cut.new_tokens > 0  # the model still answered
    assert items["q000"].truncated_tokens is None
    agg = RunFolder(tmp_path / "run").read_meta().aggregates.suites["long"]["base"]
    assert agg.truncated == 1


def test_replacing_a_run_folder_replaces_its_derived_files_and_keeps_the_users(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=4)
    out = tmp_path / "run"
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {task: arith, metric: f1, max_drop: 100}\n")
    cli("compare", tiny_dir, f"ft={tiny_lora}", "-s", suite, "--out", out, "--policy", policy, check=False)
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    (out / "my-notes.txt").write_text("mine\n")
    refused = cli("run", tiny_dir, "-s", suite, "--out", out, check=False)
    assert refused.returncode == 2 and "--force" in refused.stderr
    cli("run", tiny_dir, "-s", suite, "--out", out, "--force")
    assert not (out / "report.html").exists() and not (out / "summary.md").exists()
    assert not (out / "verdict.json").exists()
    assert (out / "my-notes.txt").read_text() == "mine\n"
    assert RunFolder(out).read_meta().models == ["base"]


def test_cut_prompts_are_flagged_in_the_comparison_and_the_report(tmp_path):
    from harness.analysis.comparison import Comparison
    from harness.outputs.report.html import render_report
    from tests.runlog_factory import binary_pair, squad_task, write_run

    em = binary_pair(30, 0.5, 1, 2)
    out = write_run(tmp_path / "run", [squad_task(30, em, em, name="arith")])
    meta = json.loads((out / "run.json").read_text())
    for agg in meta["aggregates"]["suites"]["arith"].values():
        agg["truncated"] = 3
    (out / "run.json").write_text(json.dumps(meta))
    flags = [f for f in Comparison.from_run_dir(out).flags if f.code == "truncated_prompts"]
    assert len(flags) == 1 and flags[0].task == "arith" and "3 of 30 prompts" in flags[0].message
    assert "3 of 30 prompts of &#39;arith&#39; were cut" in render_report(out).read_text()
