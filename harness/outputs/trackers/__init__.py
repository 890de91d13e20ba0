"""Experiment trackers (`--log-to`): a finished run folder copied into a tracker.

`prepare` runs with the other checks before any model loads (an unknown target or a missing
optional package is one line, exit 2); `publish` runs after the run folder, the gate's CI
files and the report are written. A tracker that fails then costs a warning, never the run:
the folder is complete and the exit code stays the gate's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Protocol

from harness.errors import ConfigError
from harness.suggest import unknown_name_message

TARGETS = ("mlflow",)
LOG_TO_HELP = "Also log the finished run to an experiment tracker: mlflow (needs the optional mlflow-skinny package)."
MLFLOW_URI_HELP = "MLflow tracking URI or folder (default: MLFLOW_TRACKING_URI, else ./mlruns, a file store)."


class Tracker(Protocol):
    name: str

    def log_run(self, run_dir: Path) -> str:
        """Logs the run folder; returns where it went, in one line."""


def prepare(log_to: Iterable[str] | None, mlflow_uri: str | None = None) -> list[Tracker]:
    """The trackers `--log-to` names (comma-separated or repeated), checked and ready.

    Raises:
        ConfigError: An unknown target, `--mlflow-uri` without `--log-to mlflow`, or a target
            whose package or store is unusable.
    """
    names: list[str] = []
    for value in log_to or []:
        for name in (n.strip() for n in value.split(",")):
            if name and name not in names:
                names.append(name)
    for name in names:
        if name not in TARGETS:
            raise ConfigError(unknown_name_message("--log-to target", name, TARGETS), "pass --log-to mlflow")
    if mlflow_uri and "mlflow" not in names:
        raise ConfigError("--mlflow-uri is set but --log-to does not name mlflow",
                          "add --log-to mlflow, or drop --mlflow-uri")
    trackers: list[Tracker] = []
    if "mlflow" in names:
        from harness.outputs.trackers.mlflow import open_tracker

        trackers.append(open_tracker(mlflow_uri))
    return trackers


def first_line(exc: BaseException) -> str:
    """An exception as one short line (MLflow's messages run to paragraphs)."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def publish(trackers: Iterable[Tracker], run_dir: str | Path, *, log: Callable[[str], None],
            warn: Callable[[str], None] = _stderr) -> None:
    """Logs the finished run folder to each tracker; a failure is a warning line, never raised."""
    for tracker in trackers:
        try:
            where = tracker.log_run(Path(run_dir))
        except Exception as exc:  # noqa: BLE001 - a tracker must never cost the run or change the exit code
            warn(f"warning: --log-to {tracker.name} failed ({type(exc).__name__}: {first_line(exc)}); the run folder "
                 f"{run_dir} is complete and the exit code is unchanged; fix: check the tracking store, then re-run "
                 "the same command (finished items are cached)")
        else:
            log(f"{tracker.name}: {where}")
