"""Benchmark tasks by lm-eval name; offline mirrors over the assets cache.

A mirror is lm-eval's own task config (its YAML with includes and `!function` hooks
resolved by lm-eval's loader) with only the data source swapped for the local arrow files,
so prompts, choices, targets, few-shot sampling and metrics are lm-eval's by construction.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.errors import ConfigError

# Offline data we ship mirrors for: lm-eval task name -> (asset, folder inside the asset).
OFFLINE_SPLITS = {
    "hellaswag": ("hellaswag", "none"),
    "arc_easy": ("arc", "ARC-Easy"),
    "arc_challenge": ("arc", "ARC-Challenge"),
}
MMLU_TASK_DIR = "mmlu/default"
# Generative tasks over the test split of the `gsm8k` asset. Few-shot examples come only
# from a task's own fixed list (gsm8k_cot's eight), never from a training split offline.
GSM8K_TASKS = ("gsm8k", "gsm8k_cot", "gsm8k_cot_zeroshot", "gsm8k_cot_llama")


@dataclass
class LeafTask:
    """One lm-eval task to run, and how items are named in the run log."""

    name: str       # lm-eval task name, e.g. mmlu_anatomy
    bench: str      # the name the user asked for, e.g. mmlu
    subject: str    # per-subject breakdown key (the task itself when there are no subjects)
    config: dict[str, Any] | None  # inline config for offline mirrors; None = lm-eval's own task
    split_note: str = ""
    output_type: str = "multiple_choice"


def is_offline() -> bool:
    """HARNESS_OFFLINE/HF_HUB_OFFLINE, or no DNS for the hub (fails in milliseconds here)."""
    if os.environ.get("HARNESS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        return True
    try:
        socket.getaddrinfo("huggingface.co", 443)
        return False
    except OSError:
        return True


def _lm_eval_tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


@lru_cache(maxsize=2)
def task_manager(offline: bool):
    """lm-eval's TaskManager; offline it indexes only the folders we mirror (seconds saved)."""
    from lm_eval.tasks import TaskManager

    if not offline:
        return TaskManager()
    root = _lm_eval_tasks_dir()
    paths = [str(root / MMLU_TASK_DIR), str(root / "hellaswag"), str(root / "arc"), str(root / "gsm8k")]
    return TaskManager(include_path=paths, include_defaults=False)


def _resolved_config(tm, name: str) -> dict[str, Any]:
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = tm.task_index[name]
    cfg = dict(load_yaml(entry.yaml_path, resolve_func=True)) if entry.yaml_path else dict(entry.cfg)
    for key in ("tag", "group"):
        cfg.pop(key, None)
    return cfg


def _arrow_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.glob("*.arrow"))


def _leaf_names(tm, name: str) -> list[str]:
    """Expand a group or tag into its leaf tasks, as lm-eval would."""
    from lm_eval.tasks._index import Kind

    entry = tm.task_index.get(name)
    if entry is None:
        return []
    if entry.kind in (Kind.TASK, Kind.PY_TASK):
        return [name]
    if entry.kind == Kind.TAG:
        return sorted(n for n, e in tm.task_index.items() if name in (e.tags or set()))
    children = entry.cfg.get("task") or []
    out: list[str] = []
    for child in children if isinstance(children, list) else [children]:
        child_name = child if isinstance(child, str) else child.get("task") or child.get("group")
        out.extend(_leaf_names(tm, child_name))
    return sorted(dict.fromkeys(out))


def _mirror(cfg: dict[str, Any], leaf: str, num_fewshot: int) -> tuple[dict[str, Any], str]:
    from harness.assets import asset_path

    if leaf.startswith("mmlu_"):
        folder = asset_path("mmlu") / cfg["dataset_name"]
        files = {s: _arrow_files(folder / s) for s in ("test", "dev", "validation") if (folder / s).is_dir()}
        note = "test"
    elif leaf in OFFLINE_SPLITS:
        asset, sub = OFFLINE_SPLITS[leaf]
        folder = asset_path(asset) / sub
        files = {"validation": _arrow_files(folder / "validation")}
        # Only the validation split ships offline: it is what gets evaluated, and few-shot
        # examples would have to come from it too, which would leak answers.
        if num_fewshot:
            raise ConfigError(f"offline '{leaf}' has no training split for {num_fewshot}-shot examples",
                              "use --num-fewshot 0 for it, or run online")
        cfg = {**cfg, "training_split": None, "test_split": None}
        note = "validation"
    elif leaf in GSM8K_TASKS:
        fixed = (cfg.get("fewshot_config") or {}).get("samples")
        if num_fewshot and not fixed:
            raise ConfigError(f"offline '{leaf}' has no training split for {num_fewshot}-shot examples",
                              "use --num-fewshot 0 for it, or gsm8k_cot (its 8 examples ship with the task)")
        files = {"test": [str(asset_path("gsm8k") / "test.jsonl")]}
        cfg = {**cfg, "training_split": None, "validation_split": None,
               **({} if fixed else {"fewshot_split": None})}
        cfg = {**cfg, "dataset_path": "json", "dataset_name": None, "dataset_kwargs": {"data_files": files}}
        return cfg, "test"
    else:
        raise ConfigError(f"benchmark task '{leaf}' has no offline mirror",
                          "offline, harness mirrors mmlu, hellaswag, arc_easy, arc_challenge and "
                          + ", ".join(GSM8K_TASKS) + "; run online for other tasks")
    cfg = {**cfg, "dataset_path": "arrow", "dataset_name": None, "dataset_kwargs": {"data_files": files}}
    return cfg, note


def resolve(benches: list[str], num_fewshot: int = 0, offline: bool | None = None) -> list[LeafTask]:
    """Turn user bench names (tasks or groups) into leaf tasks ready for lm-eval."""
    from harness.registry import unknown_name_message

    offline = is_offline() if offline is None else offline
    tm = task_manager(offline)
    leaves: list[LeafTask] = []
    for bench in benches:
        names = _leaf_names(tm, bench)
        if not names:
            known = tm.all_tasks
            if offline:
                raise ConfigError(unknown_name_message("offline benchmark", bench, [n for n in known if not n.startswith("mmlu_")] + ["mmlu"]),
                                  "offline, harness mirrors mmlu (and its subjects), hellaswag, arc_easy, arc_challenge and "
                                  + ", ".join(GSM8K_TASKS) + "; "
                                  "other lm-eval tasks need their datasets from the hub")
            raise ConfigError(unknown_name_message("lm-eval task", bench, known), "see `lm_eval ls tasks`")
        for leaf in names:
            cfg = None
            note = ""
            raw = _resolved_config(tm, leaf)
            _check_supported(leaf, raw)
            if offline:
                cfg, note = _mirror(raw, leaf, num_fewshot)
            subject = leaf[len("mmlu_"):] if bench == "mmlu" or leaf.startswith("mmlu_") else leaf
            leaves.append(LeafTask(name=leaf, bench=bench, subject=subject, config=cfg, split_note=note,
                                   output_type=raw.get("output_type", "multiple_choice")))
    seen: set[str] = set()
    for leaf in leaves:
        if leaf.name in seen:
            raise ConfigError(f"benchmark task '{leaf.name}' is asked for twice", "name each task or group once in --bench")
        seen.add(leaf.name)
    return leaves


def _check_supported(leaf: str, cfg: dict[str, Any]) -> None:
    """Refuse, before any model loads, the task kinds the harness engines cannot answer."""
    kind = cfg.get("output_type", "loglikelihood")
    if kind == "loglikelihood_rolling":
        raise ConfigError(f"benchmark task '{leaf}' is a rolling log-likelihood (perplexity) task, which harness "
                          f"does not score", "harness runs multiple-choice and generate_until tasks; "
                          "run perplexity tasks with lm_eval directly")
    gen = cfg.get("generation_kwargs") or {}
    if kind == "generate_until" and (gen.get("do_sample") or float(gen.get("temperature") or 0.0) > 0.0
                                     or int(cfg.get("repeats") or 1) > 1):
        raise ConfigError(f"benchmark task '{leaf}' samples its generations (do_sample, temperature or repeats), "
                          f"and harness decodes greedily", "pick a greedy variant of the task, e.g. gsm8k or gsm8k_cot")


def item_id(leaf: LeafTask, doc_id: int, doc: dict[str, Any]) -> str:
    """The dataset's own id where it has one, so results trace back to the data."""
    if "ind" in doc:  # HellaSwag's `ind` repeats within validation; the row index makes it unique
        return f"{doc['ind']}:{doc_id}"
    if "id" in doc and isinstance(doc["id"], str):
        return doc["id"]
    return f"{leaf.subject}:{doc_id}"
