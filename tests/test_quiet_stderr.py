"""A normal run keeps stderr to what the user must read: no git complaints, no library
deprecation warnings; a bogus HARNESS_PLUGINS or HARNESS_SUITES_PATH entry is one warning
line each, once per process, and the run goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_run import make_suite

HARNESS = [sys.executable, "-m", "harness.cli"]
BOGUS_PLUGIN = "no_such_harness_plugin_q7"
PLUGIN_WARNING = f"warning: HARNESS_PLUGINS entry '{BOGUS_PLUGIN}' cannot be imported: ModuleNotFoundError"
NOISE = ("fatal:", "FutureWarning", "DeprecationWarning")

PLUGIN_MODULE = '''\
from harness.evaluate.metrics import register_metric


@register_metric("quiet_plugin_len")
def quiet_plugin_len(prediction, references):
    return float(len(prediction))
'''


def cli(*args, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)


def outside_git(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A working folder that is no git checkout (git may not search above tmp_path), and an
    environment that shows every DeprecationWarning (Python hides those not raised in __main__)."""
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path), PYTHONWARNINGS="default::DeprecationWarning")
    probe = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=work, env=env, capture_output=True, text=True)
    assert probe.returncode != 0, "the test folder must not be inside a git checkout"
    return work, env


def test_suite_run_outside_git_has_quiet_stderr_and_one_warning_per_bogus_entry(tmp_path, tiny_dir, tiny_lora):
    work, env = outside_git(tmp_path)
    suites = tmp_path / "suites"
    suite = make_suite(suites / "quiet-arith", n=4)
    text = (suite / "suite.yaml").read_text()
    (suite / "suite.yaml").write_text(text.replace("[exact_match, f1]", "[exact_match, quiet_plugin_len]"))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "quiet_plugin_q7.py").write_text(PLUGIN_MODULE)
    missing = tmp_path / "no-such-suites"
    not_a_folder = tmp_path / "suites.txt"
    not_a_folder.write_text("x")
    env.update(HARNESS_PLUGINS=f"builtin,{BOGUS_PLUGIN},quiet_plugin_q7", PYTHONPATH=str(plugins),
               HARNESS_SUITES_PATH=os.pathsep.join([str(missing), str(suites), str(not_a_folder)]))
    out = tmp_path / "run"
    # By name: the lookup walks HARNESS_SUITES_PATH (twice for the unknown-name check below).
    proc = cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", "quiet-arith", "--limit", 2, "--out", out,
               "--batch-size", 2, cwd=work, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "run.json").is_file() and "quiet_plugin_len" in (out / "items.jsonl").read_text()
    err = proc.stderr
    for noise in NOISE:
        assert noise not in err, err
    assert err.count(PLUGIN_WARNING) == 1, err
    assert err.count(f"warning: HARNESS_SUITES_PATH entry '{missing}' does not exist; fix: ") == 1, err
    assert err.count(f"warning: HARNESS_SUITES_PATH entry '{not_a_folder}' is not a folder; fix: ") == 1, err
    assert err.count("warning: HARNESS_PLUGINS") == 1 and err.count("warning: HARNESS_SUITES_PATH") == 2, err

    # An unknown suite name searches the path twice (lookup, then the did-you-mean list): still one warning each.
    proc = cli("run", tiny_dir, "--suite", "quiet-arth", "--out", tmp_path / "run2", cwd=work, env=env)
    assert proc.returncode == 2 and "did you mean 'quiet-arith'?" in proc.stderr, proc.stderr
    assert proc.stderr.count("warning: HARNESS_SUITES_PATH") == 2, proc.stderr
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr


def test_search_dirs_warns_once_per_entry_and_skips_it(tmp_path, monkeypatch, capsys):
    from harness.evaluate.suites import lookup

    monkeypatch.setattr(lookup, "_warned", set())
    real = tmp_path / "real"
    real.mkdir()
    monkeypatch.setenv("HARNESS_SUITES_PATH", os.pathsep.join([str(tmp_path / "gone"), str(real), ""]))
    for _ in range(3):
        assert lookup.search_dirs() == [real, lookup.BUNDLED_DIR]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"HARNESS_SUITES_PATH entry '{tmp_path / 'gone'}' does not exist" in err


def test_plugin_entries_import_as_modules_and_bad_ones_warn_once(tmp_path, monkeypatch, capsys):
    from harness import registry
    from harness.evaluate.metrics import METRICS

    (tmp_path / "quiet_plugin_q7.py").write_text(PLUGIN_MODULE)
    (tmp_path / "broken_plugin_q7.py").write_text("raise RuntimeError('half-installed\\nplugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", f" quiet_plugin_q7 ,{BOGUS_PLUGIN},broken_plugin_q7,")
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "quiet_plugin_len" in METRICS.names()  # loads the plugins
        registry.load_plugins()  # once per process: no second warning
        err = capsys.readouterr().err
        lines = err.splitlines()
        assert len(lines) == 2, err
        assert lines[0].startswith("warning: HARNESS_PLUGINS entry 'broken_plugin_q7' cannot be imported: "
                                   "RuntimeError: half-installed plugin; fix: ")
        assert lines[1].startswith(PLUGIN_WARNING) and f"remove '{BOGUS_PLUGIN}' from HARNESS_PLUGINS" in lines[1]
    finally:
        METRICS.remove("quiet_plugin_len")
        sys.modules.pop("quiet_plugin_q7", None)


def test_lm_eval_asks_git_quietly(tmp_path):
    """lm-eval's simple_evaluate runs `git describe` in the working folder and lets git's
    "fatal: not a git repository" through; `quiet_lm_eval_git` swaps in a quiet equivalent."""
    work, env = outside_git(tmp_path)
    code = ("import lm_eval.evaluator as ev{setup}\n"
            "print(repr(ev.get_git_commit_hash()))")
    loud = subprocess.run([sys.executable, "-c", code.format(setup="")], cwd=work, env=env,
                          capture_output=True, text=True)
    assert "fatal: not a git repository" in loud.stderr  # what users saw before
    quiet = subprocess.run(
        [sys.executable, "-c", code.format(setup="\nfrom harness.evaluate.provenance import quiet_lm_eval_git\n"
                                                 "quiet_lm_eval_git()")],
        cwd=work, env=env, capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout.strip() == "None", quiet.stdout + quiet.stderr
    assert "fatal" not in quiet.stderr, quiet.stderr


def test_bench_run_outside_git_has_quiet_stderr(tmp_path, tiny_dir):
    work, env = outside_git(tmp_path)
    proc = cli("run", tiny_dir, "--bench", "hellaswag", "--limit", 2, "--out", tmp_path / "run", cwd=work, env=env)
    if proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    for noise in NOISE:
        assert noise not in proc.stderr, proc.stderr
