"""`evaluate:NAME[:KEY]` metrics backed by a HuggingFace `evaluate` module.

NAME is a hub module name such as "exact_match" (needs the network on first use) or a
local metric script / folder (works offline). KEY picks the entry of the dict that
`compute()` returns; without it the only, or first, numeric entry is used. Values are used
as the module returns them, so modules reporting 0..100 (sacrebleu, chrf) break the 0..1
convention; use the built-in `bleu` and `chrf` for those.
"""

from __future__ import annotations

import os
import re
from numbers import Real
from typing import Any

from harness.errors import HarnessError
from harness.evaluate.metrics.base import Metric, check_inputs

PREFIX = "evaluate:"
# A trailing ":KEY" is split off only when it looks like a result key, so that a path
# such as "C:\\metrics\\acc.py" keeps its drive letter.
_KEY = re.compile(r"^[A-Za-z_][\w.-]*$")

OFFLINE_HINT = (
    "pass a local path to the metric script, e.g. evaluate:./metrics/my_metric.py "
    "(offline, hub names cannot be fetched), or check the name on huggingface.co/evaluate-metric"
)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Splits "evaluate:NAME[:KEY]" into (NAME, KEY or None).

    Args:
        spec: The full metric name, starting with "evaluate:".

    Returns:
        The module name or path and the result key, if one was given.

    Raises:
        HarnessError: If NAME is empty.
    """
    rest = spec[len(PREFIX) :] if spec.startswith(PREFIX) else spec
    name, key = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and head and _KEY.match(tail) and not os.path.exists(rest):
        name, key = head, tail
    if not name:
        raise HarnessError(
            f"metric '{spec}' names no evaluate module",
            "write evaluate:NAME, evaluate:NAME:KEY or evaluate:/path/to/metric.py",
        )
    return name, key


def _looks_like_path(name: str) -> bool:
    # "org/name" is a hub module unless such a folder exists here, so a bare "/" inside
    # the name does not make it a path; a leading "/", "." or "~" or a ".py" suffix does.
    return (
        name.endswith(".py")
        or name.startswith(("/", ".", "~", os.sep))
        or os.path.exists(os.path.expanduser(name))
    )


def load_module(name: str, spec: str) -> Any:
    """Loads an `evaluate` module by hub name or local path.

    Args:
        name: Hub name, or a path to a metric script or to a folder holding NAME/NAME.py.
        spec: The full metric name, for messages.

    Returns:
        The loaded `evaluate.EvaluationModule`.

    Raises:
        HarnessError: With a one-line message when the module cannot be loaded.
    """
    local = _looks_like_path(name)
    path = os.path.abspath(os.path.expanduser(name)) if local else name
    if local and not os.path.exists(path):
        raise HarnessError(
            f"metric '{spec}': no metric script at {path}",
            "check the path; it must be a .py file or a folder holding <folder>/<folder>.py",
        )
    try:
        # Imported here: `evaluate` pulls in `datasets` and takes seconds to import.
        import evaluate
    except ImportError as exc:
        raise HarnessError(
            f"metric '{spec}' needs the 'evaluate' package: {exc}", "pip install evaluate"
        ) from exc
    try:
        # keep_in_memory: no Arrow cache files per compute() call; metrics here are small.
        return evaluate.load(path, keep_in_memory=True)
    except Exception as exc:  # evaluate raises many types (network, import, script errors)
        raise HarnessError(
            f"metric '{spec}': cannot load evaluate module '{name}': {_one_line(exc)}",
            OFFLINE_HINT,
        ) from exc


def _one_line(exc: BaseException) -> str:
    # Trailing dots would run into the "; fix:" that HarnessError appends.
    text = " ".join(str(exc).split()).rstrip(". ") or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _wants_single_reference(module: Any) -> bool:
    """True if the module's `references` input is a plain value, not a list of them."""
    import datasets

    options = module.features if isinstance(module.features, list) else [module.features]
    return all(isinstance(opt.get("references"), datasets.Value) for opt in options)


class EvaluateMetric(Metric):
    """A metric computed by a HuggingFace `evaluate` module.

    `aggregate` calls `compute()` on all items, so this is corpus-level: the module may
    not be a mean of items (BLEU-like metrics are not).

    Args:
        spec: "evaluate:NAME" or "evaluate:NAME:KEY"; becomes the metric's name.
        higher_is_better: Direction of improvement; `evaluate` does not say, so default True.
    """

    corpus_level = True

    def __init__(self, spec: str, *, higher_is_better: bool = True):
        self.name = spec if spec.startswith(PREFIX) else PREFIX + spec
        self.higher_is_better = higher_is_better
        self.module_name, self.key = parse_spec(self.name)
        self.module = load_module(self.module_name, self.name)
        self._single_ref = _wants_single_reference(self.module)

    def _compute(self, predictions: list[str], references: list[Any]) -> float:
        try:
            result = self.module.compute(predictions=predictions, references=references)
        except Exception as exc:  # the module's own validation or arithmetic failed
            raise HarnessError(
                f"metric '{self.name}': compute() failed: {_one_line(exc)}",
                "check that the module takes string predictions and references",
            ) from exc
        return self._pick(result)

    def _pick(self, result: Any) -> float:
        if not isinstance(result, dict):
            raise HarnessError(
                f"metric '{self.name}': compute() returned {type(result).__name__}, not a dict",
                "use an evaluate module whose compute() returns a dict of scores",
            )
        if self.key is not None:
            if self.key not in result or not _is_number(result[self.key]):
                raise HarnessError(
                    f"metric '{self.name}': no numeric key '{self.key}' in result "
                    f"(keys: {', '.join(map(str, result))})",
                    f"write evaluate:{self.module_name}:KEY with one of those keys",
                )
            return float(result[self.key])
        for value in result.values():
            if _is_number(value):
                return float(value)
        raise HarnessError(
            f"metric '{self.name}': compute() returned no numeric value "
            f"(keys: {', '.join(map(str, result))})",
            f"write evaluate:{self.module_name}:KEY to choose one",
        )

    def _item_scores_per_ref(self, prediction: str, references: list[str]) -> list[float]:
        return [self._compute([prediction], [ref]) for ref in references]

    def score_item(self, prediction: str, references: list[str]) -> float:
        if self._single_ref:
            # The module takes one reference per item: score each, keep the best, like the
            # built-in item metrics do.
            return max(self._item_scores_per_ref(prediction, references))
        return self._compute([prediction], [list(references)])

    def aggregate(
        self, predictions: list[str], references: list[list[str]], item_scores: list[float]
    ) -> float:
        check_inputs(self.name, predictions, references, item_scores)
        if not self._single_ref:
            return self._compute(list(predictions), [list(r) for r in references])
        # One reference per item only: use each item's best-scoring reference, matching
        # the max-over-references choice made in score_item.
        best = []
        for p, refs in zip(predictions, references):
            if len(refs) == 1:
                best.append(refs[0])
            else:
                scores = self._item_scores_per_ref(p, list(refs))
                best.append(refs[scores.index(max(scores))])
        return self._compute(list(predictions), best)


def _is_number(value: Any) -> bool:
    # bool is a Real but a True/False flag is not a score; numpy scalars register as Real.
    return isinstance(value, Real) and not isinstance(value, bool)
