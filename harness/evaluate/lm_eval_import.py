"""A harness run log from two lm-eval runs (`--output_path ... --log_samples`): base and adapter.

Teams that already run lm-eval on their GPUs get paired statistics, the gate and the report
without re-running anything: every per-sample line becomes an items.jsonl line of kind
"bench", shaped like those of `harness compare --bench` (see
`harness.evaluate.forgetting.runner._record`), so every reader works unchanged.

What is imported, per leaf task and lm-eval filter:
- a per-sample metric whose values are numbers on a 0..1 scale and whose mean equals the
  aggregate lm-eval wrote in its results file (acc, acc_norm, exact_match, ...); metrics
  lm-eval aggregates otherwise (perplexity, corpus BLEU/F1) cannot be paired per item and
  are listed under provenance.imported.skipped_metrics instead;
- named as lm-eval names them in its results: the bare metric for the filter "none"
  (multiple choice: `acc`, `acc_norm`), `METRIC,FILTER` otherwise (`exact_match,strict-match`);
- a group (mmlu) becomes one task named after its outermost group, its leaf tasks subjects,
  as harness names its own benchmark runs; the group's aggregate is the mean over items.

The two runs must be the same evaluation of two models: same leaf tasks, n-shot, task
configs and versions, generation and prompt settings, and documents with equal doc, prompt
and target hashes. Anything else is refused in one line that says which.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.evaluate.forgetting.tasks import LeafTask, item_id
from harness.evaluate.lm_eval_output import FIX_SAMPLES, LmEvalOutput, find_output, read_samples
from harness.hashing import sha256_json
from harness.log.schema import RunMeta

SOURCE = "imported from lm-eval"
BASE = "base"
# A kept metric's mean must reproduce lm-eval's own aggregate; only float summation order separates them.
MEAN_TOLERANCE = 1e-9
# Prompt settings recorded at the top of a results file; a difference changes every prompt.
PROMPT_SETTINGS = {"system_instruction_sha": "--system_instruction", "chat_template_sha": "--apply_chat_template"}
FIX_SAME_RUN = "run lm-eval for base and adapter with the same version, --tasks, --num_fewshot, --limit and prompt settings"


@dataclass
class ImportedRun:
    """The run log built from two lm-eval runs, ready for `RunFolder.write_run`."""

    meta: RunMeta
    records: list[dict[str, Any]]
    tasks: list[str]  # the run log's benchmark tasks (groups and ungrouped leaf tasks)
    notes: list[str] = field(default_factory=list)  # what the user should know: skipped metrics, choices made


@dataclass
class _Leaf:
    """One leaf task of both runs, aligned: lines[model][doc_id][filter] -> sample line."""

    name: str
    bench: str
    subject: str
    output_type: str
    filters: list[str]
    doc_ids: list[int]
    lines: dict[str, dict[int, dict[str, dict[str, Any]]]]
    kept: list[tuple[str, str, str]] = field(default_factory=list)  # (filter, lm-eval metric, run-log name)
    binary: set[str] = field(default_factory=set)  # run-log names whose values are all 0 or 1


def default_label(adapter: LmEvalOutput) -> str:
    """The adapter's name in the run log: the last part of lm-eval's model name (its peft= path)."""
    name = Path(adapter.model_name.rstrip("/")).name.strip()
    return name if name and name != BASE else "adapter"


def check_label(label: str) -> str:
    label = label.strip()
    if not label or label == BASE:
        raise ConfigError(f"--label '{label}' cannot name the adapter ('base' names the base model)",
                          "pass another --label")
    return label


def import_lm_eval(base_path: str | Path, adapter_path: str | Path, label: str | None = None,
                   command: list[str] | None = None) -> ImportedRun:
    """Reads two lm-eval output folders and builds the run log; writes nothing, loads no model.

    Args:
        base_path: lm-eval's --output_path of the base model (or a results_*.json in it).
        adapter_path: The same for the adapter (or fine-tuned model).
        label: The adapter's name in the run log (default: from lm-eval's model name).
        command: The command line, recorded in run.json.

    Raises:
        ConfigError: A folder that is not lm-eval output with per-sample files, two runs that
            are not the same evaluation, or nothing that can be compared per item.
    """
    base = find_output(base_path, "base")
    adapter = find_output(adapter_path, "adapter")
    label = check_label(label) if label is not None else default_label(adapter)
    notes = base.notes + adapter.notes
    _check_same_setup(base, adapter)
    placed = _place(base.results)
    leaves = [_align(task, placed[task], base, adapter, label) for task in base.tasks]
    skipped: dict[str, dict[str, str]] = {}
    for leaf in leaves:
        _choose_metrics(leaf, {BASE: base, label: adapter}, skipped)
    for task, why in skipped.items():
        notes += [f"lm-eval task '{task}': metric '{m}' not imported: {reason}" for m, reason in why.items()]
    empty = [leaf.name for leaf in leaves if not leaf.kept]
    if empty:
        notes.append(f"lm-eval task(s) {', '.join(empty)} not imported: no per-item metric to compare")
    leaves = [leaf for leaf in leaves if leaf.kept]
    if not leaves:
        raise ConfigError("nothing to import: no lm-eval task has a per-sample metric on a 0..1 scale "
                          "whose mean is lm-eval's aggregate", "import runs of tasks scored per item (acc, exact_match)")
    records, lls = _records(leaves, [BASE, label])
    aggregates = _aggregates(records, leaves)
    from harness.evaluate.forgetting.runner import add_flips

    add_flips([r for r in records if r.get("correct") is not None], aggregates)
    if base.results.get("lm_eval_version") != adapter.results.get("lm_eval_version"):
        notes.append(f"base ran lm-eval {base.results.get('lm_eval_version')}, adapter "
                     f"{adapter.results.get('lm_eval_version')} (prompts and documents matched)")
    b_model, a_base = base.model_args().get("pretrained"), adapter.model_args().get("pretrained")
    if b_model and a_base and b_model != a_base:
        notes.append(f"the adapter run's base model ({a_base}) is not the base run's model ({b_model})")
    meta = _meta(base, adapter, label, leaves, records, aggregates, lls, skipped, command or [])
    return ImportedRun(meta=meta, records=records, tasks=list(aggregates), notes=notes)


# --------------------------------------------------------------------------- same evaluation?


def _without_metadata(config: Any) -> Any:
    # lm-eval merges model arguments into a task's `metadata`; the task's own version is compared via `versions`.
    return {k: v for k, v in config.items() if k != "metadata"} if isinstance(config, dict) else config


def _check_same_setup(base: LmEvalOutput, adapter: LmEvalOutput) -> None:
    b_tasks, a_tasks = set(base.tasks), set(adapter.tasks)
    if b_tasks != a_tasks:
        parts = [f"only in {role}: {', '.join(sorted(names))}"
                 for role, names in ((BASE, b_tasks - a_tasks), ("adapter", a_tasks - b_tasks)) if names]
        raise ConfigError(f"base and adapter lm-eval runs have different tasks ({'; '.join(parts)})",
                          "run lm-eval with the same --tasks for both")
    b_res, a_res = base.results, adapter.results
    for task in base.tasks:
        b_shot, a_shot = (b_res.get("n-shot") or {}).get(task), (a_res.get("n-shot") or {}).get(task)
        if b_shot != a_shot:
            raise ConfigError(f"lm-eval task '{task}' ran {b_shot}-shot for base and {a_shot}-shot for adapter",
                              "run both with the same --num_fewshot")
        b_ver, a_ver = (b_res.get("versions") or {}).get(task), (a_res.get("versions") or {}).get(task)
        if b_ver != a_ver:
            raise ConfigError(f"lm-eval task '{task}' is version {b_ver} for base and {a_ver} for adapter",
                              "run both with the same lm-eval version")
        b_cfg, a_cfg = _without_metadata(b_res["configs"][task]), _without_metadata(a_res["configs"][task])
        if b_cfg != a_cfg:
            keys = sorted(k for k in set(b_cfg) | set(a_cfg) if b_cfg.get(k) != a_cfg.get(k))
            raise ConfigError(f"lm-eval task '{task}' was configured differently for base and adapter "
                              f"(differing: {', '.join(keys)})", FIX_SAME_RUN)
    b_gen, a_gen = (b_res.get("config") or {}).get("gen_kwargs"), (a_res.get("config") or {}).get("gen_kwargs")
    if b_gen != a_gen:
        raise ConfigError(f"base and adapter lm-eval runs used different --gen_kwargs ({b_gen!r} vs {a_gen!r})",
                          "run both with the same --gen_kwargs")
    for key, flag in PROMPT_SETTINGS.items():
        if b_res.get(key) != a_res.get(key):
            raise ConfigError(f"base and adapter lm-eval runs used different {flag} ({key} differs)",
                              f"run both with the same {flag}")


def _index(out: LmEvalOutput, task: str) -> tuple[dict[int, dict[str, dict]], list[str]]:
    """doc_id -> filter -> sample line, and the filters in order of first appearance."""
    docs: dict[int, dict[str, dict]] = {}
    filters: list[str] = []
    for line in read_samples(out, task):
        doc, filt = line["doc_id"], str(line["filter"])
        if filt not in filters:
            filters.append(filt)
        if filt in docs.setdefault(doc, {}):
            raise ConfigError(f"{out.samples[task]}: document {doc} appears twice for filter '{filt}'",
                              "re-run lm-eval into an empty --output_path")
        docs[doc][filt] = line
    return docs, filters


def _align(task: str, place: tuple[str, str], base: LmEvalOutput, adapter: LmEvalOutput, label: str) -> _Leaf:
    b_docs, b_filters = _index(base, task)
    a_docs, a_filters = _index(adapter, task)
    only_b, only_a = sorted(set(b_docs) - set(a_docs)), sorted(set(a_docs) - set(b_docs))
    if only_b or only_a:
        parts = [f"{len(ids)} only in {role} (e.g. doc {ids[0]})"
                 for role, ids in ((BASE, only_b), ("adapter", only_a)) if ids]
        raise ConfigError(f"lm-eval task '{task}': base and adapter scored different documents ({', '.join(parts)})",
                          "run both with the same --limit (or --samples)")
    if b_filters != a_filters:
        raise ConfigError(f"lm-eval task '{task}': base has filters {b_filters}, adapter {a_filters}", FIX_SAME_RUN)
    doc_ids = sorted(b_docs)
    for doc in doc_ids:
        missing = [f for f in b_filters if f not in b_docs[doc] or f not in a_docs[doc]]
        if missing:
            raise ConfigError(f"lm-eval task '{task}': document {doc} has no line for filter '{missing[0]}'", FIX_SAMPLES)
    differ = []
    for doc in doc_ids:
        b_line, a_line = b_docs[doc][b_filters[0]], a_docs[doc][b_filters[0]]
        keys = [k for k in ("doc_hash", "prompt_hash", "target_hash") if b_line.get(k) != a_line.get(k)]
        if keys:
            differ.append((doc, keys))
    if differ:
        doc, keys = differ[0]
        raise ConfigError(f"lm-eval task '{task}': {len(differ)} of {len(doc_ids)} documents differ between base and "
                          f"adapter (e.g. doc {doc}: {', '.join(k.replace('_hash', '') for k in keys)})", FIX_SAME_RUN)
    output_type = str(base.results["configs"][task].get("output_type", ""))
    return _Leaf(name=task, bench=place[0], subject=place[1], output_type=output_type, filters=b_filters,
                 doc_ids=doc_ids, lines={BASE: b_docs, label: a_docs})


def _place(results: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Leaf task -> (run-log task, subject): the outermost group and the leaf's alias, or the leaf itself."""
    groups = {g: list(subs) for g, subs in (results.get("group_subtasks") or {}).items() if isinstance(subs, list)}
    children = {c for subs in groups.values() for c in subs}

    def leaves_of(group: str, seen: frozenset = frozenset()) -> list[str]:
        out = []
        for child in groups.get(group, []):
            if child in groups and child not in seen:
                out += leaves_of(child, seen | {group})
            elif child not in groups:
                out.append(child)
        return out

    placed: dict[str, tuple[str, str]] = {}
    for root in (g for g in groups if g not in children):
        for leaf in leaves_of(root):
            alias = str((results["results"].get(leaf) or {}).get("alias") or leaf).strip().lstrip("- ").strip()
            placed.setdefault(leaf, (root, alias or leaf))
    return {task: placed.get(task, (task, task)) for task in results["configs"]}


# --------------------------------------------------------------------------- metrics


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _choose_metrics(leaf: _Leaf, outs: dict[str, LmEvalOutput], skipped: dict[str, dict[str, str]]) -> None:
    """Keeps each (filter, metric) that is per-item, on 0..1 and averaged by lm-eval; notes the others."""
    for filt in leaf.filters:
        first_line = leaf.lines[BASE][leaf.doc_ids[0]][filt]
        for metric in first_line.get("metrics") or []:
            name = metric if filt == "none" else f"{metric},{filt}"
            reason, binary = None, True
            for model, out in outs.items():
                values = [_number(leaf.lines[model][d][filt].get(metric)) for d in leaf.doc_ids]
                if any(v is None for v in values):
                    reason = "its per-sample values are not numbers (lm-eval aggregates it over the corpus)"
                    break
                if any(not 0.0 <= v <= 1.0 for v in values):
                    reason = "its per-sample values are not on a 0..1 scale"
                    break
                binary = binary and all(v in (0.0, 1.0) for v in values)
                written = _number((out.results["results"].get(leaf.name) or {}).get(f"{metric},{filt}"))
                mean = sum(values) / len(values)
                if written is None:
                    reason = f"the {out.role} results file has no aggregate '{metric},{filt}'"
                    break
                if abs(mean - written) > MEAN_TOLERANCE:
                    reason = (f"the mean of its {out.role} per-sample values ({mean:.6f}) is not lm-eval's "
                              f"aggregate ({written:.6f})")
                    break
            if reason:
                skipped.setdefault(leaf.name, {})[name] = reason
                continue
            leaf.kept.append((filt, metric, name))
            if binary:
                leaf.binary.add(name)


# --------------------------------------------------------------------------- records and aggregates


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _loglikelihoods(line: dict[str, Any], where: str) -> list[float]:
    try:  # lm-eval writes each response as [log-likelihood, is_greedy], both as strings
        return [float(r[0]) for r in line.get("filtered_resps") or []]
    except (TypeError, ValueError, IndexError):
        raise ConfigError(f"{where}: responses of a log-likelihood task are not [log-likelihood, is_greedy] pairs",
                          FIX_SAMPLES) from None


def _item_ids(leaves: list[_Leaf]) -> dict[tuple[str, int], str]:
    """(leaf, doc_id) -> item id: the dataset's own id as harness's benchmark runs name it,
    or leaf:doc_id for a whole run-log task when those ids collide across its leaves."""
    ids: dict[tuple[str, int], str] = {}
    by_bench: dict[str, list[tuple[str, int]]] = {}
    for leaf in leaves:
        spec = LeafTask(name=leaf.name, bench=leaf.bench, subject=leaf.subject, config=None)
        for doc in leaf.doc_ids:
            doc_obj = leaf.lines[BASE][doc][leaf.filters[0]].get("doc")
            ids[(leaf.name, doc)] = item_id(spec, doc, doc_obj if isinstance(doc_obj, dict) else {})
            by_bench.setdefault(leaf.bench, []).append((leaf.name, doc))
    for keys in by_bench.values():
        if len({ids[k] for k in keys}) < len(keys):
            for name, doc in keys:
                ids[(name, doc)] = f"{name}:{doc}"
    return ids


def _records(leaves: list[_Leaf], models: list[str]) -> tuple[list[dict], dict[str, dict[tuple, list[float]]]]:
    """items.jsonl records (every model's in turn) and the raw choice log-likelihoods per model."""
    ids = _item_ids(leaves)
    records: list[dict] = []
    lls: dict[str, dict[tuple, list[float]]] = {m: {} for m in models}
    for model in models:
        for leaf in leaves:
            for doc in leaf.doc_ids:
                per_filter = leaf.lines[model][doc]
                first = per_filter[leaf.filters[0]]
                scores = {name: _number(per_filter[filt][metric]) for filt, metric, name in leaf.kept}
                rec: dict[str, Any] = {
                    "model": model, "kind": "bench", "task": leaf.bench, "subject": leaf.subject,
                    "item_id": ids[(leaf.name, doc)], "lm_eval_task": leaf.name, "doc_id": doc,
                    "target": _text(first.get("target", "")), "scores": scores,
                    "doc_hash": first.get("doc_hash"), "prompt_hash": first.get("prompt_hash"),
                }
                if leaf.output_type in ("multiple_choice", "loglikelihood"):
                    values = _loglikelihoods(first, f"{leaf.name} doc {doc}")
                    lls[model][(leaf.bench, rec["item_id"])] = values
                    rec["loglikelihoods"] = [round(x, 6) for x in values]
                    if leaf.output_type == "multiple_choice" and values:
                        rec["prediction"] = str(max(range(len(values)), key=lambda i: values[i]))
                    else:  # one continuation: lm-eval's acc is whether it was the greedy one
                        greedy = str((first.get("filtered_resps") or [[None, False]])[0][1]) == "True"
                        rec["prediction"] = "greedy" if greedy else "not greedy"
                else:
                    resps = first.get("filtered_resps") or [""]
                    rec["prediction"] = _text(resps[0])
                    if len(leaf.filters) > 1:
                        rec["responses"] = {f: _text((per_filter[f].get("filtered_resps") or [""])[0])
                                            for f in leaf.filters}
                primary = "acc" if "acc" in scores else leaf.kept[0][2]
                if primary in leaf.binary:
                    rec["correct"] = scores[primary] == 1.0
                records.append(rec)
    return records, lls


def _mean_scores(items: list[dict], metrics: list[str]) -> dict[str, float]:
    out = {}
    for m in metrics:
        vals = [r["scores"][m] for r in items if r["scores"].get(m) is not None]
        if vals:
            out[m] = sum(vals) / len(vals)
    return out


def _aggregates(records: list[dict], leaves: list[_Leaf]) -> dict[str, dict[str, dict]]:
    """task -> model -> metric means over items, `n`, and `per_subject` for groups."""
    metrics: dict[str, list[str]] = {}
    for leaf in leaves:
        names = metrics.setdefault(leaf.bench, [])
        names += [name for _, _, name in leaf.kept if name not in names]
    grouped: dict[str, dict[str, list[dict]]] = {}
    for rec in records:
        grouped.setdefault(rec["task"], {}).setdefault(rec["model"], []).append(rec)
    out: dict[str, dict[str, dict]] = {}
    for task, per_model in grouped.items():
        for model, items in per_model.items():
            agg: dict[str, Any] = {**_mean_scores(items, metrics[task]), "n": len(items)}
            subjects: dict[str, list[dict]] = {}
            for r in items:
                subjects.setdefault(r["subject"], []).append(r)
            if len(subjects) > 1:
                agg["per_subject"] = {s: {**_mean_scores(v, metrics[task]), "n": len(v)}
                                      for s, v in sorted(subjects.items())}
            out.setdefault(task, {})[model] = agg
    return out


# --------------------------------------------------------------------------- run.json


def _source(out: LmEvalOutput) -> dict[str, Any]:
    """Where one side came from and how lm-eval ran it."""
    r = out.results
    return {"results_file": str(out.results_file.resolve()),
            "samples_files": {t: p.name for t, p in out.samples.items()},
            "model_name": out.model_name, "model_source": r.get("model_source"),
            "lm_eval_version": r.get("lm_eval_version"), "git_hash": r.get("git_hash"), "date": r.get("date"),
            "transformers_version": r.get("transformers_version"), "config": r.get("config"),
            "n-shot": r.get("n-shot"), "n-samples": r.get("n-samples"), "task_hashes": r.get("task_hashes"),
            "max_length": r.get("max_length"),
            **{k: r.get(k) for k in PROMPT_SETTINGS if r.get(k)}}


def _lm_eval_numbers(out: LmEvalOutput) -> dict[str, dict[str, float]]:
    return {task: {k: v for k, v in row.items() if _number(v) is not None and "," in k}
            for task, row in out.results["results"].items() if isinstance(row, dict)}


def _meta(base: LmEvalOutput, adapter: LmEvalOutput, label: str, leaves: list[_Leaf], records: list[dict],
          aggregates: dict, lls: dict, skipped: dict, command: list[str]) -> RunMeta:
    from harness.evaluate.provenance import code_version

    benches = list(aggregates)
    deltas = [abs(x - y) for key, b in lls[BASE].items() for x, y in zip(b, lls[label].get(key, []))]
    probe = max(deltas) if deltas else None
    a_args = adapter.model_args()
    hib = {}
    for leaf in leaves:
        directions = (base.results.get("higher_is_better") or {}).get(leaf.name) or {}
        for _, metric, name in leaf.kept:
            hib[name] = bool(directions.get(metric, True))
    fingerprints = {}
    for bench in benches:
        mine = [leaf for leaf in leaves if leaf.bench == bench]
        shots = sorted({(base.results.get("n-shot") or {}).get(leaf.name) for leaf in mine}, key=str)
        fingerprints[bench] = {
            "tasks": [leaf.name for leaf in mine], "source": SOURCE,
            "num_fewshot": shots[0] if len(shots) == 1 else {leaf.name: base.results["n-shot"][leaf.name] for leaf in mine},
            "limit": (base.results.get("config") or {}).get("limit"),
            "output_type": sorted({leaf.output_type for leaf in mine}),
            "lm_eval_version": base.results.get("lm_eval_version"),
            "versions": {leaf.name: (base.results.get("versions") or {}).get(leaf.name) for leaf in mine},
            "config_hash": sha256_json({leaf.name: _without_metadata(base.results["configs"][leaf.name]) for leaf in mine}),
            "item_set_hash": sha256_json(sorted(str(r["item_id"]) for r in records
                                                if r["task"] == bench and r["model"] == BASE)),
        }
    from harness.evaluate.forgetting.chat_format import BenchFormat

    r = base.results  # how lm-eval rendered the prompts, in harness's spec.bench_format terms
    fmt = BenchFormat(chat_template=bool(r.get("chat_template_sha") or r.get("chat_template")),
                      fewshot_as_multiturn=bool(r.get("fewshot_as_multiturn")),
                      system_instruction=r.get("system_instruction") or None)
    spec = {"base": base.model_name, "adapters": [label], "benches": benches,
            **({"bench_format": fmt.record()} if fmt.active else {}),
            "imported_from": {"tool": "lm-eval", BASE: str(base.results_file.resolve()),
                              "adapter": str(adapter.results_file.resolve())}}
    return RunMeta.model_validate({
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "spec": spec,
        "models": [BASE, label],
        "provenance": {
            "imported": {"note": SOURCE, "tool": "lm-eval", "label": label,
                         BASE: _source(base), "adapter": _source(adapter),
                         **({"skipped_metrics": skipped} if skipped else {})},
            "base": {"name": base.model_name, "source": SOURCE,
                     "model_args": (base.results.get("config") or {}).get("model_args")},
            "adapters": {label: {"path": a_args.get("peft") or adapter.model_name,
                                 "base_model_name_or_path": a_args.get("pretrained"),
                                 "probe_max_abs_logit_delta": probe,
                                 "probe_quantity": "choice log-likelihood (lm-eval samples)",
                                 "has_effect": None if probe is None else probe > 0.0}},
            "benchmarks": fingerprints,
            "lm_eval_results": {BASE: _lm_eval_numbers(base), label: _lm_eval_numbers(adapter)},
            "code": code_version(),
            "libraries": {"lm_eval": base.results.get("lm_eval_version"),
                          "transformers": base.results.get("transformers_version")},
        },
        "metrics": {name: {"higher_is_better": h, "corpus_level": False} for name, h in hib.items()},
        "aggregates": {"suites": {}, "bench": aggregates},
    })
