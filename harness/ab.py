"""Controlled A/B runs: train one adapter per seed (and per config arm), check leaks,
compare against the base in one process, gate, report.

Everything but the varied thing is held fixed: base weights, data file and its hash, eval
items, prompts and decoding. With several seeds the spread of each metric's gain shows
whether an effect is larger than seed-to-seed variance. With `--vs`, arm B is compared with
arm A directly, seed s with seed s, on the same items (harness.analysis.arms); a difference
within the seed spread is not a win (docs/ab.md).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.analysis.policy import Policy
from harness.errors import ConfigError
from harness.log.folder import RunFolder
from harness.log.schema import ABSummary, RunMeta, SeedGain


@dataclass
class ABConfig:
    base: str
    train: Path
    out: Path
    suites: list[str] = field(default_factory=list)
    benches: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    config: Path | None = None        # training settings (arm A)
    vs: Path | None = None            # a second training config (arm B)
    overrides: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    limit_per_subject: int | None = None
    num_fewshot: int = 0
    dtype: str = "float32"
    device: str = "auto"  # where both training and evaluation run
    trust_code: list[Path] = field(default_factory=list)
    force: bool = False
    command: list[str] = field(default_factory=list)
    perturb: int = 0  # re-ask suite items under this many prompt variants (harness.evaluate.perturb)
    bench_format: Any = None  # harness.evaluate.forgetting.chat_format.BenchFormat; None: plain prompts
    train_cutoff: str | None = None  # last day the training data covers (harness.leaks.temporal)


def _arm_config(path: Path | None, ab: ABConfig):
    from harness.train import load_train_config, make_config

    values = dict(ab.overrides)
    if path is not None:
        cfg = load_train_config(path)
        return cfg.model_copy(update={k: v for k, v in values.items() if v is not None})
    return make_config("harness ab options", **{k: v for k, v in values.items() if v is not None})


def train_arms(ab: ABConfig, log: Callable[[str], None]) -> tuple[list[str], dict[str, dict]]:
    """Train every (arm, seed) adapter; returns compare adapter args and training records."""
    from harness.train import train_adapter

    arms = {"A": _arm_config(ab.config, ab)}
    if ab.vs is not None:
        arms["B"] = _arm_config(ab.vs, ab)
    adapters, records = [], {}
    for arm, cfg in arms.items():
        for seed in ab.seeds:
            name = f"{arm}-seed{seed}" if len(arms) > 1 else f"seed{seed}"
            run_cfg = cfg.model_copy(update={
                "base": ab.base, "data": ab.train, "out": RunFolder(ab.out).adapters / name, "seed": seed,
                "eval_suites": list(ab.suites), "trust_code": list(ab.trust_code), "dtype": cfg.dtype,
                "device": ab.device})
            log(f"training adapter {name} (seed {seed}{', config ' + str(ab.vs if arm == 'B' else ab.config) if ab.config or ab.vs else ''})")
            result = train_adapter(run_cfg, log=log, progress=True, resume=True, force=ab.force)
            adapters.append(f"{name}={result.adapter_dir}")
            records[name] = {**result.record, "arm": arm, "seed": seed}
    return adapters, records


def seed_summary(meta: RunMeta, training: dict[str, dict]) -> list[SeedGain]:
    """Per task and metric and arm: the gain over base for each seed, its mean and spread."""
    from harness.analysis.headline import aggregate_deltas

    arms: dict[tuple, list[float]] = {}
    for row in aggregate_deltas(meta):
        arm = training.get(row.model, {}).get("arm", "A")
        arms.setdefault((row.kind, row.task, row.metric, arm), []).append(row.delta)
    out = []
    for (kind, task, metric, arm), gains in sorted(arms.items()):
        out.append(SeedGain(kind=kind, task=task, metric=metric, arm=arm, seeds=len(gains),
                            gains_points=[round(g, 3) for g in gains], mean_points=statistics.fmean(gains),
                            sd_points=statistics.stdev(gains) if len(gains) > 1 else None,
                            min_points=min(gains), max_points=max(gains)))
    return out


def arms_vs(run_dir: Path, policy: Policy | None):
    """Arm B against arm A (harness.analysis.arms) under the gate's settings, so that run.json
    and verdict.json hold the same numbers; None for a run with one arm."""
    from harness.analysis.arms import SPREAD_K, arm_verdict
    from harness.analysis.pairing import load_paired_run

    paired = load_paired_run(run_dir)
    if policy is None:
        return arm_verdict(paired)
    return arm_verdict(paired, spread_k=policy.b_vs_a.spread_k if policy.b_vs_a else SPREAD_K,
                       confidence=policy.confidence, resamples=policy.bootstrap.resamples,
                       permutations=policy.bootstrap.permutations, seed=policy.bootstrap.seed)


def _check(ab: ABConfig) -> None:
    if not ab.train.exists():
        raise ConfigError(f"--train {ab.train}: no such file", "pass the training data (JSONL/CSV/Parquet)")
    if not ab.seeds:
        raise ConfigError("--seeds is empty", "pass e.g. --seeds 0,1,2")
    if not ab.suites and not ab.benches:
        raise ConfigError("nothing to evaluate", "pass --suite and/or --bench")
    from harness.leaks.temporal import check_dates

    check_dates(ab.train_cutoff, ab.suites, [ab.train], ab.trust_code)  # bad dates fail before any training
    from harness.outputs.guard import check_dir

    folder = RunFolder(check_dir(ab.out))
    if folder.has_run() and not ab.force and not folder.written_by_ab():
        raise ConfigError(f"--out {ab.out} already holds a run that `harness ab` did not write",
                          "choose another --out folder, or pass --force to replace it")


def run_ab(ab: ABConfig, *, policy: str | Path | Policy | None = None, noise: str | Path | None = None,
           log: Callable[[str], None] = print, trackers: Sequence = ()) -> tuple[RunMeta, int]:
    """Preflight, train, leak-check, compare, gate and report; returns (run.json, exit code).

    The gate policy is checked against the suites and benchmarks before any training;
    `trackers` (`--log-to`, already prepared) get the finished folder last.
    """
    from harness import pipeline

    _check(ab)
    gate = pipeline.preflight(policy, noise, suites=ab.suites, benches=ab.benches, trust_code=ab.trust_code,
                              perturb=ab.perturb)
    from harness.evaluate.devices import resolve

    resolve(ab.device, ab.dtype)  # an absent or misspelt device fails before any training
    if gate.policy is not None and gate.policy.b_vs_a and gate.policy.b_vs_a.rules and ab.vs is None:
        raise ConfigError(f"{gate.policy.source or 'policy'}: b_vs_a rules compare arm B with arm A, but no --vs "
                          "was given", "pass --vs CONFIG (arm B's training settings), or remove `b_vs_a.rules`")
    from harness.evaluate.forgetting.chat_format import BenchFormat, with_policy

    ab.bench_format = with_policy(ab.bench_format or BenchFormat(), gate.policy)
    training: dict[str, dict] = {}

    def evaluate() -> RunMeta:
        from harness.evaluate.run import RunConfig, execute

        adapters, records = train_arms(ab, log)
        training.update(records)
        cfg = RunConfig(base=ab.base, out=ab.out, adapters=adapters, suites=ab.suites, benches=ab.benches,
                        limit=ab.limit, limit_per_subject=ab.limit_per_subject, num_fewshot=ab.num_fewshot,
                        **({"bench_format": ab.bench_format} if ab.bench_format is not None else {}),
                        dtype=ab.dtype, device=ab.device, trust_code=ab.trust_code, force=True, command=ab.command,
                        train_files=[ab.train], train_cutoff=ab.train_cutoff, extra_meta={"training": training},
                        perturb=ab.perturb)
        return execute(cfg, warn=lambda m: log(f"warning: {m}"))

    def add_summary(meta: RunMeta) -> RunMeta:
        meta.ab = ABSummary(seeds=ab.seeds, arms=sorted({r["arm"] for r in training.values()}),
                            summary=seed_summary(meta, training), b_vs_a=arms_vs(ab.out, gate.policy))
        RunFolder(ab.out).write_meta(meta)
        return meta

    return pipeline.run(ab.out, evaluate, gate, log=log, evaluated=add_summary, trackers=trackers)
