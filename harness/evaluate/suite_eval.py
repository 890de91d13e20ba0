"""Suites on an engine: render and tokenize prompts, generate per variant (cached, resumable,
split across data-parallel ranks), score with the suite's metrics; one record per item."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable

from harness.errors import ConfigError
from harness.evaluate.distributed import Dist
from harness.evaluate.engines.cache import ResultCache, item_key
from harness.hashing import sha256_bytes, sha256_json


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


def fit_prompts(encoded: list[tuple[str, list[int]]], context: int | None, max_new_tokens: int,
                suite: str) -> list[int]:
    """Cuts prompts that would not leave room for `max_new_tokens` within the model's context,
    from the left (the instruction and question at the end survive), as lm-eval does for
    generation; returns the tokens cut per prompt. A prompt silently overflowing the context
    used to come back as an empty prediction."""
    if context is None:
        return [0] * len(encoded)
    room = context - max_new_tokens
    if room < 1:
        raise ConfigError(f"suite '{suite}': max_new_tokens {max_new_tokens} leaves no room for a prompt in the "
                          f"model's {context}-token context", "lower generation.max_new_tokens in the suite")
    cut = []
    for i, (text, ids) in enumerate(encoded):
        over = max(0, len(ids) - room)
        if over:
            encoded[i] = (text, ids[over:])
        cut.append(over)
    return cut


class Progress:
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


def evaluate_suite(engine, suite, model_names: list[str], limit: int | None, cache: ResultCache,
                   progress: Progress, stats: dict[str, int], order_seed: int | None = None,
                   dist: Dist | None = None, perturb: int = 0, perturb_seed: int = 0,
                   render: Callable | None = None, variants: dict[str, str] | None = None
                   ) -> tuple[list[dict], dict[str, dict]]:
    """Generate and score one suite for each model variant; returns (records, aggregates per
    task): the suite's task, and with `perturb` K its `SUITE~perturbed` task (K seeded prompt
    variants per item, see `harness.evaluate.perturb`).

    Prompts are planned into batches of `engine.batch_size` (longest first, or shuffled by
    `order_seed`); a batch is the unit of caching and of data-parallel splitting, so every
    rank decodes exactly the batches a single process would.

    A baseline arm (`harness.evaluate.baselines`) passes `render` (its own prompt per
    example, instead of `suite.render`) and `variants` (record name -> the engine variant
    that answers, e.g. {"base+fewshot:3": "base"}).
    """
    dist = dist or Dist()
    examples = suite.examples(limit)
    if not examples:
        raise ConfigError(f"suite '{suite.name}' has no items", "check its data file")
    prompts = [(render or suite.render)(ex) for ex in examples]
    run = _PromptRun(engine, suite, model_names, cache, progress, stats, order_seed, dist, variants)
    records, aggs, preds = run(suite.name, examples, [ex.id for ex in examples], prompts)
    out = {suite.name: aggs}
    if perturb:
        from harness.evaluate.perturb import moved_answer, perturb_item, task_name, variants

        chosen = variants(perturb, perturb_seed)
        pairs = [(i, v) for i in range(len(examples)) for v in chosen]
        items = [perturb_item(prompts[i], examples[i].references, v) for i, v in pairs]  # (prompt, refs, moved)

        p_records, p_aggs, _ = run(task_name(suite.name),
                                   [replace(examples[i], references=refs) for (i, _), (_, refs, _) in zip(pairs, items)],
                                   [f"{examples[i].id}~{v.index}" for i, v in pairs], [p for p, _, _ in items],
                                   # the original answer's option under its new letter: `consistent`
                                   # compares options, not letters
                                   originals={m: [moved_answer(preds[m][i], moved) for (i, _), (_, _, moved)
                                                  in zip(pairs, items)] for m in model_names},
                                   extra=[{"perturbation": {**v.record(), "of": examples[i].id,
                                                            **({"options": moved} if moved else {})}}
                                          for (i, v), (_, _, moved) in zip(pairs, items)])
        records += p_records
        out[task_name(suite.name)] = p_aggs
    return records, out


class _PromptRun:
    """Generates a list of prompts for each model variant and scores the answers."""

    def __init__(self, engine, suite, model_names, cache, progress, stats, order_seed, dist, variants=None):
        self.engine, self.suite, self.model_names, self.cache = engine, suite, model_names, cache
        self.progress, self.stats, self.order_seed, self.dist = progress, stats, order_seed, dist
        self.variants = variants or {}  # record name -> engine variant, when they differ (baseline arms)

    def __call__(self, task: str, examples, item_ids: list[str], prompts, originals: dict | None = None,
                 extra: list[dict] | None = None) -> tuple[list[dict], dict, dict[str, list[str]]]:
        from harness.evaluate.engines.generate import plan_batches
        from harness.evaluate.metrics import get_metric
        from harness.evaluate.metrics.squad import normalize_answer
        from harness.evaluate.metrics.structured import attach_details

        engine, suite, cache, stats = self.engine, self.suite, self.cache, self.stats
        params = suite.generation
        encoded = [encode_prompt(engine.tokenizer, p) for p in prompts]
        cut = fit_prompts(encoded, getattr(engine, "context_length", None), params.max_new_tokens, suite.name)
        prompt_hashes = [sha256_bytes(text.encode("utf-8")) for text, _ in encoded]
        id_hashes = [sha256_json(ids) for _, ids in encoded]
        plan = plan_batches([len(ids) for _, ids in encoded], engine.batch_size, self.order_seed)
        metrics = [get_metric(m) for m in suite.metric_names]
        refs = [list(ex.references) for ex in examples]
        # a suite that maps `fields.meta.subject` (refusal categories) gets per-subject rates
        subjects = [str(ex.meta.get("subject")) for ex in examples] if any(
            (ex.meta or {}).get("subject") is not None for ex in examples) else None
        # a suite that maps `fields.meta.cluster` (a shared background) gets clustered error bars
        clusters = [cluster_id((ex.meta or {}).get("cluster")) for ex in examples] if any(
            "cluster" in (ex.meta or {}) for ex in examples) else None
        records: list[dict] = []
        aggregates: dict[str, dict] = {}
        all_preds: dict[str, list[str]] = {}
        for name in self.model_names:
            variant = self.variants.get(name, name)
            keys = [item_key("generate", engine.model_key(variant), h, params.key()) for h in id_hashes]
            results = cache.get_many(keys)
            advance = self.progress.task(f"{task} · {name}", len(examples))
            hits = sum(k in results for k in keys)
            stats["cached"] += hits
            advance(hits)
            todo = self.dist.union([j for j, b in enumerate(plan) if not all(keys[i] in results for i in b.indices)])

            def decode(j: int) -> dict[str, dict]:
                indices = plan[j].indices
                gens = {keys[i]: g.__dict__ for i, g in zip(indices, engine.generate(
                    variant, [encoded[i][1] for i in indices], params))}
                cache.put_many({k: g for k, g in gens.items() if k not in results})  # each batch committed: resumable
                advance(sum(k not in results for k in gens))
                return gens

            for gens in self.dist.map(decode, todo):
                stats["computed"] += sum(k not in results for k in gens)
                results.update({k: g for k, g in gens.items() if k not in results})
            preds = [results[k]["text"].strip() for k in keys]
            all_preds[name] = preds
            item_scores = {m.name: m.score_items(preds, refs) for m in metrics}
            agg = {m.name: m.aggregate(preds, refs, item_scores[m.name]) for m in metrics}
            if originals is not None:  # same answer as to the unperturbed prompt
                # SQuAD normalisation drops articles, so option "A" would equal any empty answer
                def norm(text: str) -> str:
                    return normalize_answer(text) or text.strip().lower()

                same = [float(norm(p) == norm(o)) for p, o in zip(preds, originals[name])]
                item_scores["consistent"] = same
                agg["consistent"] = sum(same) / len(same)
            gens = [results[k] for k in keys]
            agg.update(n=len(examples),
                       mean_latency_s=sum(g["latency_s"] for g in gens) / len(gens),
                       mean_new_tokens=sum(g["new_tokens"] for g in gens) / len(gens),
                       **({"truncated": sum(c > 0 for c in cut)} if any(cut) else {}))
            if subjects is not None:
                agg["per_subject"] = _per_subject(subjects, item_scores)
            aggregates[name] = agg
            for i, item_id in enumerate(item_ids):
                g = gens[i]
                records.append({
                    "model": name, "kind": "suite", "task": task, "item_id": item_id,
                    "prompt_hash": prompt_hashes[i], "prediction": preds[i], "references": refs[i],
                    "scores": {m: item_scores[m][i] for m in item_scores},
                    "latency_s": round(g["latency_s"], 4), "prompt_tokens": g["prompt_tokens"],
                    "new_tokens": g["new_tokens"], "stopped_by": g["stopped_by"],
                    **({"truncated_tokens": cut[i]} if cut[i] else {}),
                    **({"subject": subjects[i]} if subjects is not None else {}),
                    **({"cluster": clusters[i]} if clusters is not None and clusters[i] is not None else {}),
                    **(extra[i] if extra else {}),
                })
            attach_details(records[-len(item_ids):], metrics, preds, refs)  # e.g. the JSON Schema error path
        return records, aggregates, all_preds


def _per_subject(subjects: list[str], item_scores: dict[str, list]) -> dict[str, dict]:
    """Per subject: each metric's mean over the items it scored (None when it scored none), and n."""
    out: dict[str, dict] = {}
    for subject in sorted(set(subjects)):
        rows = [i for i, s in enumerate(subjects) if s == subject]
        entry: dict = {"n": len(rows)}
        for metric, scores in item_scores.items():
            vals = [scores[i] for i in rows if isinstance(scores[i], (int, float))]
            entry[metric] = sum(vals) / len(vals) if vals else None
        out[subject] = entry
    return out


# Longer cluster values (a whole background paragraph) are recorded by hash, so items.jsonl
# does not repeat the paragraph on every line; equal values still give equal ids.
CLUSTER_ID_MAX = 64


def cluster_id(value) -> str | None:
    """The `cluster` recorded for an item: the value as text, or "sha256:" and 16 hex digits of
    it when longer than CLUSTER_ID_MAX characters; None (the item is a cluster of its own) for null."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= CLUSTER_ID_MAX else "sha256:" + sha256_bytes(text.encode("utf-8"))[:16]
