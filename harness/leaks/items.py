"""Eval items: the texts that must not have been in the training data.

An item is identified exactly as in the run log, `(task, item_id)`:

* suites: task = the suite name, item_id = `Example.id`;
* benchmarks (read straight from the offline assets, no lm-eval needed):

  ========== =================================== ============================
  task       data                                item_id
  ========== =================================== ============================
  mmlu       mmlu/<subject>/test                 "<subject>:<row index>"
  hellaswag  hellaswag/none/validation           str(ind)  (see note)
  arc_easy   arc/ARC-Easy/validation             the dataset's `id`
  arc_challenge arc/ARC-Challenge/validation     the dataset's `id`
  ========== =================================== ============================

Item text is what a leak would copy: the question with its answer options (MMLU, ARC)
or the context with its gold continuation (HellaSwag; the three machine-written wrong
endings are left out because they are long and would dilute the coverage rules).

Note: HellaSwag's `ind` is not unique in the validation split (433 values occur twice, on
different items). Such items keep their `ind` as item_id as the run log does; records
carry the row index as well, and `label_map` gives a shared key the worse label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ConfigError

BENCH_TASKS = ("mmlu", "hellaswag", "arc_easy", "arc_challenge")


@dataclass(frozen=True)
class EvalItem:
    """One eval item to check for leaks.

    Attributes:
        task: Suite name or benchmark task ("mmlu", "hellaswag", "arc_easy", "arc_challenge").
        item_id: The id the run log uses for this item.
        text: The item's text (prompt variables + references, or question + options).
        kind: "suite" or "bench".
        meta: Extra identification (e.g. subject, source row) copied into the records.
    """

    task: str
    item_id: str
    text: str
    kind: str = "suite"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        """(task, item_id), the join key with the run log."""
        return (self.task, self.item_id)


def flatten_text(value: Any, messages: bool = False) -> list[str]:
    """Every text leaf of a (possibly nested) value, in order.

    Args:
        value: A string, number, list or dict (JSON-like).
        messages: Treat dicts as chat turns: take only their `content` (OpenAI),
            `value` (ShareGPT) or `text` (content parts), never role names, which are
            not part of what the model was trained to produce.

    Returns:
        Strings in document order; None and empty values are skipped.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, bytes):
        return [value.decode("utf-8", "replace")]
    if isinstance(value, dict):
        if messages:
            for key in ("content", "value", "text"):
                if key in value:
                    return flatten_text(value[key], messages)
            return []
        out: list[str] = []
        for v in value.values():
            out.extend(flatten_text(v, messages))
        return out
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(flatten_text(v, messages))
        return out
    return [str(value)]


# --------------------------------------------------------------------------- suites


def suite_items(suite: Any, limit: int | None = None, trusted_dirs: tuple = ()) -> list[EvalItem]:
    """Items of a suite: text = its examples' variable values, then the references.

    Args:
        suite: A `harness.suites.Suite`, or a name/folder for `load_suite`.
        limit: First N examples only (as `harness run --limit`).
        trusted_dirs: Passed to `load_suite` for suites with python hooks.
    """
    from harness.suites import Suite, load_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite, trusted_dirs)
    items = []
    for ex in suite.examples(limit):
        parts = flatten_text(list(ex.vars.values())) + flatten_text(list(ex.references))
        items.append(EvalItem(suite.name, str(ex.id), "\n".join(parts), "suite"))
    return items


# --------------------------------------------------------------------------- benchmarks


def _read_arrow_folder(folder: Path) -> list[dict]:
    """Rows of a `datasets.save_to_disk` split folder, read with pyarrow only."""
    from harness.leaks.io import arrow_folder_files, iter_arrow_batches

    rows: list[dict] = []
    for f in arrow_folder_files(folder):
        for batch in iter_arrow_batches(f):
            rows.extend(batch.to_pylist())
    return rows


def _hellaswag_clean(text: str) -> str:
    # The same clean-up lm-eval applies to HellaSwag's WikiHow markup, so that item text
    # matches what prompts (and any training copy made from them) contain.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_item_id(row: dict, row_index: int) -> str:
    """The run-log id of a HellaSwag row (its `ind`; see the module note on duplicates)."""
    return str(row["ind"])


def _mmlu_items(root: Path, limit: int | None) -> Iterator[EvalItem]:
    subjects = sorted(p.name for p in root.iterdir() if (p / "test").is_dir())
    for subject in subjects:
        rows = _read_arrow_folder(root / subject / "test")
        # lm-eval applies --limit to each MMLU subtask (subject), and so does this.
        for i, row in enumerate(rows[:limit] if limit is not None else rows):
            text = "\n".join([row["question"], *[str(c) for c in row["choices"]]])
            yield EvalItem("mmlu", f"{subject}:{i}", text, "bench", {"subject": subject, "row": i})


def _hellaswag_items(root: Path, limit: int | None) -> Iterator[EvalItem]:
    rows = _read_arrow_folder(root / "none" / "validation")
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        label = int(row["label"]) if str(row.get("label", "")).strip() else 0
        ctx = _hellaswag_clean(row["ctx"])
        ending = _hellaswag_clean(row["endings"][label]) if row["endings"] else ""
        yield EvalItem("hellaswag", hellaswag_item_id(row, i), f"{ctx} {ending}".strip(), "bench", {"row": i})


def _arc_items(root: Path, subset: str, task: str, limit: int | None) -> Iterator[EvalItem]:
    rows = _read_arrow_folder(root / subset / "validation")
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        text = "\n".join([row["question"], *row["choices"]["text"]])
        yield EvalItem(task, str(row["id"]), text, "bench", {"row": i})


def bench_items(task: str, limit: int | None = None) -> list[EvalItem]:
    """Items of an offline benchmark.

    Args:
        task: One of `BENCH_TASKS`.
        limit: First N items (for mmlu: of each subject, as lm-eval's --limit does).

    Raises:
        ConfigError: unknown task.
        AssetError: the benchmark's asset is not pulled.
    """
    from harness.assets import asset_path
    from harness.registry import unknown_name_message

    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}", "pass a non-negative limit")
    if task == "mmlu":
        return list(_mmlu_items(asset_path("mmlu"), limit))
    if task == "hellaswag":
        return list(_hellaswag_items(asset_path("hellaswag"), limit))
    if task == "arc_easy":
        return list(_arc_items(asset_path("arc"), "ARC-Easy", task, limit))
    if task == "arc_challenge":
        return list(_arc_items(asset_path("arc"), "ARC-Challenge", task, limit))
    raise ConfigError(unknown_name_message("benchmark task", task, BENCH_TASKS),
                      f"use one of {', '.join(BENCH_TASKS)} (comma-separated for several)")


def parse_bench_list(spec: str | list[str] | None) -> list[str]:
    """'mmlu,hellaswag' (or repeated options) -> validated task names, in order, no repeats."""
    from harness.registry import unknown_name_message

    if not spec:
        return []
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in parts:
        for name in part.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in BENCH_TASKS:
                raise ConfigError(unknown_name_message("benchmark task", name, BENCH_TASKS),
                                  f"use one of {', '.join(BENCH_TASKS)} (comma-separated for several)")
            if name not in out:
                out.append(name)
    return out


__all__ = ["BENCH_TASKS", "EvalItem", "bench_items", "flatten_text", "parse_bench_list", "suite_items",
           "hellaswag_item_id"]
