"""The Metric interface, registration helpers, and input checks shared by all metrics.

Every value a metric returns is on a 0..1 scale, so a difference of 0.01 is one "point"
everywhere in reports.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

from harness.errors import HarnessError
from harness.registry import Registry

ItemFn = Callable[[str, list], float]
T = TypeVar("T")


class Metric:
    """Scores predictions against references.

    Item-level metrics implement `score_item`; their aggregate is the mean of item scores.
    Corpus-level metrics (BLEU, chrF) also override `aggregate`, because their corpus score
    pools statistics over all items and is not the mean of sentence scores.

    Attributes:
        name: The name the metric is registered under and reported as.
        higher_is_better: Direction used when deciding whether a change is a regression.
        corpus_level: True when `aggregate` is computed over the whole corpus, so callers
            that resample items (bootstrap) must call `aggregate` instead of averaging.
    """

    name: str = ""
    higher_is_better: bool = True
    corpus_level: bool = False

    def score_item(self, prediction: str, references: list[str]) -> float:
        """Scores one prediction against its references.

        Args:
            prediction: The model output after any post-processing.
            references: One or more gold answers (never empty).

        Returns:
            The item's score on a 0..1 scale.
        """
        raise NotImplementedError(f"metric '{self.name}' does not implement score_item")

    def score_items(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        """Scores every item.

        Args:
            predictions: One output per item.
            references: For each item, its list of gold answers.

        Returns:
            One score per item, 0..1.

        Raises:
            HarnessError: If the lists differ in length or an item has no references.
        """
        check_inputs(self.name, predictions, references)
        return [float(self.score_item(p, list(r))) for p, r in zip(predictions, references)]

    def aggregate(
        self, predictions: list[str], references: list[list[str]], item_scores: list[float]
    ) -> float:
        """Combines item scores into the suite's score.

        Args:
            predictions: One output per item (used by corpus-level metrics).
            references: For each item, its list of gold answers.
            item_scores: What `score_items` returned for the same items.

        Returns:
            The mean of `item_scores` (corpus-level metrics override this), 0..1.

        Raises:
            HarnessError: If there are no items or the lengths disagree.
        """
        check_inputs(self.name, predictions, references, item_scores)
        return float(sum(item_scores) / len(item_scores))

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} higher_is_better={self.higher_is_better} "
            f"corpus_level={self.corpus_level}>"
        )


class FunctionMetric(Metric):
    """An item-level metric made from a plain `(prediction, references) -> float` function."""

    def __init__(self, fn: ItemFn, name: str, *, higher_is_better: bool = True):
        self.fn = fn
        self.name = name
        self.higher_is_better = higher_is_better
        self.corpus_level = False

    def score_item(self, prediction: str, references: list[str]) -> float:
        return float(self.fn(prediction, references))


METRICS: Registry[Metric] = Registry("metric")


def metric_from_function(
    fn: ItemFn, name: str | None = None, *, higher_is_better: bool = True
) -> Metric:
    """Wraps a plain function as an item-level Metric (aggregate = mean of items).

    Args:
        fn: `fn(prediction: str, references: list[str]) -> float`, returning 0..1.
        name: Metric name; defaults to the function's `__name__`.
        higher_is_better: Direction of improvement.

    Returns:
        A Metric that is not registered; pass it to `register_metric` to make it
        available by name.
    """
    return FunctionMetric(fn, name or fn.__name__, higher_is_better=higher_is_better)


def register_metric(
    name: str,
    *,
    higher_is_better: bool | None = None,
    corpus_level: bool | None = None,
    replace: bool = False,
) -> Callable[[T], T]:
    """Decorator that registers a metric under `name` in `METRICS`.

    Accepts a Metric subclass (instantiated with no arguments), a Metric instance, or a
    plain `(prediction, references) -> float` function. The decorated object is returned
    unchanged, so a decorated function can still be called directly.

    Example:
        @register_metric("contains_answer")
        def contains_answer(prediction, references):
            return float(any(r.lower() in prediction.lower() for r in references))

    Args:
        name: Registry name, e.g. "f1".
        higher_is_better: Overrides the class attribute; defaults to True for functions.
        corpus_level: Overrides the class attribute; functions are always item-level.
        replace: Replace an existing metric of the same name instead of raising.

    Returns:
        The decorator.

    Raises:
        HarnessError: If the name is taken (and `replace` is False) or the object is not
            a metric or a function.
    """

    def deco(obj: T) -> T:
        metric = _as_metric(obj, name, higher_is_better)
        metric.name = name
        if higher_is_better is not None:
            metric.higher_is_better = higher_is_better
        if corpus_level is not None:
            if corpus_level and isinstance(metric, FunctionMetric):
                raise HarnessError(
                    f"metric '{name}': a plain function cannot be corpus-level",
                    "subclass harness.evaluate.metrics.Metric and override aggregate()",
                )
            metric.corpus_level = corpus_level
        METRICS.add(name, metric, replace=replace)
        return obj

    return deco


def _as_metric(obj: object, name: str, higher_is_better: bool | None) -> Metric:
    if isinstance(obj, type) and issubclass(obj, Metric):
        return obj()
    if isinstance(obj, Metric):
        return obj
    if callable(obj):
        direction = True if higher_is_better is None else higher_is_better
        return FunctionMetric(obj, name, higher_is_better=direction)
    raise HarnessError(
        f"metric '{name}': cannot register {type(obj).__name__}",
        "register a Metric subclass, a Metric instance, "
        "or a function (prediction, references) -> float",
    )


def check_inputs(
    name: str,
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    item_scores: Sequence[float] | None = None,
) -> None:
    """Raises HarnessError unless there is one reference list per prediction, none empty.

    Args:
        name: Metric name, for the message.
        predictions: One output per item.
        references: One list of gold answers per item.
        item_scores: If given, must have one score per item and at least one item.
    """
    if len(predictions) != len(references):
        raise HarnessError(
            f"metric '{name}': {len(predictions)} predictions but "
            f"{len(references)} reference lists",
            "pass one list of references per prediction",
        )
    for i, refs in enumerate(references):
        # A bare string would be scored character by character, silently.
        if isinstance(refs, str):
            raise HarnessError(
                f"metric '{name}': references for item {i} is a string, not a list",
                "wrap single references in a list: [[ref], [ref], ...]",
            )
        if len(refs) == 0:
            raise HarnessError(
                f"metric '{name}': item {i} has no references",
                "give every example at least one reference",
            )
    if item_scores is not None:
        if len(item_scores) != len(predictions):
            raise HarnessError(
                f"metric '{name}': {len(item_scores)} item scores for {len(predictions)} items",
                "pass the scores score_items returned for the same items",
            )
        if not predictions:
            raise HarnessError(f"metric '{name}': no items to aggregate", "score at least one item")
