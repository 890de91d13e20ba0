"""Evaluate a base model and its adapters on suites in one process; write the run log."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.evaluate.engines.cache import ResultCache, item_key
from harness.errors import ConfigError
from harness.hashing import sha256_bytes, sha256_json
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
    dtype: str = "float32"
    seed: int = 0
    allow_pickle: bool = False
    trust_remote_code: bool = False
    trust_code: list[Path] = field(default_factory=list)
    use_cache: bool = True
    judge: bool = True
    force: bool = False
    command: list[str] = field(default_factory=list)
    train_files: list[Path] = field(default_factory=list)  # scanned for leaks into the eval items
    extra_meta: dict[str, Any] = field(default_factory=dict)  # e.g. training records from `harness ab`
    order_seed: int | None = None  # shuffle batch composition (noise calibration); None: length-sorted

    def spec(self) -> dict[str, Any]:
        return {"base": self.base, "adapters": list(self.adapters), "suites": list(self.suites),
                "benches": list(self.benches), "num_fewshot": self.num_fewshot,
                "limit_per_subject": self.limit_per_subject, "limit": self.limit,
                "include_base": self.include_base, "dtype": self.dtype, "seed": self.seed, "judge": self.judge,
                "train_files": [str(p) for p in self.train_files],
                **({"order_seed": self.order_seed} if self.order_seed is not None else {})}


def default_cache_path() -> Path:
    from harness.assets import home

    return home() / "cache" / "results.sqlite"


def _check_out_dir(cfg: RunConfig) -> None:
    """Refuse to replace a finished run of something else: results are never silently lost."""
    folder = RunFolder(cfg.out)
    if cfg.out.exists() and not cfg.out.is_dir():
        raise ConfigError(f"--out {cfg.out} is a file", "pass a folder path")
    if folder.has_run() and not cfg.force:
        if folder.read_spec() != cfg.spec():
            raise ConfigError(f"{cfg.out} already holds a run of other models/suites/settings",
                              "choose another --out folder, or pass --force to replace it")


def encode_prompt(tokenizer, prompt) -> tuple[str, list[int]]:
    """Rendered text (what the model sees) and its token ids."""
    if prompt.messages:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("the suite asks for a chat prompt but the model's tokenizer has no chat template",
                              "set `chat: false` in the suite, or use an instruct model")
        msgs = [{"role": r, "content": c} for r, c in prompt.messages]
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return text, tokenizer(text, add_special_tokens=False)["input_ids"]
    return prompt.text, tokenizer(prompt.text)["input_ids"]


class _Progress:
    """Rich progress bars on stderr; HARNESS_PROGRESS=0 turns them off."""

    def __init__(self):
        import os

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=False,
                          disable=os.environ.get("HARNESS_PROGRESS") == "0")

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)

    def task(self, desc: str, total: int) -> Callable[[int], None]:
        tid = self.p.add_task(desc, total=total)
        return lambda n: self.p.advance(tid, n)


def evaluate_suite(bundle, suite, model_names: list[str], limit: int | None, batch_size: int,
                   cache: ResultCache, progress: _Progress, stats: dict[str, int],
                   order_seed: int | None = None) -> tuple[list[dict], dict]:
    """Generate and score one suite for each model variant; returns (records, aggregates)."""
    from harness.evaluate.engines.generate import generate_batch, plan_batches
    from harness.evaluate.metrics import get_metric

    examples = suite.examples(limit)
    if not examples:
        raise ConfigError(f"suite '{suite.name}' has no items", "check its data file")
    params = suite.generation
    encoded = [encode_prompt(bundle.tokenizer, suite.render(ex)) for ex in examples]
    prompt_hashes = [sha256_bytes(text.encode("utf-8")) for text, _ in encoded]
    id_hashes = [sha256_json(ids) for _, ids in encoded]
    plan = plan_batches([len(ids) for _, ids in encoded], batch_size, order_seed)
    metrics = [get_metric(m) for m in suite.metric_names]
    records: list[dict] = []
    aggregates: dict[str, dict] = {}
    for name in model_names:
        keys = [item_key("generate", bundle.model_key(name), h, params.key()) for h in id_hashes]
        results = cache.get_many(keys)
        advance = progress.task(f"{suite.name} · {name}", len(examples))
        hits = sum(k in results for k in keys)
        stats["cached"] += hits
        advance(hits)
        with bundle.use(name) as model:
            for batch in plan:
                if all(keys[i] in results for i in batch.indices):
                    continue
                gens = generate_batch(model, bundle.tokenizer, [encoded[i][1] for i in batch.indices], params)
                fresh = {keys[i]: g.__dict__ for i, g in zip(batch.indices, gens) if keys[i] not in results}
                cache.put_many(fresh)
                results.update(fresh)
                stats["computed"] += len(fresh)
                advance(len(fresh))
        preds = [results[k]["text"].strip() for k in keys]
        refs = [list(ex.references) for ex in examples]
        item_scores = {m.name: m.score_items(preds, refs) for m in metrics}
        agg = {m.name: m.aggregate(preds, refs, item_scores[m.name]) for m in metrics}
        gens = [results[k] for k in keys]
        agg.update(n=len(examples),
                   mean_latency_s=sum(g["latency_s"] for g in gens) / len(gens),
                   mean_new_tokens=sum(g["new_tokens"] for g in gens) / len(gens))
        aggregates[name] = agg
        for i, ex in enumerate(examples):
            g = gens[i]
            records.append({
                "model": name, "kind": "suite", "task": suite.name, "item_id": ex.id,
                "prompt_hash": prompt_hashes[i], "prediction": preds[i], "references": refs[i],
                "scores": {m.name: item_scores[m.name][i] for m in metrics},
                "latency_s": round(g["latency_s"], 4), "prompt_tokens": g["prompt_tokens"],
                "new_tokens": g["new_tokens"], "stopped_by": g["stopped_by"],
            })
    return records, aggregates


def execute(cfg: RunConfig, warn: Callable[[str], None] | None = None) -> RunMeta:
    """Validate everything cheap, load models once, evaluate, write the run log; returns run.json."""
    from harness.evaluate import models
    from harness.evaluate.metrics import get_metric
    from harness.evaluate.provenance import code_version, library_versions, machine
    from harness.evaluate.suites import load_suite

    warn = warn or (lambda m: print(f"warning: {m}", file=sys.stderr))
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
    if cfg.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {cfg.batch_size}", "pass a positive number")
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
    _check_out_dir(cfg)
    leak_report = scan_leaks(cfg, suites, warn) if cfg.train_files else None

    import torch

    torch.manual_seed(cfg.seed)
    started = time.time()
    bundle = models.load(cfg.base, cfg.adapters, dtype=cfg.dtype, allow_pickle=cfg.allow_pickle,
                         trust_remote_code=cfg.trust_remote_code, warn=warn)
    load_s = time.time() - started
    model_names = (["base"] if cfg.include_base or not bundle.adapters else []) + list(bundle.adapters)
    cache = ResultCache(default_cache_path() if cfg.use_cache else None)
    stats = {"cached": 0, "computed": 0}
    records: list[dict] = []
    suite_aggs: dict[str, dict] = {}
    judge_results: dict[str, Any] = {}
    bench_aggs: dict[str, dict] = {}
    bench_prov: dict[str, Any] = {}
    try:
        with _Progress() as progress:
            for suite in suites:
                recs, aggs = evaluate_suite(bundle, suite, model_names, cfg.limit, cfg.batch_size, cache, progress, stats,
                                            cfg.order_seed)
                if suite in judged:
                    from harness.evaluate.judges import judge_records

                    judge_results[suite.name] = judge_records(
                        suite, suite.examples(cfg.limit), recs, aggs, use_cache=cfg.use_cache,
                        log=lambda m: progress.p.console.print(m, markup=False, highlight=False))
                records.extend(recs)
                suite_aggs[suite.name] = aggs
            if cfg.benches:
                from harness.evaluate.forgetting.runner import add_flips, evaluate_benchmarks

                recs, bench_aggs, bench_prov = evaluate_benchmarks(
                    bundle, cfg.benches, model_names, num_fewshot=cfg.num_fewshot, limit=cfg.limit,
                    limit_per_subject=cfg.limit_per_subject, seed=cfg.seed, batch_size=cfg.batch_size,
                    cache=cache, progress=progress.task, order_seed=cfg.order_seed)
                add_flips(recs, bench_aggs)
                records.extend(recs)
                for counts in bench_prov.get("_requests", {}).values():
                    stats["computed"] += counts["computed"]
                    stats["cached"] += counts["cached"]
    finally:
        cache.close()
    if leak_report is not None:
        from harness.leaks import write_leaks

        labels = leak_report.label_map()
        for rec in records:
            label = labels.get((rec["task"], rec["item_id"]))
            if label is not None:
                rec["leak"] = label
        write_leaks(cfg.out, leak_report)
    metric_info = {}
    if cfg.benches:
        from harness.evaluate.forgetting.runner import BENCH_METRICS

        metric_info.update({m: {"higher_is_better": True, "corpus_level": False} for m in BENCH_METRICS})
    for jr in judge_results.values():
        metric_info.update({k: {"higher_is_better": v["higher_is_better"], "corpus_level": False}
                            for k, v in jr.metrics.items()})
    for s in suites:
        for m in map(get_metric, s.metric_names):
            metric_info[m.name] = {"higher_is_better": m.higher_is_better, "corpus_level": m.corpus_level}
    meta = RunMeta.model_validate({
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": cfg.command,
        "spec": cfg.spec(),
        "models": model_names,
        "provenance": {
            "base": bundle.base.__dict__,
            "adapters": {n: {"path": str(a.path), "sha256": a.sha256,
                             "base_model_name_or_path": a.config.get("base_model_name_or_path"),
                             "lora": {k: a.config.get(k) for k in ("r", "lora_alpha", "target_modules")},
                             "probe_max_abs_logit_delta": a.probe_max_abs_logit_delta,
                             "has_effect": a.has_effect, "warnings": a.warnings}
                         for n, a in bundle.adapters.items()},
            "suites": {s.name: s.fingerprint() for s in suites},
            "judges": {name: jr.provenance for name, jr in judge_results.items()},
            "benchmarks": {k: v for k, v in bench_prov.items() if not k.startswith("_")},
            "lm_eval_results": bench_prov.get("_lm_eval_results", {}),
            "bench_requests": bench_prov.get("_requests", {}),
            "code": code_version(),
            "libraries": library_versions(),
            "machine": machine(),
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
        },
        "metrics": metric_info,
        "judges": {name: jr.stats for name, jr in judge_results.items()},
        "aggregates": {"suites": suite_aggs, **({"bench": bench_aggs} if cfg.benches else {})},
        **({"leaks": {**leak_report.summary, "clean_aggregates": clean_aggregates(records)}} if leak_report else {}),
        **cfg.extra_meta,
        "timing": {"load_s": round(load_s, 2), "total_s": round(time.time() - started, 2),
                   "items_computed": stats["computed"], "items_cached": stats["cached"]},
    })
    RunFolder(cfg.out).write_run(meta, records)
    return meta


def scan_leaks(cfg: RunConfig, suites, warn: Callable[[str], None]):
    """Label every eval item clean/suspect/contaminated against the training files."""
    from harness.leaks import BENCH_TASKS, bench_items, is_bench_task, scan, suite_items

    for path in cfg.train_files:
        if not Path(path).exists():
            raise ConfigError(f"--train {path}: no such file or folder", "pass the adapter's training data file")
    items = [it for s in suites for it in suite_items(s, trusted_dirs=tuple(cfg.trust_code))]
    for bench in cfg.benches:
        if is_bench_task(bench):
            items.extend(bench_items(bench))
        else:
            warn(f"no leak check for benchmark '{bench}': offline leak data covers {', '.join(BENCH_TASKS)}")
    return scan([str(p) for p in cfg.train_files], items, workers=2)


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
