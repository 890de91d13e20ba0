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
from harness.suggest import unknown_name_message

BENCH_TASKS = ("mmlu", "hellaswag", "arc_easy", "arc_challenge")  # and mmlu_<subject>
# Example variables that hold the question on their own (a training prompt may copy just it).
QUESTION_VARS = ("question", "query", "prompt", "instruction", "input")


def is_bench_task(name: str) -> bool:
    """Whether `bench_items` can read `name` offline: a BENCH_TASKS name, or mmlu_<subject>
    for a subject in the pulled MMLU asset (MMLU groups such as mmlu_stem are not)."""
    if name in BENCH_TASKS:
        return True
    if not name.startswith("mmlu_"):
        return False
    from harness.assets import asset_path
    from harness.errors import HarnessError

    try:
        return (asset_path("mmlu") / name[5:] / "test").is_dir()
    except HarnessError:
        return False


@dataclass(frozen=True)
class EvalItem:
    """One eval item to check for leaks.

    Attributes:
        task: Suite name or benchmark task ("mmlu", "hellaswag", "arc_easy", "arc_challenge").
        item_id: The id the run log uses for this item.
        text: The item's text (prompt variables + references, or question + options).
        kind: "suite" or "bench".
        meta: Extra identification (e.g. subject, source row) copied into the records.
        answers: Character spans (start, end) of the gold answers inside `text` (suite
            references, the correct option or ending), so that a training copy of the
            answer alone is caught even when it covers little of the whole item.
        inputs: What the model is shown for this item (rendered prompt, question, context),
            matched as exact copies by `harness.leaks.exact`; empty means the text before
            the first answer.
        answer_shown: The gold answer is part of what the model is shown (MMLU lists its
            options in the prompt), so a training copy of the item's text alone is not a
            copy of its answer (harness.leaks.contamination).
        date: The item's date, ISO `YYYY-MM-DD` (harness.leaks.temporal), or None.
    """

    task: str
    item_id: str
    text: str
    kind: str = "suite"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    answers: tuple[tuple[int, int], ...] = field(default=(), compare=False)
    inputs: tuple[str, ...] = field(default=(), compare=False)
    answer_shown: bool = field(default=False, compare=False)
    date: str | None = field(default=None, compare=False)

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


def suite_items(suite: Any, limit: int | None = None, trusted_dirs: tuple = (),
                dates: bool = False) -> list[EvalItem]:
    """Items of a suite: text = its examples' variable values, then the references.

    Args:
        suite: A `harness.evaluate.suites.Suite`, or a name/folder for `load_suite`.
        limit: First N examples only (as `harness run --limit`).
        trusted_dirs: Passed to `load_suite` for suites with python hooks.
        dates: Read each item's date (harness.leaks.temporal.suite_dates); a bad date
            is then an error naming its file and line.
    """
    from harness.evaluate.suites import Suite, load_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite, trusted_dirs)
    examples = suite.examples(limit)
    when: dict[str, str | None] = {}
    if dates:
        from harness.leaks.temporal import suite_dates

        when = suite_dates(suite, examples)
    items = []
    for ex in examples:
        context = flatten_text(list(ex.vars.values()))
        text, spans = _join_with_spans(context, flatten_text(list(ex.references)))
        items.append(EvalItem(suite.name, str(ex.id), text, "suite", answers=spans,
                              inputs=_suite_inputs(suite, ex, "\n".join(context)), date=when.get(str(ex.id))))
    return items


def _suite_inputs(suite: Any, ex: Any, context: str) -> tuple[str, ...]:
    """The prompt as rendered for the model (each user turn, and all turns joined), the
    question variables, and the variables joined: what a training prompt copies."""
    prompt = suite.render(ex)
    texts = [context]
    if prompt.text is not None:
        texts.append(prompt.text)
    if prompt.messages:
        texts += [c for r, c in prompt.messages if r == "user"]
        texts.append("\n".join(c for _, c in prompt.messages))
    texts += [v for v in (ex.vars.get(k) for k in QUESTION_VARS) if isinstance(v, str)]
    return tuple(dict.fromkeys(t for t in texts if t))


def _join_with_spans(context: list[str], answers: list[str], sep: str = "\n") -> tuple[str, tuple[tuple[int, int], ...]]:
    """Join context parts then answer parts with `sep`; return the text and the answers' spans."""
    text = sep.join(context)
    spans = []
    for a in answers:
        if text:
            text += sep
        spans.append((len(text), len(text) + len(a)))
        text += a
    return text, tuple(spans)


# --------------------------------------------------------------------------- benchmarks


def _read_arrow_folder(folder: Path) -> list[dict]:
    """Rows of a `datasets.save_to_disk` split folder, read with pyarrow only."""
    from harness.io import arrow_folder_files, iter_arrow_batches

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
    """The run-log id of a HellaSwag row: `ind:row`. `ind` alone repeats (433 values occur
    twice in validation), and pairing base with adapter needs unique ids."""
    return f"{row['ind']}:{row_index}"


def _mmlu_subjects(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "test").is_dir())


def _mmlu_items(root: Path, limit: int | None, subjects: list[str] | None = None,
                task: str = "mmlu") -> Iterator[EvalItem]:
    for subject in subjects if subjects is not None else _mmlu_subjects(root):
        rows = _read_arrow_folder(root / subject / "test")
        # lm-eval applies --limit to each MMLU subtask (subject), and so does this.
        for i, row in enumerate(rows[:limit] if limit is not None else rows):
            choices = [str(c) for c in row["choices"]]
            text = "\n".join([row["question"], *choices])
            # lm-eval's MMLU prompt lists the options, so the correct one is shown to the model
            yield EvalItem(task, f"{subject}:{i}", text, "bench", {"subject": subject, "row": i},
                           _option_span(row["question"], choices, row.get("answer")), (row["question"],),
                           answer_shown=True)


def _hellaswag_items(root: Path, limit: int | None) -> Iterator[EvalItem]:
    rows = _read_arrow_folder(root / "none" / "validation")
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        label = int(row["label"]) if str(row.get("label", "")).strip() else 0
        ctx = _hellaswag_clean(row["ctx"])
        ending = _hellaswag_clean(row["endings"][label]) if row["endings"] else ""
        text = f"{ctx} {ending}".strip()
        answers = ((len(text) - len(ending), len(text)),) if ending else ()
        yield EvalItem("hellaswag", hellaswag_item_id(row, i), text, "bench", {"row": i}, answers, (ctx,))


def _arc_items(root: Path, subset: str, task: str, limit: int | None) -> Iterator[EvalItem]:
    rows = _read_arrow_folder(root / subset / "validation")
    for i, row in enumerate(rows[:limit] if limit is not None else rows):
        choices = list(row["choices"]["text"])
        labels = list(row["choices"]["label"])
        gold = labels.index(row["answerKey"]) if row.get("answerKey") in labels else None
        text = "\n".join([row["question"], *choices])
        yield EvalItem(task, str(row["id"]), text, "bench", {"row": i}, _option_span(row["question"], choices, gold),
                       (row["question"],))


def _option_span(question: str, choices: list[str], gold: Any) -> tuple[tuple[int, int], ...]:
    """Span of the gold option in "question\\noption\\noption..."."""
    if not isinstance(gold, int) or not 0 <= gold < len(choices):
        return ()
    start = len(question) + 1 + sum(len(c) + 1 for c in choices[:gold])
    return ((start, start + len(choices[gold])),)


def bench_items(task: str, limit: int | None = None) -> list[EvalItem]:
    """Items of an offline benchmark.

    Args:
        task: One of `BENCH_TASKS`, or `mmlu_<subject>` for one MMLU subject (item ids
            are the same as under "mmlu", the task name is the subtask's).
        limit: First N items (for mmlu: of each subject, as lm-eval's --limit does).

    Raises:
        ConfigError: unknown task.
        AssetError: the benchmark's asset is not pulled.
    """
    from harness.assets import asset_path
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}", "pass a non-negative limit")
    if task == "mmlu":
        return list(_mmlu_items(asset_path("mmlu"), limit))
    if task.startswith("mmlu_"):  # one subject, named as lm-eval names its subtask
        root = asset_path("mmlu")
        subjects = _mmlu_subjects(root)
        if task[5:] not in subjects:
            raise ConfigError(unknown_name_message("MMLU subject task", task, [f"mmlu_{s}" for s in subjects]),
                              "use mmlu for all subjects or mmlu_<subject> for one")
        return list(_mmlu_items(root, limit, [task[5:]], task))
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
    if not spec:
        return []
    parts = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for part in parts:
        for name in part.split(","):
            name = name.strip()
            if not name:
                continue
            if name not in BENCH_TASKS and not name.startswith("mmlu_"):
                raise ConfigError(unknown_name_message("benchmark task", name, BENCH_TASKS),
                                  f"use one of {', '.join(BENCH_TASKS)} (comma-separated for several)")
            if name not in out:
                out.append(name)
    return out


def eval_items(suites: list[str] | None = None, benches: list[str] | str | None = None, limit: int | None = None,
               trusted_dirs: list | tuple | None = (), dates: bool = True) -> list[EvalItem]:
    """Items of suites and benchmarks, everything validated before any is read.

    Args:
        suites: Suite names or folders.
        benches: Benchmark task names ("mmlu,hellaswag" or a list).
        limit: First N items of each suite and task (mmlu: of each subject).
        trusted_dirs: Folders whose suite hooks may run.
        dates: Read suite items' dates (benchmark items are undated).

    Raises:
        ConfigError: nothing asked for, unknown suite or task, negative limit, a bad date.
    """
    from harness.evaluate.suites import load_suite

    tasks = parse_bench_list(benches)
    suites = list(suites or [])
    if not suites and not tasks:
        raise ConfigError("nothing to check: no --suite and no --bench",
                          "pass --suite NAME and/or --bench mmlu,hellaswag,arc_easy,arc_challenge")
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit-per-task must be >= 0, got {limit}", "pass a non-negative number")
    loaded = [load_suite(s, [str(p) for p in trusted_dirs or ()]) for s in suites]
    items: list[EvalItem] = []
    for suite in loaded:
        items += suite_items(suite, limit, dates=dates)
    for task in tasks:
        items += bench_items(task, limit)
    return items


__all__ = ["BENCH_TASKS", "EvalItem", "QUESTION_VARS", "bench_items", "eval_items", "flatten_text", "is_bench_task",
           "parse_bench_list",
           "suite_items",
           "hellaswag_item_id"]
