"""`--log-to mlflow`: a finished run folder as one MLflow run.

Params, metrics and tags come from `flatten.flatten_run` (names documented there); the
artifacts are run.json, verdict.json, summary.md and report.html, whichever the run wrote.
The store is `--mlflow-uri`, else MLFLOW_TRACKING_URI, else the folder ./mlruns: a file
store, which needs no server and no database package, so logging works offline. The
experiment is MLFLOW_EXPERIMENT_NAME, else "harness"; the run is named after the run folder.

mlflow is an optional dependency (`pip install 'harness[mlflow]'`): `open_tracker` imports it
before any model loads, so a missing package costs seconds, not an evaluation.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from harness.errors import ConfigError
from harness.outputs.trackers import first_line

DEFAULT_STORE = "mlruns"
DEFAULT_EXPERIMENT = "harness"
INSTALL = "pip install 'harness[mlflow]' (the mlflow-skinny client; a full mlflow install works too)"
# MLflow's limits on one log_batch call
PARAMS_PER_BATCH = TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


def _local_path(uri: str) -> Path | None:
    """The folder of a file store (`file:` URI or plain path); None for servers and databases."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(uri) if parsed.scheme == "" else None


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


@contextmanager
def _env(**values: str):
    """Sets environment variables for the block, then restores what was there."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass(frozen=True)
class MlflowTracker:
    """Where runs go: a tracking URI (file stores as absolute `file://` URIs) and an experiment."""

    uri: str
    experiment: str = DEFAULT_EXPERIMENT
    name: str = "mlflow"

    def log_run(self, run_dir: Path) -> str:
        """Logs the run folder as a new MLflow run; returns where it went (one line).

        Raises:
            Exception: Whatever MLflow raises; the caller turns it into a warning, since the
                run folder is already complete.
        """
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient

        from harness.log.folder import REPORT, RUN, SUMMARY, VERDICT, RunFolder
        from harness.outputs.trackers.flatten import flatten_run

        folder = RunFolder(run_dir)
        flat = flatten_run(folder.path, folder.read_meta(), folder.read_verdict())
        if _local_path(self.uri) is not None:
            # MLflow 3.7+ refuses a file store unless opted in; it is harness's default because
            # it needs no server or database driver. A user's own setting of the variable wins.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        run_id = client.create_run(exp_id, run_name=folder.path.resolve().name).info.run_id
        try:
            stamp = int(time.time() * 1000)
            for batch in _chunks([Param(k, v) for k, v in flat.params.items()], PARAMS_PER_BATCH):
                client.log_batch(run_id, params=batch)
            for batch in _chunks([RunTag(k, v) for k, v in flat.tags.items()], TAGS_PER_BATCH):
                client.log_batch(run_id, tags=batch)
            for batch in _chunks([Metric(k, v, stamp, 0) for k, v in flat.metrics.items()], METRICS_PER_BATCH):
                client.log_batch(run_id, metrics=batch)
            for name in (RUN, VERDICT, SUMMARY, REPORT):
                if folder.file(name).is_file():
                    client.log_artifact(run_id, str(folder.file(name)))
        except BaseException:
            try:  # a half-logged run is marked so, not left "running" in the UI
                client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise
        client.set_terminated(run_id, "FINISHED")
        return f"run {run_id} in experiment '{self.experiment}' at {self.uri}"


def open_tracker(uri_flag: str | None) -> MlflowTracker:
    """Checks, before any model work, that MLflow is installed and its store usable.

    Args:
        uri_flag: `--mlflow-uri`; None falls back to MLFLOW_TRACKING_URI, then ./mlruns.

    Raises:
        ConfigError: mlflow is not installed, the file store's folder is not writable, or
            MLflow cannot open the store the URI names.
    """
    try:
        import mlflow  # noqa: F401  (the package itself first: its submodules may be cached without it)
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise ConfigError(f"--log-to mlflow needs the mlflow package, which cannot be imported ({first_line(exc)})",
                          INSTALL) from None
    env = os.environ.get("MLFLOW_TRACKING_URI")
    source, uri = ("--mlflow-uri", uri_flag) if uri_flag else ("MLFLOW_TRACKING_URI", env) if env else \
        ("--mlflow-uri", DEFAULT_STORE)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    path = _local_path(uri)
    if path is not None:
        from harness.outputs.guard import check_dir

        check_dir(path, source)  # nothing is created yet: the store appears when the run is logged
        return MlflowTracker(uri=path.resolve().as_uri(), experiment=experiment)
    try:
        # One cheap request: an unknown scheme, a missing driver or a server that is down fails
        # now. MLflow's own retries (meant for rate limits) would wait minutes on a dead server,
        # so the probe gets one retry and a short timeout; logging later keeps MLflow's defaults.
        with _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
                  MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds; each is one bad-input line
        raise ConfigError(f"{source} {uri}: MLflow cannot open this tracking store ({first_line(exc)})",
                          "start the tracking server or fix the URI (a folder, an http(s):// server, or a database "
                          "URI whose driver is installed)") from None
    return MlflowTracker(uri=uri, experiment=experiment)
