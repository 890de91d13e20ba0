"""`harness sweep`: train and evaluate every point of a grid of training settings, resumably,
and lay the points out as task gain against forgetting.

Each point is an `harness ab` run of its own (`harness.ab.run_ab`): the same base, data,
seeds, suites and benchmarks, with the point's settings over `--config`; its folder is
`OUT/points/NAME/` (NAME from the settings, see `harness.sweep_grid.point_name`). Beside
the run, `point.json` records the point's status each time it changes, so a re-run skips a
point that finished with the same inputs and restarts any other one: an interrupted point
resumes from its training checkpoint and the result cache, a point whose training settings
changed retrains, a point whose evaluation options changed is re-evaluated on its adapters.

`OUT/sweep.json` (`harness.log.schema.SweepDoc`) lists every point of the current grid
with its gain, forgetting (`harness.analysis.tradeoff`) and whether it is on the Pareto
front (`harness.analysis.pareto`); `OUT/report.html` draws them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError, HarnessError, RunLogError
from harness.log.schema import SWEEP_SCHEMA_VERSION, SweepDoc, SweepPoint
from harness.sweep_grid import Grid, point_name

SWEEP = "sweep.json"
POINT = "point.json"
POINTS = "points"
Log = Callable[[str], None]


@dataclass
class SweepConfig:
    base: str
    train: Path
    out: Path
    grid: Grid
    suites: list[str] = field(default_factory=list)
    benches: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    config: Path | None = None  # training settings every point starts from
    gain: str | None = None  # TASK:METRIC (or METRIC of the first suite); default: the first suite's first metric
    limit: int | None = None
    limit_per_subject: int | None = None
    num_fewshot: int = 0
    dtype: str = "float32"
    device: str = "auto"
    trust_code: list[Path] = field(default_factory=list)
    perturb: int = 0
    force: bool = False  # retrain and re-evaluate every point
    command: list[str] = field(default_factory=list)


_SWEEP_FIELDS = {f.name for f in fields(SweepConfig)}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def resolve_gain(cfg: SweepConfig) -> tuple[str, str]:
    """(task, metric) the gain axis reads; checked against the suites before any training."""
    from harness.evaluate.suites import load_suite
    from harness.suggest import did_you_mean

    suites = [load_suite(s, trusted_dirs=list(cfg.trust_code)) for s in cfg.suites]
    if not suites:
        raise ConfigError("a sweep needs a task to measure gain on", "pass --suite (and --bench for forgetting)")
    metrics = {s.name: s.metric_names for s in suites}
    if cfg.perturb:
        from harness.evaluate.perturb import task_name

        metrics.update({task_name(s.name): [*s.metric_names, "consistent"] for s in suites})
    if not cfg.gain:
        return suites[0].name, suites[0].metric_names[0]
    task, sep, metric = cfg.gain.partition(":")
    if not sep or task not in metrics:  # METRIC alone (possibly with a ':' of its own) means the first suite's
        task, metric = suites[0].name, cfg.gain
    if metric not in metrics[task]:
        raise ConfigError(f"--gain {cfg.gain}: task {task} has no metric '{metric}'",
                          f"{did_you_mean(metric, metrics[task])}its metrics: {', '.join(metrics[task])}")
    return task, metric


def _keys(cfg: SweepConfig, settings: dict[str, Any], train_sha: str) -> tuple[str, str]:
    """(key, train_key) of a point: what its result, and its adapters alone, depend on."""
    from harness.hashing import sha256_json
    from harness.train import load_train_config

    training = {"settings": load_train_config(cfg.config, **settings).result_fields(), "data": train_sha,
                "base": cfg.base, "seeds": cfg.seeds}
    train_key = sha256_json(training)
    evaluation = {"suites": cfg.suites, "benches": cfg.benches, "limit": cfg.limit, "dtype": cfg.dtype,
                  "limit_per_subject": cfg.limit_per_subject, "num_fewshot": cfg.num_fewshot, "perturb": cfg.perturb}
    return sha256_json({"training": train_key, "evaluation": evaluation}), train_key


def read_point(folder: Path, log: Log) -> SweepPoint | None:
    """A point's point.json, or None when there is none or it cannot be read (the point reruns)."""
    import json

    path = folder / POINT
    if not path.is_file():
        return None
    try:
        return SweepPoint.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        log(f"warning: {path} is unreadable ({str(exc).splitlines()[0]}): the point runs again")
        return None


def write_point(folder: Path, point: SweepPoint) -> None:
    from harness.log.folder import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / POINT, [point.model_dump_json(indent=2) + "\n"])


def _check(cfg: SweepConfig) -> None:
    from harness.outputs.guard import check_dir

    if not cfg.train.is_file():
        raise ConfigError(f"--train {cfg.train}: no such file", "pass the training data (JSONL/CSV/Parquet)")
    if not cfg.seeds:
        raise ConfigError("--seeds is empty", "pass e.g. --seeds 0,1")
    out = check_dir(cfg.out)
    if out.is_dir() and any(out.iterdir()) and not (out / SWEEP).is_file() and not cfg.force:
        raise ConfigError(f"--out {out} is not empty and holds no {SWEEP}",
                          "choose a new or empty folder (or an earlier sweep's, to resume it), or pass --force")


def _finished(point: SweepPoint | None, key: str, folder: Path) -> bool:
    return point is not None and point.status == "done" and point.key == key and (folder / "run.json").is_file()


def _why(prior: SweepPoint | None, point: SweepPoint, force: bool) -> str:
    """Why a point runs, for the log line."""
    if prior is None:
        return "training and evaluating"
    if force:
        return "re-running (--force)"
    if prior.status != "done":
        return f"restarting (it was {prior.status})"
    if prior.key != point.key:
        return "re-running (its training settings or evaluation options changed)"
    return "re-running (its run.json is missing)"


def _run_point(cfg: SweepConfig, point: SweepPoint, folder: Path, retrain: bool, log: Log) -> None:
    """Trains and evaluates one point as an `ab` arm; its status in point.json follows along."""
    from harness.ab import ABConfig, run_ab

    point.status, point.started, point.finished, point.seconds, point.error = "running", _now(), None, None, None
    write_point(folder, point)
    started = time.monotonic()
    # every option the sweep shares with ab (suites, limits, device, ...) passes through by name
    shared = {f.name: getattr(cfg, f.name) for f in fields(ABConfig) if f.name in _SWEEP_FIELDS}
    ab = ABConfig(**{**shared, "out": folder, "overrides": dict(point.settings), "force": retrain,
                     "command": [*cfg.command, f"(point {point.name})"]})
    try:
        run_ab(ab, log=log)
    except KeyboardInterrupt:
        point.status = "interrupted"
        write_point(folder, point)
        raise
    except Exception as exc:
        point.status, point.error = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        write_point(folder, point)
        raise
    point.status, point.finished, point.seconds = "done", _now(), round(time.monotonic() - started, 3)
    write_point(folder, point)


def _measure(point: SweepPoint, folder: Path, gain: tuple[str, str]) -> None:
    """Fills the point's gain and forgetting from its run.json (recomputed on every run, so a new
    --gain applies to finished points too)."""
    from harness.analysis.tradeoff import tradeoff
    from harness.log.folder import RunFolder

    t = tradeoff(RunFolder(folder).read_meta(), *gain)
    point.seeds, point.gain_points, point.gain_sd_points = t.seeds, t.gain, t.gain_sd
    point.forgetting_points, point.forgetting_per_task = t.forgetting, t.per_task


def run_sweep(cfg: SweepConfig, log: Log = print) -> SweepDoc:
    """Checks everything, then trains and evaluates each point not finished yet; writes sweep.json
    and report.html (also when a point fails or is interrupted, so they show how far it got).

    Raises:
        HarnessError: Bad input (before any training) or a point that cannot be trained or
            evaluated; KeyboardInterrupt after the interrupted point's status is written.
    """
    from harness.evaluate.devices import resolve
    from harness.hashing import sha256_file

    _check(cfg)
    gain = resolve_gain(cfg)
    resolve(cfg.device, cfg.dtype)  # an absent or misspelt device fails before any training
    train_sha = sha256_file(cfg.train)
    doc = SweepDoc(created=_now(), command=cfg.command, base=cfg.base, train=str(cfg.train), train_sha256=train_sha,
                   config=str(cfg.config) if cfg.config else None, suites=cfg.suites, benches=cfg.benches,
                   seeds=cfg.seeds, limit=cfg.limit, limit_per_subject=cfg.limit_per_subject, grid=cfg.grid.axes,
                   gain_task=gain[0], gain_metric=gain[1])
    plan = []
    for settings in cfg.grid.points():
        name = point_name(settings)
        folder = cfg.out / POINTS / name
        key, train_key = _keys(cfg, settings, train_sha)
        prior = read_point(folder, log)
        point = SweepPoint(name=name, settings=settings, key=key, train_key=train_key, run=f"{POINTS}/{name}")
        if prior is not None and prior.key == key:
            point.status = prior.status
        plan.append((point, folder, prior))
    doc.points = [p for p, _, _ in plan]
    log(f"sweep: {len(plan)} point(s) over {', '.join(cfg.grid.axes)}; gain on {gain[0]} {gain[1]}, "
        f"forgetting on {', '.join(cfg.benches) or 'no benchmark'}")
    try:
        for i, (point, folder, prior) in enumerate(plan, 1):
            if not cfg.force and _finished(prior, point.key, folder):
                point.status, point.started = "done", prior.started
                point.finished, point.seconds = prior.finished, prior.seconds
                log(f"point {i}/{len(plan)} {point.name}: finished earlier, skipped")
            else:
                why = _why(prior, point, cfg.force)
                log(f"point {i}/{len(plan)} {point.name}: {why}")
                retrain = cfg.force or (prior is not None and prior.train_key != point.train_key)
                _run_point(cfg, point, folder, retrain, log)
            _measure(point, folder, gain)
    finally:
        write_summary(cfg.out, doc, log)
    return doc


def write_summary(out: Path, doc: SweepDoc, log: Log) -> Path | None:
    """Marks the Pareto front among finished points, writes sweep.json and the sweep report."""
    from harness.analysis.pareto import pareto_front
    from harness.log.folder import atomic_write
    from harness.outputs.report.sweep import render_sweep_report

    done = [p for p in doc.points if p.status == "done"]
    for p, on in zip(done, pareto_front([(p.gain_points, p.forgetting_points) for p in done])):
        p.on_front = on
    atomic_write(out / SWEEP, [doc.to_json()])
    try:
        report = render_sweep_report(out)
    except HarnessError as exc:  # the summary is written; a report that cannot be is one line, not a lost sweep
        log(f"warning: no sweep report: {exc}")
        return None
    log(f"sweep report: {report}")
    return report


def read_sweep(out: str | Path) -> SweepDoc:
    """sweep.json of a sweep folder.

    Raises:
        RunLogError: Missing, not JSON, or not a sweep summary (one line).
    """
    import json

    path = Path(out) / SWEEP
    fix = "re-run `harness sweep` with the same --out (finished points are kept)"
    if not path.is_file():
        raise RunLogError(f"no {SWEEP} in {out}", fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        doc = SweepDoc.model_validate(data)
    except ValueError as exc:  # JSON and pydantic errors alike
        raise RunLogError(f"{path} is not a sweep summary ({str(exc).splitlines()[0]})", fix) from None
    if doc.schema_version != SWEEP_SCHEMA_VERSION:
        raise RunLogError(f"{path} has sweep schema {doc.schema_version}, this harness reads "
                          f"{SWEEP_SCHEMA_VERSION}", fix)
    return doc
