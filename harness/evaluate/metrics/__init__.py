"""Metrics: scoring predictions against references, all on a 0..1 scale.

Importing this package registers the built-ins in `METRICS` (harness.evaluate.metrics.base):
exact_match, f1, rouge1, rouge2, rougeL, bleu, chrf. `get_metric("evaluate:NAME[:KEY]")`
builds a metric from a HuggingFace `evaluate` module on demand. Plugins add their own with
`register_metric`.
"""

from __future__ import annotations

from harness.errors import HarnessError
from harness.evaluate.metrics import rouge, sacrebleu_metrics, squad  # noqa: F401  registers built-ins
from harness.evaluate.metrics import refusal  # noqa: F401  registers refusal_rate, over_refusal_rate
from harness.evaluate.metrics import abstain, structured  # noqa: F401  json_valid, json_fields, abstained, answered_anyway
from harness.evaluate.metrics.base import METRICS, FunctionMetric, Metric, metric_from_function, register_metric
from harness.evaluate.metrics.hf_evaluate import PREFIX as EVALUATE_PREFIX
from harness.evaluate.metrics.hf_evaluate import EvaluateMetric
from harness.suggest import unknown_name_message

__all__ = [
    "EvaluateMetric",
    "METRICS",
    "FunctionMetric",
    "Metric",
    "evaluate_metric",
    "get_metric",
    "metric_from_function",
    "metric_names",
    "register_metric",
]

# Loading an evaluate module is slow (seconds), so each spec is loaded once per process.
_evaluate_cache: dict[tuple[str, bool], EvaluateMetric] = {}


def evaluate_metric(spec: str, *, higher_is_better: bool = True) -> EvaluateMetric:
    """Builds (once per process) a metric backed by a HuggingFace `evaluate` module.

    Args:
        spec: "evaluate:NAME", "evaluate:NAME:KEY", or the same without the prefix.
            NAME is a hub name (online) or a local script/folder path (offline).
        higher_is_better: Direction of improvement; `evaluate` modules do not declare it.

    Returns:
        The metric, named by the full "evaluate:..." spec.

    Raises:
        HarnessError: If the module cannot be loaded.
    """
    full = spec if spec.startswith(EVALUATE_PREFIX) else EVALUATE_PREFIX + spec
    key = (full, higher_is_better)
    if key not in _evaluate_cache:
        _evaluate_cache[key] = EvaluateMetric(full, higher_is_better=higher_is_better)
    return _evaluate_cache[key]


def metric_names() -> list[str]:
    """Registered metric names plus the "evaluate:<name-or-path>" form, for listings."""
    return METRICS.names() + [EVALUATE_PREFIX + "<name-or-path>[:key]"]


def get_metric(name: str) -> Metric:
    """Looks up a metric by name.

    Args:
        name: A registered name ("f1", "bleu", a plugin's) or "evaluate:NAME[:KEY]".

    Returns:
        The Metric.

    Raises:
        HarnessError: For unknown names (with a did-you-mean suggestion) or an
            `evaluate:` module that cannot be loaded.
    """
    if name in METRICS:
        return METRICS.get(name)
    if name.startswith(EVALUATE_PREFIX):
        return evaluate_metric(name)
    raise HarnessError(
        unknown_name_message("metric", name, metric_names()),
        "use one of the names listed, or register your own with harness.evaluate.metrics.register_metric",
    )
