"""A suite's few-shot pool (`fewshot:` in suite.yaml): solved examples that are never evaluated.

`compare --baseline fewshot:K` shows the base K of them before each eval item. A pool item
that is also an eval item (or shares its background text) would hand the prompted base the
answer, so the pool is checked against every eval item of the suite (not only the first
`--limit`): by id, by the normalised text of the rendered prompt, and by the normalised
text of each `disjoint_on` variable (SQuAD's `context`: questions about one paragraph).

`holdout: N` takes the pool from the end of the suite's own data, whole `disjoint_on`
groups at a time (every record sharing a value with a pool record joins the pool), until
it holds at least N records; the rest, in file order, is what the suite evaluates.
"""

from __future__ import annotations

from typing import Callable, Sequence

from harness.errors import ConfigError
from harness.types import Example, Prompt


def _norm(value: object) -> str:
    from harness.leaks.normalize import normalize

    return normalize(value if isinstance(value, str) else repr(value))


def prompt_text(prompt: Prompt) -> str:
    """The text of a rendered prompt: plain text, or its messages' contents joined."""
    if prompt.messages:
        return "\n".join(content for _, content in prompt.messages)
    return prompt.text or ""


def _keys(example: Example, disjoint_on: Sequence[str]) -> set[tuple[str, str]]:
    keys = {(name, _norm(example.vars.get(name))) for name in disjoint_on if name in example.vars}
    return {k for k in keys if k[1]}  # an empty text is shared by nothing


def split_holdout(examples: list[Example], n: int, disjoint_on: Sequence[str]) -> tuple[list[Example], list[Example]]:
    """(eval examples, pool examples): the pool is at least `n` records from the end of the
    data, grown by whole groups of records that share a `disjoint_on` value.

    Raises:
        ConfigError: the groups leave no record to evaluate.
    """
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, ex in enumerate(examples):
        for key in _keys(ex, disjoint_on):
            by_key.setdefault(key, []).append(i)
    pooled: set[int] = set()
    for start in range(len(examples) - 1, -1, -1):
        if len(pooled) >= n:
            break
        todo = [start]
        while todo:  # the record, and transitively every record sharing a value with it
            i = todo.pop()
            if i in pooled:
                continue
            pooled.add(i)
            for key in _keys(examples[i], disjoint_on):
                todo.extend(by_key[key])
    kept = [ex for i, ex in enumerate(examples) if i not in pooled]
    if not kept:
        raise ConfigError(f"fewshot.holdout: {n} takes all {len(examples)} records into the pool",
                          "hold out fewer records")
    return kept, [ex for i, ex in enumerate(examples) if i in pooled]


def check_disjoint(pool: list[Example], evals: list[Example], render: Callable[[Example], Prompt],
                   disjoint_on: Sequence[str], where: str) -> None:
    """Refuses a pool that shares an item, a prompt or a `disjoint_on` text with the eval set.

    Raises:
        ConfigError: one line naming the first pool item that overlaps, and how.
    """
    eval_ids = {ex.id for ex in evals}
    eval_prompts = {_norm(prompt_text(render(ex))): ex.id for ex in evals}
    eval_keys: dict[tuple[str, str], str] = {}
    for ex in evals:
        for key in _keys(ex, disjoint_on):
            eval_keys.setdefault(key, ex.id)
    fix = "remove it from the pool (or the eval data); the pool must never hold an eval item"
    for ex in pool:
        if ex.id in eval_ids:
            raise ConfigError(f"{where}: fewshot: pool item '{ex.id}' is also an eval item (same id)", fix)
        same = eval_prompts.get(_norm(prompt_text(render(ex))))
        if same is not None:
            raise ConfigError(f"{where}: fewshot: pool item '{ex.id}' has the same normalised prompt text as "
                              f"eval item '{same}'", fix)
        for key in _keys(ex, disjoint_on):
            if key in eval_keys:
                raise ConfigError(f"{where}: fewshot: pool item '{ex.id}' shares its '{key[0]}' text with eval "
                                  f"item '{eval_keys[key]}' (fewshot.disjoint_on)", fix)
