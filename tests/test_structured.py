"""Structured output: json_valid / json_fields / json_schema:* with hand-computed values and
error evidence, the json-extract suite without a model, and one real SmolLM2 run (slow)."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys

import pytest

from harness.errors import ConfigError, HarnessError
from harness.evaluate.metrics import METRICS, get_metric
from harness.evaluate.metrics.structured import (
    JsonSchemaMetric,
    attach_details,
    extract_json,
    field_matches,
    item_details,
    register_schema_metric,
)
from harness.evaluate.suites import BUNDLED_DIR, load_suite
from harness.hashing import sha256_bytes
from harness.log.schema import ItemRecord

SUITE_DIR = BUNDLED_DIR / "json-extract"
SCHEMA = SUITE_DIR / "schema.json"
GOLD = {"name": "Linden Choir", "category": "concert", "date": "2025-05-02", "city": "Ghent", "price": 15}
GOLD_TEXT = json.dumps(GOLD)


def scores(name: str, preds: list[str], refs: list[list[str]] | None = None) -> list[float]:
    refs = refs if refs is not None else [[GOLD_TEXT]] * len(preds)
    return get_metric(name).score_items(preds, refs)


def one_detail(name: str, pred: str, ref: str = GOLD_TEXT):
    return get_metric(name).details([pred], [[ref]])[0]


def with_gold(**changes) -> str:
    obj = {**GOLD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...})


# --- the JSON reading rule ---------------------------------------------------------------


@pytest.mark.parametrize("reply, ok, source, value", [
    ('{"a": 1}', True, "whole", {"a": 1}),
    ('  \n{"a": 1}\n ', True, "whole", {"a": 1}),
    ("42", True, "whole", 42),
    ("null", True, "whole", None),
    ('[1, "x"]', True, "whole", [1, "x"]),
    ('```json\n{"a": 1}\n```', True, "fenced", {"a": 1}),
    ('```JSON\n{"a": 1}\n```', True, "fenced", {"a": 1}),
    ('Sure, here it is:\n```json\n{"a": 1}\n```\nHope this helps!', True, "fenced", {"a": 1}),
    ('```\n[1, 2]\n```', True, "fenced", [1, 2]),
    ('```{"a": 1}```', True, "fenced", {"a": 1}),
    ('```json\n{"a": 1}', True, "unclosed-fence", {"a": 1}),  # cut before the closing fence
    ('Here is the JSON: {"a": 1}', False, "whole", None),  # leading prose
    ('{"a": 1} I hope this helps.', False, "whole", None),  # trailing prose
    ('{"a": 1} {"b": 2}', False, "whole", None),
    ('```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', False, "fenced", None),  # two blocks: ambiguous
    ('```python\n{"a": 1}\n```', False, "whole", None),  # not a JSON block
    ('```json\n{"a": 1,}\n```', False, "fenced", None),
    ('{"a": 1,}', False, "whole", None),  # trailing comma
    ("{'a': 1}", False, "whole", None),  # single quotes
    ('{"a": NaN}', False, "whole", None),  # Python's json accepts NaN; JSON does not
    ('{"a": Infinity}', False, "whole", None),
    ('{"a": 1, "a": 2}', False, "whole", None),  # duplicate key
    ('{"a": 1', False, "whole", None),  # cut mid-object
    ("", False, "whole", None),
    ("   ", False, "whole", None),
])
def test_extract_json_rule(reply, ok, source, value):
    parsed = extract_json(reply)
    assert (parsed.ok, parsed.source) == (ok, source), parsed
    if ok:
        assert parsed.value == value and parsed.error is None
    else:
        assert parsed.error


def test_parse_errors_name_the_cause():
    assert extract_json('{"a": 1, "a": 2}').error == "duplicate key 'a'"
    assert extract_json('{"a": NaN}').error == "NaN is not JSON"
    assert extract_json("").error == "empty reply"
    assert extract_json('```json\n{}\n```\n```\n[]\n```').error == "2 fenced blocks: ambiguous"
    assert extract_json('{"a": 1,}').error.startswith("Illegal trailing comma") or \
        extract_json('{"a": 1,}').error.startswith("Expecting property name")


# --- json_valid ---------------------------------------------------------------------------


def test_json_valid_items_and_mean():
    preds = ['{"a": 1}', "```json\n[1]\n```", "Answer: {}", '{"a": 1,}', "true"]
    m = get_metric("json_valid")
    items = m.score_items(preds, [["x"]] * 5)
    assert items == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert m.aggregate(preds, [["x"]] * 5, items) == pytest.approx(3 / 5)
    assert m.higher_is_better and not m.corpus_level


def test_json_valid_details_only_for_failures():
    m = get_metric("json_valid")
    details = m.details(['{"a": 1}', 'Answer: {"a": 1}', "```json\n{\"a\": 1,}\n```"], [["x"]] * 3)
    assert details[0] is None
    assert details[1] == {"source": "whole", "error": "Expecting value: line 1 column 1 (char 0)"}
    assert details[2]["source"] == "fenced" and "line 1" in details[2]["error"]


# --- json_fields --------------------------------------------------------------------------


@pytest.mark.parametrize("pred, expected, missed", [
    (GOLD_TEXT, 1.0, None),
    # Numbers compare numerically, strings case- and whitespace-insensitively.
    (with_gold(price=15.0, name="  linden   CHOIR "), 1.0, None),
    # Extra keys do not count against the fields score.
    (with_gold(venue="St. Mary's"), 1.0, None),
    (with_gold(date="2 May 2025", city="Gent"), 3 / 5, ["date", "city"]),
    (with_gold(price=...), 4 / 5, ["price"]),  # missing key
    (with_gold(price="15"), 4 / 5, ["price"]),  # a string is not a number
    (with_gold(name=None, category=None, date=None, city=None, price=None), 0.0,
     ["name", "category", "date", "city", "price"]),
    ("```json\n" + with_gold(city="Bruges") + "\n```", 4 / 5, ["city"]),
])
def test_json_fields_hand_computed(pred, expected, missed):
    assert scores("json_fields", [pred]) == [pytest.approx(expected)]
    assert one_detail("json_fields", pred) == (None if missed is None else {"missed": missed})


def test_json_fields_unparseable_or_wrong_shape_scores_zero():
    assert scores("json_fields", ["not json", "[1, 2]", '"Ghent"']) == [0.0, 0.0, 0.0]
    assert one_detail("json_fields", "not json")["error"].startswith("not JSON: Expecting value")
    assert one_detail("json_fields", "[1, 2]") == {"missed": ["name", "category", "date", "city", "price"]}


def test_json_fields_best_over_references_and_scalar_gold():
    refs = [[json.dumps({"a": 1, "b": 2}), json.dumps({"a": 1, "b": 3})]]
    assert scores("json_fields", ['{"a": 1, "b": 3}'], refs) == [1.0]
    assert scores("json_fields", ['{"a": 1, "b": 4}'], refs) == [0.5]
    # A gold value that is not an object is compared whole; a bool is not a number.
    assert scores("json_fields", ["[1, 2]", "[1, 3]", "1", "true"], [["[1, 2]"], ["[1, 2]"], ["true"], ["true"]]) \
        == [1.0, 0.0, 0.0, 1.0]
    assert field_matches({"x": [1, {"y": "A"}]}, {"x": [1, {"y": "a"}]}) == (1.0, [])
    assert field_matches({"x": None}, {"x": 0}) == (0.0, ["x"])


def test_json_fields_refuses_a_reference_that_is_not_json():
    with pytest.raises(HarnessError, match="a reference is not JSON"):
        scores("json_fields", ['{"a": 1}'], [["a: 1"]])


# --- json_schema:* ------------------------------------------------------------------------


@pytest.fixture
def schema_metric():
    load_suite("json-extract")  # its hook registers the metric
    return get_metric("json_schema:json-extract")


@pytest.mark.parametrize("pred, path, validator, message", [
    (with_gold(price="15"), "$.price", "type", "'15' is not of type 'number'"),
    (with_gold(price=-1), "$.price", "minimum", "-1 is less than the minimum of 0"),
    (with_gold(city=...), "$", "required", "'city' is a required property"),
    (with_gold(venue="Hall"), "$", "additionalProperties",
     "Additional properties are not allowed ('venue' was unexpected)"),
    (with_gold(category="gig"), "$.category", "enum",
     "'gig' is not one of ['concert', 'workshop', 'market', 'talk', 'race', 'exhibition']"),
    # Both the pattern and the date format fail: the first is reported, both are counted.
    (with_gold(date="2 May 2025"), "$.date", "pattern", "'2 May 2025' does not match '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'"),
    (with_gold(date="2025-13-45"), "$.date", "format", "'2025-13-45' is not a 'date'"),  # format is checked
    (with_gold(name=""), "$.name", "minLength", "'' should be non-empty"),
    ("[1, 2]", "$", "type", "[1, 2] is not of type 'object'"),
])
def test_json_schema_violations_keep_path_and_message(schema_metric, pred, path, validator, message):
    assert schema_metric.score_items([pred], [[GOLD_TEXT]]) == [0.0]
    d = schema_metric.details([pred], [[GOLD_TEXT]])[0]
    n = 2 if validator == "pattern" else 1
    assert d == {"path": path, "message": message, "validator": validator, "errors": n}


def test_json_schema_passes_and_counts_errors(schema_metric):
    preds = [GOLD_TEXT, "```json\n" + GOLD_TEXT + "\n```", with_gold(price=15.5), with_gold(price="x", city=...),
             "not json", GOLD_TEXT + " trailing"]
    assert schema_metric.score_items(preds, [[GOLD_TEXT]] * 6) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    details = schema_metric.details(preds, [[GOLD_TEXT]] * 6)
    assert details[:3] == [None, None, None]
    # Two violations: the one nearest the root is reported, with the count.
    assert details[3] == {"path": "$", "message": "'city' is a required property", "validator": "required",
                          "errors": 2}
    assert details[4] == {"error": "not JSON: Expecting value: line 1 column 1 (char 0)"}
    assert details[5]["error"].startswith("not JSON: Extra data")
    assert schema_metric.aggregate(preds, [[GOLD_TEXT]] * 6, [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]) == 0.5


def test_register_schema_metric_rules(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "required": ["a"]}')
    sha = sha256_bytes(schema.read_bytes())
    name = "json_schema:test-rules"
    try:
        m = register_schema_metric(name, schema, sha256=sha)
        assert get_metric(name) is m and isinstance(m, JsonSchemaMetric)
        assert m.score_items(['{"a": 1}', "{}"], [["-"], ["-"]]) == [1.0, 0.0]
        # Same bytes again (a second import of the hook): the same metric.
        copy = tmp_path / "copy.json"
        shutil.copy(schema, copy)
        assert register_schema_metric(name, copy) is m
        other = tmp_path / "other.json"
        other.write_text('{"type": "array"}')
        with pytest.raises(HarnessError, match="already registered"):
            register_schema_metric(name, other)
        with pytest.raises(HarnessError, match="the hook pins"):
            register_schema_metric("json_schema:test-pin", other, sha256=sha)
        assert "json_schema:test-pin" not in METRICS
    finally:
        METRICS.remove(name)


@pytest.mark.parametrize("text, match", [
    ('{"type": 12}', "is not a valid JSON Schema"),
    ("{not json", "cannot read the JSON Schema"),
])
def test_a_bad_schema_file_is_refused(tmp_path, text, match):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(HarnessError, match=match):
        register_schema_metric("json_schema:test-bad", bad)
    with pytest.raises(HarnessError, match="cannot read"):
        register_schema_metric("json_schema:test-bad", tmp_path / "missing.json")


# --- details into item records ------------------------------------------------------------


def test_attach_details_adds_evidence_to_records_that_have_some(schema_metric):
    metrics = [get_metric(n) for n in ("json_valid", "json_schema:json-extract", "json_fields", "exact_match")]
    preds = [GOLD_TEXT, with_gold(price="15"), "Sure: {}"]
    refs = [[GOLD_TEXT]] * 3
    assert item_details(metrics, preds, refs)[0] == {}
    records = [{"model": "base", "task": "json-extract", "item_id": f"je-{i}", "prediction": p, "references": r,
                "scores": {m.name: m.score_items([p], [r])[0] for m in metrics}} for i, (p, r) in
               enumerate(zip(preds, refs))]
    attach_details(records, metrics, preds, refs)
    assert "details" not in records[0]
    assert records[1]["details"] == {
        "json_schema:json-extract": {"path": "$.price", "message": "'15' is not of type 'number'",
                                     "validator": "type", "errors": 1},
        "json_fields": {"missed": ["price"]},
    }
    assert set(records[2]["details"]) == {"json_valid", "json_schema:json-extract", "json_fields"}
    # The run log keeps the extra key as it is.
    back = ItemRecord.model_validate(json.loads(json.dumps(records[1]))).model_dump(exclude_none=True)
    assert back["details"] == records[1]["details"]
    with pytest.raises(ValueError):
        attach_details(records[:2], metrics, preds, refs)


# --- the bundled suite --------------------------------------------------------------------


def test_json_extract_suite_loads_and_renders_without_a_model():
    suite = load_suite("json-extract")
    examples = suite.examples()
    assert len(examples) == 60 >= 40
    assert suite.metric_names == ["json_valid", "json_schema:json-extract", "json_fields"]
    assert suite.generation.max_new_tokens <= 64
    ids = [ex.id for ex in examples]
    assert ids[:2] == ["je-001", "je-002"] and len(set(ids)) == 60
    text = suite.render(examples[0]).messages[-1][1]
    assert examples[0].vars["text"] in text and '"price"' in text
    refs = [list(ex.references) for ex in examples]
    golds = [r[0] for r in refs]
    # Every gold object follows the schema and matches itself field for field.
    for name in ("json_valid", "json_schema:json-extract", "json_fields"):
        assert get_metric(name).score_items(golds, refs) == [1.0] * 60, name
    fp = suite.fingerprint()
    assert fp["metrics"] == suite.metric_names and len(fp["prompt_hash"]) == 64


def test_json_extract_data_is_what_make_data_writes():
    proc = subprocess.run([sys.executable, str(SUITE_DIR / "make_data.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_json_extract_gold_values_are_stated_in_the_text():
    for ex in load_suite("json-extract").examples():
        gold = json.loads(ex.references[0])
        text = ex.vars["text"]
        assert gold["name"] in text and gold["city"] in text and gold["category"] in text.lower()
        assert gold["price"] == 0 or f"{gold['price']:g}" in text.replace(".90", ".9")


def test_an_edited_schema_fails_loading_until_the_hook_pins_it(tmp_path):
    folder = tmp_path / "suites" / "json-extract"
    shutil.copytree(SUITE_DIR, folder)
    schema = json.loads(SCHEMA.read_text())
    schema["properties"]["price"]["minimum"] = 1
    (folder / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(ConfigError, match="the hook pins"):
        load_suite(folder, trusted_dirs=[tmp_path])


def test_the_hook_file_carries_the_schema_into_the_fingerprint():
    hook = (SUITE_DIR / "hooks.py").read_text()
    assert sha256_bytes(SCHEMA.read_bytes()) in hook


# --- a real run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_run_on_json_extract_logs_the_metrics_per_item(tmp_path):
    from harness.evaluate import suite_eval

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "smollm2-135m", "--suite", "json-extract",
                           "--limit", "4", "--batch-size", "4", "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    names = ["json_valid", "json_schema:json-extract", "json_fields"]
    load_suite("json-extract")  # registers json_schema:json-extract in this process too
    meta = json.loads((out / "run.json").read_text())
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in rows] == ["je-001", "je-002", "je-003", "je-004"]
    agg = meta["aggregates"]["suites"]["json-extract"]["base"]
    assert agg["n"] == 4
    for name in names:
        assert meta["metrics"][name] == {"higher_is_better": True, "corpus_level": False}
        assert agg[name] == pytest.approx(sum(r["scores"][name] for r in rows) / 4)
    for r in rows:
        assert list(r["scores"]) == names
        # The logged scores are what the metrics give for the logged prediction.
        for name in names:
            assert r["scores"][name] == get_metric(name).score_items([r["prediction"]], [r["references"]])[0]
        assert r["scores"]["json_schema:json-extract"] <= r["scores"]["json_valid"]
        if "attach_details" in inspect.getsource(suite_eval):
            failed = {n for n in names if r["scores"][n] < 1}
            assert set(r.get("details", {})) == failed
