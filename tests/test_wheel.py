"""The wheel: built from this checkout and installed into a scratch venv without the source
tree, it carries the bundled suites, lists them and gates a saved run log.

The scratch venv gets the project venv's installed dependencies through a .pth file (offline,
no resolver). Directories named by a .pth line are only put on sys.path, their own .pth files
are not run, so the project's editable-install finder never loads there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.evaluate.suites import list_suites
from tests.runlog_factory import TaskSpec, bench_task, binary_pair, continuous_pair, squad_task, write_run

REPO = Path(__file__).resolve().parents[1]
# What the build reads: an sdist-like copy keeps build/ and egg-info out of the shared tree.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "harness", "suites")
SUITES_IN_WHEEL = "harness/_suites/"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _check(*cmd: str | Path) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def _build_wheel(work: Path) -> tuple[Path, Path]:
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    _check(sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
           "--no-build-isolation", "--no-index", "-w", work / "dist", src)
    (wheel,) = (work / "dist").glob("harness-*.whl")
    return wheel, src


def _install(wheel: Path, venv: Path) -> Path:
    _check(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    # Installed before the .pth exists: pip must not see the project's editable harness
    # as "already installed" (or, worse, uninstall it from the project venv).
    _check(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--disable-pip-version-check",
           "--no-deps", "--no-index", wheel)
    site = _check(python, "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    deps = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    Path(site, "project_deps.pth").write_text("".join(f"{d}\n" for d in deps))
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> SimpleNamespace:
    work = tmp_path_factory.mktemp("wheel")
    wheel, src = _build_wheel(work)
    venv = work / "venv"
    python = _install(wheel, venv)
    cwd = work / "elsewhere"
    cwd.mkdir()
    return SimpleNamespace(wheel=wheel, src=src, venv=venv, python=python, harness=venv / "bin" / "harness", cwd=cwd)


def _run(inst: SimpleNamespace, *args: str | Path) -> subprocess.CompletedProcess:
    """Run in the scratch venv from a folder outside the repo, with no PYTHON* variable
    (PYTHONPATH above all) leaking the source tree in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(PYTHONSAFEPATH="1", PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    return subprocess.run([str(a) for a in args], cwd=inst.cwd, env=env, capture_output=True, text=True)


def test_wheel_ships_the_package_and_bundled_suites_and_nothing_else(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    suites = {n[len(SUITES_IN_WHEEL):] for n in names if n.startswith(SUITES_IN_WHEEL)}
    package = names - dist_info - {SUITES_IN_WHEEL + s for s in suites}
    src = installed.src
    code = {f"harness/{f}" for f in _files(src / "harness")
            if f.endswith(".py") or f.startswith("outputs/report/templates/")}
    expected = _files(src / "suites")
    assert suites == expected, f"not shipped: {sorted(expected - suites)} (package-data globs in pyproject.toml)"
    assert package == code, f"missing from the wheel: {sorted(code - package)}; stray: {sorted(package - code)}"
    assert {"harness/_suites/squad-qa/suite.yaml", "harness/_suites/aclsum/hooks.py",
            "harness/_suites/data2text/data.jsonl", "harness/outputs/report/templates/report.html.j2"} <= names


def test_installed_harness_is_the_wheel_and_lists_the_bundled_suites(installed):
    probe = _run(installed, installed.python, "-c",
                 "import harness, harness.evaluate.suites as s; print(harness.__file__); print(s.BUNDLED_DIR)")
    assert probe.returncode == 0, probe.stderr
    module, bundled = map(Path, probe.stdout.split())
    assert module.is_relative_to(installed.venv) and bundled.is_relative_to(installed.venv)
    assert bundled.name == "_suites"

    proc = _run(installed, installed.harness, "suites", "list")
    assert proc.returncode == 0, proc.stderr
    rows = {cells[0]: cells for line in proc.stdout.splitlines()
            if (cells := [c.strip() for c in line.strip("│ ").split("│")]) and len(cells) == 5}
    # Same item counts as this checkout: the data files shipped, the asset suites resolved.
    for info in list_suites():
        if info.source == "bundled":
            assert rows[info.name][2:4] == ["?" if info.n_items is None else str(info.n_items), "bundled"]
    assert {"squad-qa", "aclsum", "data2text", "helpfulness"} <= rows.keys()
    assert rows["data2text"][2] == "200" and rows["helpfulness"][2] == "30"

    loaded = _run(installed, installed.python, "-c",
                  "from harness.evaluate.suites import load_suite\n"
                  "load_suite('aclsum')  # its python hook is trusted from the installed folder\n"
                  "print(len(load_suite('data2text').examples()))")
    assert loaded.returncode == 0 and loaded.stdout.split() == ["200"], loaded.stderr


def test_installed_gate_decides_a_saved_run_with_the_ci_policy(installed, tmp_path):
    n = 3000
    subjects = [f"subject_{i % 8}" for i in range(n)]
    squad = squad_task(n, binary_pair(n, 0.6, 20, 22, seed=1), continuous_pair(n, 0.6, 0.0, sd=0.02, seed=2))
    tasks: list[TaskSpec] = [squad, bench_task("mmlu", binary_pair(n, 0.5, 30, 32, seed=3), subjects),
                             bench_task("hellaswag", binary_pair(n, 0.4, 25, 27, seed=4))]
    run = write_run(tmp_path / "run", tasks)
    policy = shutil.copy(REPO / "ci" / "gate.yaml", tmp_path / "gate.yaml")

    proc = _run(installed, installed.harness, "gate", run, "--policy", policy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads((run / "verdict.json").read_text())
    assert verdict["verdict"] == "pass"
    assert {"squad-f1-no-drop", "mmlu-acc-non-inferior", "hellaswag-acc-non-inferior"} <= {
        r["name"] for r in verdict["rules"]}
    assert (run / "summary.md").is_file() and (run / "junit.xml").is_file()
