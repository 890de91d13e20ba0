"""Find and read what lm-eval 0.4.x writes with `--output_path PATH --log_samples`.

lm-eval's `EvaluationTracker` writes, for one run,

    PATH/<model name, sanitized>/results_<stamp>.json
    PATH/<model name, sanitized>/samples_<task>_<stamp>.jsonl     (one per leaf task)

or, when PATH ends in `.json`, `<PATH stem>_<stamp>.json` with the samples files beside it.
`<stamp>` is the run's ISO time with ':' replaced by '-', so the samples of a run are the
files carrying its results file's stamp. A folder that holds several runs (lm-eval never
removes old ones) is read at its latest results file unless a results file is named.

Only the standard library here: `harness import` reads folders without loading lm-eval.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

RESULTS_RE = re.compile(r"^(?P<stem>.+)_(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json$")
FIX_FOLDER = "pass the folder given to lm-eval's --output_path (or one results_*.json in it)"
FIX_SAMPLES = "re-run lm-eval with --log_samples and --output_path, then import again"


@dataclass
class LmEvalOutput:
    """One lm-eval run: its results file, parsed, and the per-sample file of every leaf task.

    Attributes:
        role: "base" or "adapter", for messages.
        results_file: The results_<stamp>.json that was read.
        stamp: The run's time stamp, shared by its samples files.
        results: The results file, parsed.
        samples: Leaf task -> its samples_<task>_<stamp>.jsonl.
        notes: Choices made while finding the run (which of several results files).
    """

    role: str
    results_file: Path
    stamp: str
    results: dict[str, Any]
    samples: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        """Leaf tasks, in the results file's order (groups are not leaves)."""
        return list(self.results["configs"])

    @property
    def model_name(self) -> str:
        """lm-eval's name for the model (its `peft=`, else `pretrained=` argument)."""
        return str(self.results.get("model_name") or self.results_file.parent.name)

    def model_args(self) -> dict[str, str]:
        """lm-eval's `--model_args` as a mapping (it records them as `a=1,b=2` or as a dict)."""
        args = (self.results.get("config") or {}).get("model_args")
        if isinstance(args, dict):
            return {str(k): str(v) for k, v in args.items()}
        pairs = [p.split("=", 1) for p in str(args or "").split(",") if "=" in p]
        return {k.strip(): v.strip() for k, v in pairs}


def _results_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if RESULTS_RE.match(p.name) and p.is_file())


def _candidates(path: Path) -> list[Path]:
    """Results files in `path`, else in its model subfolders (lm-eval's own layout)."""
    here = _results_files(path)
    if here:
        return here
    return [f for sub in sorted(p for p in path.iterdir() if p.is_dir()) for f in _results_files(sub)]


def is_lm_eval_output(path: str | Path) -> bool:
    """Whether `path` looks like lm-eval output rather than a model: a results_*.json (or a
    folder holding one, directly or one level down) and no model or adapter config."""
    path = Path(path)
    if path.is_file():
        return bool(RESULTS_RE.match(path.name))
    if not path.is_dir() or (path / "config.json").exists() or (path / "adapter_config.json").exists():
        return False
    try:
        return bool(_candidates(path))
    except OSError:
        return False


def find_output(path: str | Path, role: str) -> LmEvalOutput:
    """The lm-eval run at `path`: a results file, the folder holding it, or lm-eval's --output_path.

    Raises:
        ConfigError: Nothing there, no results file, results of several models, a results
            file that is not lm-eval's, or a leaf task without its per-sample file.
    """
    path = Path(path)
    notes: list[str] = []
    if not path.exists():
        raise ConfigError(f"{role} lm-eval output {path} does not exist", FIX_FOLDER)
    if path.is_file():
        if not RESULTS_RE.match(path.name):
            raise ConfigError(f"{role} lm-eval output {path} is not a results_<time>.json file", FIX_FOLDER)
        results_file = path
    else:
        found = _candidates(path)
        if not found:
            raise ConfigError(f"no lm-eval results_<time>.json in {role} folder {path} or its model subfolders",
                              FIX_FOLDER)
        folders = sorted({f.parent for f in found})
        if len(folders) > 1:
            raise ConfigError(f"{role} folder {path} holds lm-eval results of {len(folders)} models "
                              f"({', '.join(f.name for f in folders)})", "pass the subfolder of the one to import")
        by_stamp = sorted(found, key=lambda f: RESULTS_RE.match(f.name)["stamp"])
        results_file = by_stamp[-1]
        if len(found) > 1:
            notes.append(f"{role}: {len(found)} lm-eval runs in {folders[0]}; imported the latest, "
                         f"{results_file.name} (pass a results file to pick another)")
    stamp = RESULTS_RE.match(results_file.name)["stamp"]
    results = _read_results(results_file, role)
    samples = {}
    for task in results["configs"]:
        sample_file = results_file.parent / f"samples_{task}_{stamp}.jsonl"
        if not sample_file.is_file():
            raise ConfigError(f"{role}: lm-eval task '{task}' has no per-sample file {sample_file.name} beside "
                              f"{results_file}", FIX_SAMPLES)
        samples[task] = sample_file
    return LmEvalOutput(role=role, results_file=results_file, stamp=stamp, results=results, samples=samples,
                        notes=notes)


def _read_results(path: Path, role: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{role} lm-eval results file {path} is not valid JSON ({exc})", FIX_SAMPLES) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("results", "configs")):
        raise ConfigError(f"{role} file {path} is not an lm-eval results file (no 'results' and 'configs' objects)",
                          FIX_FOLDER)
    if not data["configs"]:
        raise ConfigError(f"{role} lm-eval results file {path} lists no tasks", FIX_FOLDER)
    return data


def read_samples(out: LmEvalOutput, task: str) -> list[dict[str, Any]]:
    """One leaf task's per-sample lines (one per document and filter).

    Raises:
        ConfigError: A line that is not a JSON object with a `doc_id` and a `filter`.
    """
    from harness.io import at, display_path, read_records

    path = out.samples[task]
    lines = []
    for label, line in read_records(path, "jsonl"):  # invalid JSON: one line naming file:line
        if not isinstance(line, dict) or not isinstance(line.get("doc_id"), int) or "filter" not in line:
            raise ConfigError(f"{at(display_path(path), label)} is not an lm-eval sample (needs 'doc_id' and "
                              "'filter')", FIX_SAMPLES)
        lines.append(line)
    if not lines:
        raise ConfigError(f"{out.role}: per-sample file {path} is empty", FIX_SAMPLES)
    return lines
