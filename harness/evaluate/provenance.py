"""What produced a run: code version, library versions, machine."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "transformers", "peft", "lm_eval", "rouge-score", "sacrebleu", "pandas", "jinja2")


def code_version() -> dict[str, object]:
    import harness

    info: dict[str, object] = {"harness": harness.__version__}
    root = Path(harness.__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode == 0:
            info["git_commit"] = sha.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def git_describe_quietly() -> str | None:
    """`git describe --always` of the working directory, or None; git's stderr is captured.

    lm-eval's `simple_evaluate` records this through its own `get_git_commit_hash`, which
    lets git print "fatal: not a git repository" onto our stderr whenever a run starts
    outside a git checkout.
    """
    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def quiet_lm_eval_git() -> None:
    """Make lm-eval ask git quietly: call before `lm_eval.simple_evaluate` (idempotent).

    lm-eval offers no switch for it, so its evaluator's reference is replaced by
    `git_describe_quietly` (same answer, git's complaints captured).
    """
    import lm_eval.evaluator

    lm_eval.evaluator.get_git_commit_hash = git_describe_quietly


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}
