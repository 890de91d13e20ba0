"""Evaluate a base model and its adapters on suites in one process; write the run log."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.evaluate.distributed import current as current_dist
from harness.evaluate.distributed import describe as describe_dist
from harness.evaluate.engines.cache import ResultCache
from harness.evaluate.engines.open import check_engine, open_engine
from harness.evaluate.forgetting.chat_format import BenchFormat, check_chat_template
from harness.evaluate.suite_eval import Progress, evaluate_suite
from harness.errors import ConfigError
from harness.log.folder import RunFolder
from harness.log.schema import RunMeta


@dataclass
class RunConfig:
    """Everything a run depends on; `spec()` is what two runs must share to be the same run."""

    base: str
    out: Path
    adapters: list[str] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    benches: list[str] = field(default_factory=list)
    num_fewshot: int = 0
    limit_per_subject: int | None = None
    limit: int | None = None
    include_base: bool = True
    batch_size: int = 16
    dtype: str = "auto"  # bf16 on CUDA, fp32 elsewhere; resolved (and so recorded) by `execute`
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    device_map: str | None = None  # "auto": layers spread over GPUs and CPU RAM (accelerate)
    load_in: str | None = None  # "4bit" | "8bit": a bitsandbytes-quantized base (QLoRA)
    engine: str = "transformers"  # transformers | vllm
    tensor_parallel: int = 1  # vLLM: GPUs one model is split over
    seed: int = 0
    allow_pickle: bool = False
    trust_remote_code: bool = False
    trust_code: list[Path] = field(default_factory=list)
    use_cache: bool = True
    judge: bool = True
    force: bool = False
    command: list[str] = field(default_factory=list)
    train_files: list[Path] = field(default_factory=list)  # scanned for leaks into the eval items
    train_cutoff: str | None = None  # last day the training data covers (YYYY-MM-DD; harness.leaks.temporal)
    extra_meta: dict[str, Any] = field(default_factory=dict)  # e.g. training records from `harness ab`
    order_seed: int | None = None  # shuffle batch composition (noise calibration); None: length-sorted
    perturb: int = 0  # re-ask each suite item under this many seeded prompt variants (harness.evaluate.perturb)
    baselines: list[str] = field(default_factory=list)  # fewshot:K | system:FILE arms (harness.evaluate.baselines)
    baseline_models: list[str] = field(default_factory=list)  # [NAME=]PATH | [NAME=]openai:MODEL@URL arms
    bench_format: "BenchFormat" = field(default_factory=lambda: BenchFormat())  # benchmark prompts: chat template or plain

    def spec(self) -> dict[str, Any]:
        return {"base": self.base, "adapters": list(self.adapters), "suites": list(self.suites),
                "benches": list(self.benches), "num_fewshot": self.num_fewshot,
                "limit_per_subject": self.limit_per_subject, "limit": self.limit,
                "include_base": self.include_base, "dtype": self.dtype, "seed": self.seed, "judge": self.judge,
                "train_files": [str(p) for p in self.train_files],
                **({"train_cutoff": self.train_cutoff} if self.train_cutoff else {}),
                **({"order_seed": self.order_seed} if self.order_seed is not None else {}),
                **({"perturb": self.perturb} if self.perturb else {}),
                **({"baselines": list(self.baselines)} if self.baselines else {}),
                **({"baseline_models": list(self.baseline_models)} if self.baseline_models else {}),
                **({"bench_format": self.bench_format.record()} if self.bench_format.active else {})}


def default_cache_path() -> Path:
    from harness.assets import home

    return home() / "cache" / "results.sqlite"


def _check_out_dir(cfg: RunConfig) -> None:
    """Refuse to replace a finished run of something else: results are never silently lost."""
    from harness.outputs.guard import check_dir

    folder = RunFolder(check_dir(cfg.out))
    if folder.has_run() and not cfg.force:
        if folder.read_spec() != cfg.spec():
            raise ConfigError(f"{cfg.out} already holds a run of other models/suites/settings",
                              "choose another --out folder, or pass --force to replace it")


def execute(cfg: RunConfig, warn: Callable[[str], None] | None = None) -> RunMeta | None:
    """Validate everything cheap, load models once, evaluate, write the run log; returns run.json
    (None on the other ranks of a data-parallel launch, which write nothing)."""
    from harness.evaluate.metrics import get_metric
    from harness.evaluate.provenance import code_version, library_versions, machine
    from harness.evaluate.suites import load_suite

    warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
    from harness.home import allow_writes

    allow_writes(cfg.use_cache)
    if not cfg.suites and not cfg.benches:
        raise ConfigError("nothing to evaluate", "pass --suite NAME (see `harness suites list`) and/or --bench mmlu,hellaswag")
    if cfg.limit_per_subject is not None and cfg.limit_per_subject < 1:
        raise ConfigError(f"--limit-per-subject must be at least 1, got {cfg.limit_per_subject}", "pass a positive number")
    if cfg.num_fewshot < 0:
        raise ConfigError(f"--num-fewshot must be 0 or more, got {cfg.num_fewshot}", "pass 0 or a positive number")
    if cfg.benches:
        from harness.evaluate.forgetting.tasks import resolve

        resolve(cfg.benches, num_fewshot=cfg.num_fewshot)  # unknown names fail before model loading
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {cfg.limit}", "pass a positive number or omit it")
    if cfg.perturb < 0:
        raise ConfigError(f"--perturb must be 0 or more, got {cfg.perturb}", "pass e.g. --perturb 3")
    if cfg.perturb and not cfg.suites:
        raise ConfigError("--perturb re-asks suite items, and this run has no --suite", "add --suite NAME, or drop --perturb")
    if cfg.train_cutoff is not None:
        if not cfg.train_files:
            raise ConfigError("--train-cutoff dates the training data, and this run has no --train",
                              "add --train FILE, or drop --train-cutoff")
        from harness.leaks.temporal import parse_cutoff

        parse_cutoff(cfg.train_cutoff)
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {cfg.batch_size}", "pass a positive number")
    from harness.evaluate.devices import peak_memory
    from harness.evaluate.devices import resolve as resolve_placement

    placement = resolve_placement(cfg.device, cfg.dtype, cfg.device_map, cfg.load_in)
    check_engine(cfg, placement)
    cfg.dtype = placement.dtype  # the spec records what ran, so runs compare across --dtype auto/explicit
    suites = [load_suite(s, trusted_dirs=cfg.trust_code) for s in cfg.suites]
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise ConfigError(f"suite '{[n for n in names if names.count(n) > 1][0]}' is named twice", "pass each suite once")
    for s in suites:
        for m in s.metric_names:
            get_metric(m)
        s.examples(cfg.limit)  # data errors surface before minutes of model loading
    from harness.evaluate.judges import judge_enabled, validate_judge

    judged = [s for s in suites if cfg.judge and judge_enabled(s)]
    for s in judged:  # missing key, unreachable endpoint, bad rubric: fail before loading models
        validate_judge(s)
    from harness.evaluate.models import check_files

    check_files(cfg.base, cfg.adapters, allow_pickle=cfg.allow_pickle, trust_remote_code=cfg.trust_remote_code)
    from harness.evaluate import baselines
    from harness.evaluate.models import parse_adapters

    arms = baselines.parse_all(cfg.baselines, cfg.baseline_models, [n for n, _ in parse_adapters(cfg.adapters)])
    baselines.prepare(arms, suites, seed=cfg.seed, engine=cfg.engine, allow_pickle=cfg.allow_pickle,
                      trust_remote_code=cfg.trust_remote_code)  # pools, K, files, endpoints: before any model
    if cfg.benches and cfg.bench_format.chat_template:
        check_chat_template(cfg.base, trust_remote_code=cfg.trust_remote_code)  # tokenizer only: no weights load
    _check_out_dir(cfg)
    dist = current_dist()  # under accelerate launch / torchrun: this rank; else a world of one
    leak_report = scan_leaks(cfg, suites, warn) if cfg.train_files and dist.is_main else None

    import torch

    torch.manual_seed(cfg.seed)
    started = time.time()
    engine = open_engine(cfg, placement, warn)
    load_s = time.time() - started
    model_names = (["base"] if cfg.include_base or not engine.adapters else []) + list(engine.adapters)
    cache = ResultCache(default_cache_path() if cfg.use_cache else None)
    stats = {"cached": 0, "computed": 0}
    records: list[dict] = []
    suite_aggs: dict[str, dict] = {}
    judge_results: dict[str, Any] = {}
    bench_aggs: dict[str, dict] = {}
    bench_prov: dict[str, Any] = {}
    try:
        with Progress() as progress:
            for suite in suites:
                recs, per_task = evaluate_suite(engine, suite, model_names, cfg.limit, cache, progress, stats,
                                                cfg.order_seed, dist, perturb=cfg.perturb, perturb_seed=cfg.seed)
                if suite in judged and dist.is_main:
                    from harness.evaluate.judges import judge_records

                    judge_results[suite.name] = judge_records(
                        suite, suite.examples(cfg.limit), [r for r in recs if r["task"] == suite.name],
                        per_task[suite.name], use_cache=cfg.use_cache,
                        log=lambda m: progress.p.console.print(m, markup=False, highlight=False))
                records.extend(recs)
                suite_aggs.update(per_task)
            if cfg.benches:
                from harness.evaluate.forgetting.runner import add_flips, evaluate_benchmarks

                recs, bench_aggs, bench_prov = evaluate_benchmarks(
                    engine, cfg.benches, model_names, num_fewshot=cfg.num_fewshot, limit=cfg.limit,
                    limit_per_subject=cfg.limit_per_subject, seed=cfg.seed, batch_size=cfg.batch_size,
                    cache=cache, progress=progress.task, dist=dist, bench_format=cfg.bench_format)
                add_flips(recs, bench_aggs)
                records.extend(recs)
                for counts in bench_prov.get("_requests", {}).values():
                    stats["computed"] += counts["computed"]
                    stats["cached"] += counts["cached"]
            if arms:
                def run_suite(eng, suite, names, **kw):
                    return evaluate_suite(eng, suite, names, cfg.limit, cache, progress, stats, cfg.order_seed, dist, **kw)

                recs, arm_aggs, arm_prov = baselines.evaluate(arms, cfg, engine, suites, placement, run_suite, warn)
                records.extend(recs)
                for task, per_model in arm_aggs.items():
                    suite_aggs[task].update(per_model)
    finally:
        cache.close()
        engine.close()
    if not dist.is_main:  # rank 0 holds every record and alone writes the run folder
        return None
    if leak_report is not None:
        from harness.leaks.report import item_tags

        tags = item_tags(leak_report)  # leak label, contamination kind, temporal status
        for rec in records:
            rec.update(tags.get((rec["task"], rec["item_id"]), {}))
    metric_info = {}
    # every per-item benchmark metric harness records is higher-is-better: acc, acc_norm, exact_match
    bench_metrics = dict.fromkeys(m for r in records if r["kind"] == "bench" for m in r["scores"])
    metric_info.update({m: {"higher_is_better": True, "corpus_level": False} for m in bench_metrics})
    for jr in judge_results.values():
        metric_info.update({k: {"higher_is_better": v["higher_is_better"], "corpus_level": False}
                            for k, v in jr.metrics.items()})
    for s in suites:
        for m in map(get_metric, s.metric_names):
            metric_info[m.name] = {"higher_is_better": m.higher_is_better, "corpus_level": m.corpus_level}
    if cfg.perturb:
        metric_info["consistent"] = {"higher_is_better": True, "corpus_level": False}
    meta = RunMeta.model_validate({
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": cfg.command,
        "spec": cfg.spec(),
        "models": model_names + [a.name for a in arms],
        "provenance": {
            "base": engine.base.__dict__,
            "adapters": {n: {"path": str(a.path), "sha256": a.sha256,
                             "base_model_name_or_path": a.config.get("base_model_name_or_path"),
                             "lora": {k: a.config.get(k) for k in ("r", "lora_alpha", "target_modules")},
                             "probe_max_abs_logit_delta": a.probe_max_abs_logit_delta, "probe_quantity": a.probe_quantity,
                             "has_effect": a.has_effect, "warnings": a.warnings}
                         for n, a in engine.adapters.items()},
            "suites": {s.name: s.fingerprint() for s in suites},
            "judges": {name: jr.provenance for name, jr in judge_results.items()},
            **({"baselines": arm_prov} if arms else {}),
            "benchmarks": {k: v for k, v in bench_prov.items() if not k.startswith("_")},
            "lm_eval_results": bench_prov.get("_lm_eval_results", {}),
            "bench_requests": bench_prov.get("_requests", {}),
            "code": code_version(),
            "libraries": library_versions(),
            "machine": machine(),
            "placement": {**placement.record(), **peak_memory(placement.device), "engine": engine.kind},
            "distributed": describe_dist(dist),
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
        },
        "metrics": metric_info,
        "judges": {name: jr.stats for name, jr in judge_results.items()},
        "aggregates": {"suites": suite_aggs, **({"bench": bench_aggs} if cfg.benches else {})},
        **({"leaks": {**leak_report.summary, "clean_aggregates": clean_aggregates(records),
                      "subset_aggregates": subset_aggregates(records)}} if leak_report else {}),
        **cfg.extra_meta,
        "timing": {"load_s": round(load_s, 2), "total_s": round(time.time() - started, 2),
                   "items_computed": stats["computed"], "items_cached": stats["cached"]},
    })
    folder = RunFolder(cfg.out)
    folder.write_run(meta, records)  # first: a failed write (disk full) leaves the earlier run whole
    folder.clear_derived(in_use=[a.path for a in engine.adapters.values()])
    if leak_report is not None:
        from harness.leaks import write_leaks

        write_leaks(cfg.out, leak_report)
    return meta


def scan_leaks(cfg: RunConfig, suites, warn: Callable[[str], None]):
    """Label every eval item clean/suspect/contaminated against the training files."""
    from harness.leaks import BENCH_TASKS, bench_items, is_bench_task, scan, suite_items

    for path in cfg.train_files:
        if not Path(path).exists():
            raise ConfigError(f"--train {path}: no such file or folder", "pass the adapter's training data file")
    items = [it for s in suites for it in suite_items(s, trusted_dirs=tuple(cfg.trust_code), dates=True)]
    for bench in cfg.benches:
        if is_bench_task(bench):
            items.extend(bench_items(bench))
        else:
            warn(f"no leak check for benchmark '{bench}': offline leak data covers {', '.join(BENCH_TASKS)}")
    return scan([str(p) for p in cfg.train_files], items, workers=2, train_cutoff=cfg.train_cutoff)


def subset_aggregates(records: list[dict]) -> dict[str, Any]:
    """Item-level metric means on contaminated items (all, input only, input + answer) and on
    items by date against the training cutoff (harness.analysis.leak_subsets)."""
    from harness.analysis.leak_subsets import subset_aggregates as means

    return means(records)


def clean_aggregates(records: list[dict]) -> dict[str, Any]:
    """Item-level metric means on the items labelled clean, per kind, task and model."""
    sums: dict[tuple, list[float]] = {}
    for r in records:
        if r.get("leak", "clean") != "clean":
            continue
        for metric, value in r.get("scores", {}).items():
            if isinstance(value, (int, float)):
                sums.setdefault((r["kind"], r["task"], r["model"], metric), []).append(float(value))
    out: dict[str, Any] = {}
    for (kind, task, model, metric), vals in sums.items():
        agg = out.setdefault(kind, {}).setdefault(task, {}).setdefault(model, {})
        agg[metric] = sum(vals) / len(vals)
        agg["n"] = len(vals)
    return out
