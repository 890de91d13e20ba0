"""Structured output: is the reply JSON, does it follow a JSON Schema, are its fields right.

All three metrics read the reply with one rule (`extract_json`, documented in
docs/structured-output.md):

1. The reply is stripped of surrounding whitespace.
2. If it holds exactly one complete fenced block (three backticks, an optional `json`
   tag, the body, three backticks), the body is parsed and any prose around the
   fence is ignored. Two or more fenced blocks are ambiguous: the reply is not JSON. A fence
   tagged with another language (```python) does not count as a JSON block.
3. If it holds no complete fenced block but opens with a fence that was never closed (the
   generation ran out of tokens before the closing backticks), the text after the opening
   fence line is parsed.
4. Otherwise the whole stripped reply must parse: leading or trailing prose makes it invalid.

Parsing is strict JSON: NaN/Infinity and duplicate object keys are rejected (Python's
`json.loads` accepts both).

    json_valid      1 when the reply parses as JSON (any JSON value)
    json_fields     share of the gold object's top-level fields whose values the reply's
                    object matches (references are gold JSON texts; best over references)
    json_schema:*   1 when the reply parses and validates against a JSON Schema file; a suite
                    binds its schema with `register_schema_metric` from its `python:` hook

Every metric here also has `details(predictions, references)`: one dict (or None) per item
with the evidence for a 0 — the parse error, the failing schema path and message, the
mismatched fields. `attach_details` puts them into the item records as `details`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.errors import HarnessError
from harness.evaluate.metrics.base import METRICS, Metric, check_inputs, register_metric

# A complete fence: ``` + optional language tag (then a newline, or a space), body, closing ```.
_FENCE = re.compile(r"```([A-Za-z0-9_+.-]*)[ \t]*\r?\n?(.*?)```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```([A-Za-z0-9_+.-]*)[ \t]*\r?\n")
_JSON_TAGS = ("", "json", "json5", "jsonc")


@dataclass(frozen=True)
class Parsed:
    """What `extract_json` made of a reply.

    Attributes:
        ok: Whether a JSON value was read.
        value: The value (None when not ok, or when the JSON was `null`).
        source: "whole", "fenced" or "unclosed-fence": which part of the reply was parsed.
        error: Why it is not JSON, when not ok.
    """

    ok: bool
    value: Any = None
    source: str = "whole"
    error: str | None = None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads_strict(text: str) -> Any:
    """`json.loads` without Python's extensions (NaN, Infinity, duplicate keys).

    Raises:
        ValueError: The text is not strict JSON (json.JSONDecodeError is a ValueError).
    """
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)


def extract_json(prediction: str) -> Parsed:
    """Reads a reply as JSON by the module's rule (one fenced block, else the whole text)."""
    text = prediction.strip()
    if not text:
        return Parsed(False, error="empty reply")
    blocks = list(_FENCE.finditer(text))
    json_blocks = [b for b in blocks if b.group(1).lower() in _JSON_TAGS]
    if len(json_blocks) > 1:
        return Parsed(False, source="fenced", error=f"{len(json_blocks)} fenced blocks: ambiguous")
    if json_blocks:
        body, source = json_blocks[0].group(2), "fenced"
    elif not blocks and (m := _OPEN_FENCE.match(text)) and m.group(1).lower() in _JSON_TAGS:
        body, source = text[m.end():], "unclosed-fence"
    else:
        body, source = text, "whole"
    try:
        return Parsed(True, value=loads_strict(body), source=source)
    except ValueError as exc:
        return Parsed(False, source=source, error=str(exc))


def _same(pred: Any, gold: Any) -> bool:
    """Value equality for json_fields: strings compare case- and whitespace-insensitively,
    numbers numerically (12 == 12.0; a bool is not a number), containers element-wise."""
    if isinstance(gold, bool) or isinstance(pred, bool):
        return type(gold) is type(pred) and gold == pred
    if isinstance(gold, (int, float)) and isinstance(pred, (int, float)):
        return math.isclose(gold, pred, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(gold, str) and isinstance(pred, str):
        return " ".join(gold.split()).casefold() == " ".join(pred.split()).casefold()
    if isinstance(gold, list) and isinstance(pred, list):
        return len(gold) == len(pred) and all(_same(p, g) for p, g in zip(pred, gold))
    if isinstance(gold, dict) and isinstance(pred, dict):
        return gold.keys() == pred.keys() and all(_same(pred[k], gold[k]) for k in gold)
    return gold is None and pred is None


def _gold(reference: str, metric: str) -> Any:
    try:
        return loads_strict(reference)
    except ValueError as exc:
        raise HarnessError(f"metric '{metric}': a reference is not JSON ({exc}): {reference[:80]!r}",
                           "references of a JSON suite must be gold JSON texts") from None


def field_matches(pred: Any, gold: Any) -> tuple[float, list[str]]:
    """(share of gold fields matched, names of the fields missed) for one gold value.

    A gold object scores the share of its top-level keys whose values the predicted object
    matches (missing keys count as misses; extra predicted keys are ignored). A gold value
    that is not an object, or an empty object, scores 1 or 0 on whole-value equality.
    """
    if isinstance(gold, dict) and gold:
        if not isinstance(pred, dict):
            return 0.0, list(gold)
        missed = [k for k in gold if k not in pred or not _same(pred[k], gold[k])]
        return (len(gold) - len(missed)) / len(gold), missed
    return (1.0, []) if _same(pred, gold) else (0.0, ["$"])


class _Detailed(Metric):
    """An item metric whose per-item evidence comes from one `_evaluate` call."""

    def _evaluate(self, prediction: str, references: list[str]) -> tuple[float, dict[str, Any] | None]:
        raise NotImplementedError

    def score_item(self, prediction: str, references: list[str]) -> float:
        return self._evaluate(prediction, references)[0]

    def details(self, predictions: list[str], references: list[list[str]]) -> list[dict[str, Any] | None]:
        """Per item, the evidence behind its score (None where there is nothing to say)."""
        check_inputs(self.name, predictions, references)
        return [self._evaluate(p, list(r))[1] for p, r in zip(predictions, references)]


@register_metric("json_valid")
class JsonValid(_Detailed):
    """1 when the reply parses as JSON (by `extract_json`'s rule), else 0."""

    def _evaluate(self, prediction, references):
        parsed = extract_json(prediction)
        if parsed.ok:
            return 1.0, None
        return 0.0, {"source": parsed.source, "error": parsed.error}


@register_metric("json_fields")
class JsonFields(_Detailed):
    """Share of the gold object's fields whose values the reply matches; best over references.

    References are gold JSON texts. A reply that is not JSON scores 0.
    """

    def _evaluate(self, prediction, references):
        parsed = extract_json(prediction)
        golds = [_gold(r, self.name) for r in references]
        if not parsed.ok:
            return 0.0, {"error": f"not JSON: {parsed.error}"}
        best, missed = max((field_matches(parsed.value, g) for g in golds), key=lambda t: t[0])
        return best, ({"missed": missed} if missed else None)


class JsonSchemaMetric(_Detailed):
    """1 when the reply parses and validates against a JSON Schema, else 0.

    The schema's own `$schema` picks the draft (default: the newest `jsonschema` knows);
    `format` keywords are checked (date, email, ...). References are not used.

    Args:
        name: The metric name, e.g. "json_schema:json-extract".
        schema_file: The JSON Schema file.
    """

    def __init__(self, name: str, schema_file: str | Path):
        from jsonschema.exceptions import SchemaError
        from jsonschema.validators import validator_for

        self.name = name
        self.schema_file = Path(schema_file)
        try:
            raw = self.schema_file.read_bytes()
            schema = loads_strict(raw.decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HarnessError(f"metric '{name}': cannot read the JSON Schema {self.schema_file}: {exc}",
                               "point the metric at a JSON Schema file") from None
        self.schema_bytes = raw
        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            raise HarnessError(f"metric '{name}': {self.schema_file} is not a valid JSON Schema: {exc.message}",
                               "fix the schema (see https://json-schema.org)") from None
        self.validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def _evaluate(self, prediction, references):
        from jsonschema.exceptions import best_match

        parsed = extract_json(prediction)
        if not parsed.ok:
            return 0.0, {"error": f"not JSON: {parsed.error}"}
        errors = list(self.validator.iter_errors(parsed.value))
        if not errors:
            return 1.0, None
        top = best_match(errors)
        return 0.0, {"path": top.json_path, "message": top.message, "validator": str(top.validator),
                     "errors": len(errors)}


def register_schema_metric(name: str, schema_file: str | Path, *, sha256: str | None = None) -> JsonSchemaMetric:
    """Registers a `JsonSchemaMetric` named `name` for a suite's schema file (call it from the
    suite's `python:` hook, which is imported before the suite's metrics are checked).

    Registering the same name again with the same schema bytes returns the first metric (a
    suite loaded twice, or from the wheel and the checkout); another schema under a taken
    name is an error.

    Args:
        name: The name the suite lists under `metrics:`; by convention "json_schema:<suite>".
        schema_file: The schema, usually `Path(__file__).with_name("schema.json")`.
        sha256: When given, the schema file's bytes must hash to it. The suite fingerprint
            covers the hook file but not the schema file, so a pinned hash makes any schema
            edit an edit of the hook, which changes the fingerprint.

    Raises:
        HarnessError: unreadable or invalid schema, a hash mismatch, or the name taken.
    """
    from harness.hashing import sha256_bytes

    metric = JsonSchemaMetric(name, schema_file)
    actual = sha256_bytes(metric.schema_bytes)
    if sha256 is not None and actual != sha256:
        raise HarnessError(f"metric '{name}': {metric.schema_file} has sha256 {actual}, the hook pins {sha256}",
                           "if the schema edit is intended, pin the new hash in the hook and bump the suite version")
    if name in METRICS:
        old = METRICS.get(name)
        if isinstance(old, JsonSchemaMetric) and old.schema_bytes == metric.schema_bytes:
            return old
        raise HarnessError(f"metric '{name}' is already registered (with another schema)",
                           "give each schema its own metric name, e.g. json_schema:<suite name>")
    METRICS.add(name, metric)
    return metric


def item_details(metrics: Sequence[Metric], predictions: list[str],
                 references: list[list[str]]) -> list[dict[str, Any]]:
    """Per item, {metric name: evidence} over the metrics that have `details`; {} for none."""
    out: list[dict[str, Any]] = [{} for _ in predictions]
    for metric in metrics:
        fn = getattr(metric, "details", None)
        if fn is None:
            continue
        for i, d in enumerate(fn(predictions, references)):
            if d:
                out[i][metric.name] = d
    return out


def attach_details(records: list[dict], metrics: Sequence[Metric], predictions: list[str],
                   references: list[list[str]]) -> None:
    """Adds `details: {metric: evidence}` to the records (one per item, in order) that have any.

    The wiring for suite_eval.evaluate_suite, after one model's records are built:
    `attach_details(records[-len(examples):], metrics, preds, refs)`.
    """
    for rec, d in zip(records, item_details(metrics, predictions, references), strict=True):
        if d:
            rec["details"] = d
