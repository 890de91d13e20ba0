"""Run benchmark tasks through lm-eval for each model variant; per-item records + aggregates."""

from __future__ import annotations

import json
import logging
import os
import random
from typing import Any, Callable

from harness.evaluate.distributed import Dist
from harness.evaluate.engines.cache import ResultCache, item_key
from harness.evaluate.forgetting.chat_format import BenchFormat
from harness.evaluate.forgetting.tasks import LeafTask, is_offline, item_id, resolve, task_manager
from harness.hashing import sha256_bytes, sha256_json


def _quiet_lm_eval() -> None:
    from harness.evaluate.provenance import quiet_lm_eval_git

    for name in ("lm-eval", "lm_eval", "lm_eval.evaluator", "lm_eval.models.huggingface", "lm_eval.api.task"):
        logging.getLogger(name).setLevel(logging.ERROR)
    quiet_lm_eval_git()  # its `git describe` prints "fatal: not a git repository" outside a checkout


def choose_samples(tasks: dict[str, Any], limit: int | None, limit_per_subject: int | None,
                   seed: int) -> dict[str, list[int]] | None:
    """Doc indices per leaf task: the first `limit`, or a seeded sample of `limit_per_subject`.

    Each task draws from its own seeded generator, so adding a task never changes another's
    items, and base and adapters always see the very same docs.
    """
    if not limit and not limit_per_subject:
        return None
    out = {}
    for name, task in tasks.items():
        n = len(task.eval_docs)
        if limit_per_subject:
            rng = random.Random(f"{seed}:{name}")
            out[name] = sorted(rng.sample(range(n), min(limit_per_subject, n)))
        else:
            out[name] = list(range(min(limit, n)))
    return out


def evaluate_benchmarks(engine, benches: list[str], model_names: list[str], *, num_fewshot: int = 0,
                        limit: int | None = None, limit_per_subject: int | None = None, seed: int = 0,
                        batch_size: int = 16, cache: ResultCache | None = None,
                        progress: Callable[[str, int], Callable[[int], None]] | None = None,
                        offline: bool | None = None, dist: Dist | None = None,
                        bench_format: BenchFormat | None = None) -> tuple[list[dict], dict, dict]:
    """Returns (items.jsonl records, aggregates {bench: {model: {...}}}, provenance {bench: {...}}).

    `engine` scores; lm-eval builds the requests and computes the metrics. In a
    data-parallel launch every rank runs lm-eval over all docs (cheap) and scores its share
    of the requests; the records are complete on rank 0. `bench_format` renders prompts
    through the chat template (lm-eval's own rendering), plain by default.
    """
    from lm_eval import simple_evaluate

    from harness.evaluate.forgetting.backend import HarnessLM

    _quiet_lm_eval()
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's own bars; ours are on stderr via rich
    offline = is_offline() if offline is None else offline
    leaves = resolve(benches, num_fewshot=num_fewshot, offline=offline)
    by_name: dict[str, LeafTask] = {leaf.name: leaf for leaf in leaves}
    tm = task_manager(offline)
    specs = [leaf.config or leaf.name for leaf in leaves]
    tasks = tm.load(specs)["tasks"]  # loaded once: reused by every model variant
    samples = choose_samples(tasks, limit, limit_per_subject, seed)
    cache = cache or ResultCache(None)
    bench_format = bench_format or BenchFormat()
    content = _content_hash(tasks, samples, num_fewshot, seed, bench_format.record())
    dist = dist or Dist()
    lm = HarnessLM(pretrained=engine.model, tokenizer=engine.tokenizer, engine=engine, batch_size=batch_size,
                   cache=cache, progress=progress, dist=dist)
    records: list[dict] = []
    aggregates: dict[str, dict] = {}
    counts: dict[str, dict[str, int]] = {}
    lm_eval_results: dict[str, Any] = {}
    for name in model_names:
        label = f"{','.join(benches)} · {name}"
        # A model's whole benchmark outcome is cached under its weights and the exact docs,
        # configs and settings: a second adapter against the same base skips lm-eval for it.
        key = item_key("bench-records", engine.model_key(name), content, {"max_length": lm.max_length})
        hit = cache.get_many([key]).get(key)
        if not all(dist.all_gather(hit is not None)):  # every rank must take the same path
            hit = None
        if hit is not None:
            counts[name] = {"computed": 0, "cached": hit["requests"]}
            lm_eval_results[name] = hit["lm_eval"]
            records.extend(hit["records"])
            if progress:
                progress(label, hit["requests"])(hit["requests"])
            continue
        lm.variant = name
        lm.model_key = engine.model_key(name)
        lm.label = label
        lm.counts = {"computed": 0, "cached": 0}
        # task_manager=tm: without it lm-eval indexes all of its ~14k task YAMLs again (~20 s).
        res = simple_evaluate(model=lm, tasks=list(tasks.values()), num_fewshot=num_fewshot, task_manager=tm,
                              samples=samples, log_samples=True, bootstrap_iters=0, verbosity="ERROR",
                              random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                              fewshot_random_seed=seed, **bench_format.lm_eval_kwargs())
        counts[name] = dict(lm.counts)
        if not dist.is_main:  # lm-eval returns results on local rank 0 only; rank 0 writes the run
            continue
        lm_eval_results[name] = {k: {m: v for m, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                                 for k, r in res["results"].items()}
        mine = [rec for task_name, rows in res["samples"].items()
                for rec in _records(name, by_name[task_name], rows, lm.truncated)]
        records.extend(mine)
        cache.put_many({key: {"records": mine, "lm_eval": lm_eval_results[name],
                              "requests": counts[name]["computed"] + counts[name]["cached"]}})
    for rec in records:
        per = aggregates.setdefault(rec["task"], {}).setdefault(rec["model"], {"_items": []})
        per["_items"].append(rec)
    for bench, per_model in aggregates.items():
        for model, agg in per_model.items():
            items = agg.pop("_items")
            for metric in dict.fromkeys(m for r in items for m in r["scores"]):
                vals = [r["scores"][metric] for r in items if metric in r["scores"]]
                agg[metric] = sum(vals) / len(vals)
            agg["n"] = len(items)
            if any(r.get("truncated_tokens") for r in items):
                agg["truncated"] = sum(bool(r.get("truncated_tokens")) for r in items)
            primary = "acc" if "acc" in items[0]["scores"] else next(iter(items[0]["scores"]), None)
            subjects: dict[str, list[float]] = {}
            for r in items:
                subjects.setdefault(r["subject"], []).append(r["scores"].get(primary, 0.0))
            if len(subjects) > 1 and primary:
                agg["per_subject"] = {s: {primary: sum(v) / len(v), "n": len(v)} for s, v in sorted(subjects.items())}
    provenance = {
        bench: {
            "tasks": sorted(leaf.name for leaf in leaves if leaf.bench == bench),
            "source": "offline mirror of lm-eval's config" if offline else "lm-eval",
            "split": sorted({leaf.split_note for leaf in leaves if leaf.bench == bench} - {""}),
            "num_fewshot": num_fewshot, "limit": limit, "limit_per_subject": limit_per_subject, "seed": seed,
            "item_set_hash": sha256_json(sorted(r["item_id"] for r in records
                                                if r["task"] == bench and r["model"] == model_names[0])),
            "lm_eval_version": _lm_eval_version(),
            **({"format": bench_format.record()} if bench_format.active else {}),
            "output_type": sorted({leaf.output_type for leaf in leaves if leaf.bench == bench}),
        }
        for bench in benches
    }
    provenance["_lm_eval_results"] = lm_eval_results
    provenance["_requests"] = counts
    return records, aggregates, provenance


def _content_hash(tasks: dict[str, Any], samples: dict[str, list[int]] | None, num_fewshot: int, seed: int,
                  fmt: dict[str, Any] | None = None) -> str:
    """Everything besides the model that decides a benchmark outcome: task configs, the
    evaluated docs themselves (so changed data never hits), few-shot settings, versions."""
    def named(obj: Any) -> str:  # configs hold functions (process_docs ...): by name, stable
        return getattr(obj, "__qualname__", type(obj).__name__)

    def digest(obj: Any) -> str:
        return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=named).encode("utf-8"))

    parts = {}
    for name, task in sorted(tasks.items()):
        docs = task.eval_docs
        picked = samples[name] if samples and name in samples else range(len(docs))
        parts[name] = {"config": digest(task.dump_config()), "docs": digest([docs[i] for i in picked])}
    return sha256_json({"tasks": parts, "num_fewshot": num_fewshot, "seed": seed, "lm_eval": _lm_eval_version(),
                        **({"format": fmt} if fmt else {})})


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def _records(model: str, leaf: LeafTask, rows: list[dict], truncated: dict) -> list[dict]:
    """One record per doc: lm-eval logs a generative doc once per filter, merged here."""
    out: list[dict] = []
    by_doc: dict[int, list[dict]] = {}
    for s in rows:  # multiple choice answers (log-likelihood, greedy) pairs; generation answers text
        if s["filtered_resps"] and isinstance(s["filtered_resps"][0], (list, tuple)):
            out.append(_choice_record(model, leaf, s, truncated))
        else:
            by_doc.setdefault(s["doc_id"], []).append(s)
    out.extend(_generated_record(model, leaf, per_filter, truncated) for _, per_filter in sorted(by_doc.items()))
    return out


def _cut(s: dict, truncated: dict, generative: bool) -> int:
    if not truncated:
        return 0
    args = [a for a in s.get("arguments", []) if isinstance(a, (list, tuple))]
    keys = [(a[0],) if generative else tuple(a) for a in args]
    return max((truncated.get(k, 0) for k in keys), default=0)


def _common(model: str, leaf: LeafTask, s: dict) -> dict:
    return {"model": model, "kind": "bench", "task": leaf.bench, "subject": leaf.subject,
            "item_id": item_id(leaf, s["doc_id"], s["doc"]), "lm_eval_task": leaf.name, "doc_id": s["doc_id"],
            "doc_hash": s.get("doc_hash"), "prompt_hash": s.get("prompt_hash")}


def _choice_record(model: str, leaf: LeafTask, s: dict, truncated: dict | None = None) -> dict:
    lls = [float(r[0]) for r in s["filtered_resps"]]
    cut = _cut(s, truncated or {}, generative=False)
    pred = max(range(len(lls)), key=lambda i: lls[i])
    scores = {m: float(s[m]) for m in s.get("metrics", ("acc", "acc_norm"))
              if isinstance(s.get(m), (int, float))}  # corpus-level metrics (f1, mcc) log tuples: not per item
    target = s.get("target")
    return {
        **_common(model, leaf, s),
        "prediction": str(pred), "target": target if isinstance(target, (int, str)) else str(target),
        "correct": bool(scores.get("acc", 0.0) == 1.0), "scores": scores,
        "loglikelihoods": [round(x, 6) for x in lls], **({"truncated_tokens": cut} if cut else {}),
    }


def score_name(metric: str, filter_name: str, first: bool) -> str:
    """A generative task's first filter (lm-eval's headline, e.g. GSM8K's strict-match) keeps
    the metric's own name; each further filter is a metric of its own: exact_match_flexible_extract."""
    if first or filter_name == "none":
        return metric
    return f"{metric}_{filter_name.replace('-', '_')}"


def _generated_record(model: str, leaf: LeafTask, per_filter: list[dict], truncated: dict) -> dict:
    """The generation once, then per filter its extracted answer (details) and its scores."""
    first = per_filter[0]
    scores: dict[str, float] = {}
    details: dict[str, dict] = {}
    for n, s in enumerate(per_filter):
        for metric in s.get("metrics", []):
            if isinstance(s.get(metric), (int, float)):
                name = score_name(metric, s.get("filter", "none"), n == 0)
                scores[name] = float(s[metric])
                details[name] = {"filter": s.get("filter", "none"), "extracted": str(s["filtered_resps"][0])}
    resps = first.get("resps") or [[""]]
    text = resps[0][0] if isinstance(resps[0], (list, tuple)) else resps[0]
    target = first.get("target")
    headline = next(iter(scores.values()), 0.0)
    cut = _cut(first, truncated, generative=True)
    return {
        **_common(model, leaf, first),
        "prediction": str(text), "target": target if isinstance(target, (int, str)) else str(target),
        "correct": bool(headline == 1.0), "scores": scores, "details": details,
        **({"truncated_tokens": cut} if cut else {}),
    }


def add_flips(records: list[dict], aggregates: dict) -> None:
    """Right->wrong and wrong->right counts per adapter against the base, overall and per subject."""
    base = {(r["task"], r["item_id"]): r["correct"] for r in records if r["model"] == "base"}
    for r in records:
        if r["model"] == "base" or (r["task"], r["item_id"]) not in base:
            continue
        was = base[(r["task"], r["item_id"])]
        if was == r["correct"]:
            continue
        kind = "right_to_wrong" if was else "wrong_to_right"
        flips = aggregates[r["task"]][r["model"]].setdefault("flips", {"right_to_wrong": 0, "wrong_to_right": 0, "per_subject": {}})
        flips[kind] += 1
        subj = flips["per_subject"].setdefault(r["subject"], {"right_to_wrong": 0, "wrong_to_right": 0})
        subj[kind] += 1
