"""Rubric judges against a real llm-katan server on 127.0.0.1 (echo backend, failure injection),
plus parser, agreement, retry-policy and config tests; the slow ones put SmolLM2 behind the API.

The echo backend answers with the last user message, so a test's judge template can *be* the
verdict: a jinja rule such as {"winner": "{% if 'GOOD' in response_a %}A{% else %}B{% endif %}"}
drives the whole client (HTTP, retries, parsing, position swap, caching) deterministically.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from harness.errors import ConfigError
from harness.evaluate.judges import JudgeError, judge_enabled, judge_suite, validate_judge
from harness.evaluate.judges.agreement import agreement
from harness.evaluate.judges.base import Budget, CallStats, ChatRequest, redact
from harness.evaluate.judges.parse import parse_pairwise, parse_pointwise
from harness.evaluate.judges.spec import JudgeSpec
from harness.evaluate.suites import load_suite

KEY_ENV = "JUDGE_TEST_KEY"
KEY = "sk-test-7f3a9c1e5b2d4468"

# --------------------------------------------------------------------------- llm-katan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Katan:
    """A running llm-katan subprocess and its log (for counting injected failures)."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def injected(self) -> dict[str, int]:
        """Failures the server injected, by status, read from its own log."""
        counts: dict[str, int] = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if "| simulated:" in line:
                status = line.split("| simulated:")[0].rstrip(" |").rsplit("|", 1)[-1].strip()
                counts[status] = counts.get(status, 0) + 1
        return counts


@contextlib.contextmanager
def katan(tmp: Path, *args: str, key: str | None = KEY, ready_s: float = 30.0) -> Iterator[Katan]:
    """Start llm-katan on a free 127.0.0.1 port, wait until /health answers, stop it after."""
    import httpx

    port = _free_port()
    log = tmp / f"katan-{port}.log"
    cmd = [sys.executable, "-c", "from llm_katan.cli import main; main()",
           "--host", "127.0.0.1", "--port", str(port), "--stats-file", str(tmp / f"katan-{port}.json"),
           "--disable-dashboard", "--providers", "openai", *args]
    if key is not None:
        cmd += ["--validate-keys", "--api-keys", f"openai={key}"]
    if "--backend" not in args:
        cmd += ["-m", "judge", "--backend", "echo"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llm-katan exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llm-katan not ready after {ready_s}s: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Katan(proc, port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def echo(tmp_path_factory) -> Iterator[Katan]:
    """One healthy echo server (key-checking) shared by the protocol tests of this module."""
    with katan(tmp_path_factory.mktemp("katan")) as server:
        yield server


@pytest.fixture(autouse=True)
def judge_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    for name in ("HARNESS_JUDGE_BASE_URL", "HARNESS_JUDGE_MODEL", "HARNESS_JUDGE_API_KEY_ENV", "HARNESS_JUDGE"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- suites

ITEMS = [
    {"id": f"q{i:02d}", "question": f"Question {i}?", "answer": f"Answer {i}.",
     "sample": f"Sample {i}" + (" GOOD" if i % 2 == 0 else ""), "human": {"quality": 1 + (i % 5)}}
    for i in range(30)
]
CRITERIA = [
    {"name": "quality", "description": "Is it good?",
     "scale": {"min": 1, "max": 5, "anchors": {1: "bad", 3: "fine", 5: "excellent"}}},
    {"name": "brevity", "description": "Is it short?", "scale": {"min": 0, "max": 10}},
]
# The echo server returns this text; 'GOOD' in a response earns 5/5 and 8/10, else 2/5 and 4/10.
RULE_POINTWISE = (
    '{"quality": {"score": {{ 5 if "GOOD" in response else 2 }}, "rationale": {{ ("q:" ~ response) | tojson }}}, '
    '"brevity": {"score": {{ 8 if "GOOD" in response else 4 }}, "rationale": "b"}}\n{{ format }}'
)
RULE_PAIRWISE = (
    'A: {{ response_a | tojson }}, B: {{ response_b | tojson }}\n'
    '{"winner": "{% if "GOOD" in response_a and "GOOD" not in response_b %}A'
    '{% elif "GOOD" in response_b and "GOOD" not in response_a %}B{% else %}tie{% endif %}", "rationale": "rule"}'
    '\n{{ format }}'
)


def judge_block(base_url: str, **over: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "backend": "openai", "base_url": base_url, "model": "judge", "api_key_env": KEY_ENV,
        "timeout": 10, "retries": 3, "backoff": {"base": 0.05, "max": 0.5}, "concurrency": 4,
        "criteria": CRITERIA, "prompt": {"pointwise": RULE_POINTWISE, "pairwise": RULE_PAIRWISE},
    }
    block.update(over)
    return block


def make_suite(folder: Path, judge: dict[str, Any] | None, rows: list[dict] = ITEMS,
               vars: dict[str, str] | None = None, **extra: Any):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = {"name": folder.name, "version": "1", "data": {"file": "data.jsonl"},
           "fields": {"id": "id", "references": "answer", "vars": vars or {"question": "question"}},
           "prompt": "{{ question }}", "metrics": ["exact_match"], "judge": judge, **extra}
    (folder / "suite.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return load_suite(folder)


def predictions(n: int, good_adapter: bool = True) -> dict[str, list[str]]:
    base = [f"base answer {i}" for i in range(n)]
    lora = [f"lora answer {i}" + (" GOOD" if good_adapter else "") for i in range(n)]
    return {"base": base, "lora": lora}


def every_string(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from every_string(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from every_string(v)


# --------------------------------------------------------------------------- protocol (echo)


def test_pointwise_and_pairwise_scores_through_a_real_server(tmp_path, echo):
    suite = make_suite(tmp_path / "rule", judge_block(echo.base_url))
    examples = suite.examples(6)
    logs: list[str] = []
    r = judge_suite(suite, examples, predictions(6), log=logs.append)

    # Pointwise, normalised by each criterion's own scale.
    assert r.scores["base"]["judge:quality"] == [0.25] * 6  # 2 on 1..5
    assert r.scores["lora"]["judge:quality"] == [1.0] * 6  # 5 on 1..5
    assert r.scores["base"]["judge:brevity"] == [0.4] * 6  # 4 on 0..10
    assert r.scores["lora"]["judge:brevity"] == [0.8] * 6
    assert r.rationales["lora"]["judge:quality"][0] == "q:lora answer 0 GOOD"
    assert r.details["lora"][0]["judge:quality"]["score"] == 5
    # Pairwise: asked both ways, consistent, adapter preferred; the base carries no pairwise metric.
    assert r.scores["lora"]["judge:pairwise"] == [1.0] * 6
    assert "judge:pairwise" not in r.scores["base"]
    assert r.details["lora"][0]["judge:pairwise"]["verdicts"] == {"base_first": "B", "adapter_first": "A"}
    st = r.stats
    assert st["swap_consistency"] == 1.0 and st["pairwise"]["adapter_preferred"] == 6
    assert st["calls"] == 6 * 2 + 6 * 2 and st["requests"] == st["calls"]
    assert st["unscored"] == 0 and st["scored"] == 6 * 2 * 2 + 6 and st["reasks"] == 0
    assert r.metrics["judge:quality"]["higher_is_better"] is True
    assert r.aggregates("lora")["judge:quality"] == 1.0 and r.unscored("lora")["judge:quality"] == 0
    assert any("scored" in line for line in logs)


def test_base_preferred_and_position_bias_count_as_ties(tmp_path, echo):
    suite = make_suite(tmp_path / "bias", judge_block(echo.base_url, mode="pairwise"))
    examples = suite.examples(4)
    preds = {"base": [f"b{i} GOOD" for i in range(4)], "lora": [f"l{i}" for i in range(4)]}
    preds["lora"][3] = preds["base"][3]  # identical answers are a tie without asking
    r = judge_suite(suite, examples, preds)
    assert r.scores["lora"]["judge:pairwise"] == [0.0, 0.0, 0.0, 0.5]
    assert r.stats["pairwise"]["identical"] == 1 and r.stats["calls"] == 6
    assert "judge:quality" not in r.scores["lora"]

    # A judge that always says "A" flips with the order: inconsistent, so a tie, and counted.
    biased = make_suite(tmp_path / "always-a", judge_block(
        echo.base_url, mode="pairwise", prompt={"pairwise": '{"winner": "A", "rationale": "first is best"}'}))
    r = judge_suite(biased, biased.examples(5), predictions(5))
    assert r.scores["lora"]["judge:pairwise"] == [0.5] * 5
    assert r.stats["swap_consistency"] == 0.0 and r.stats["pairwise"]["inconsistent"] == 5
    assert r.details["lora"][0]["judge:pairwise"]["consistent"] is False


def test_unparseable_reply_is_reasked_once_then_unscored_with_raw_text(tmp_path, echo):
    # The default templates: the echo repeats the instructions, whose placeholders are not JSON.
    block = judge_block(echo.base_url)
    del block["prompt"]
    suite = make_suite(tmp_path / "plain", block)
    r = judge_suite(suite, suite.examples(3), predictions(3))
    st = r.stats
    assert st["scored"] == 0 and st["unscored"] == 3 * 2 * 2 + 3
    assert st["reasks"] == st["calls"] and st["requests"] == 2 * st["calls"]
    for model in ("base", "lora"):
        assert r.scores[model]["judge:quality"] == [None] * 3  # never a silent 0
    detail = r.details["lora"][0]["judge:quality"]
    assert detail["value"] is None and "after one re-ask" in detail["error"]
    assert "Response to evaluate" in detail["raw"] and "re-ask" in detail["raw"]
    pair = r.details["lora"][0]["judge:pairwise"]
    assert pair["value"] is None and "Response A" in pair["raw"]
    assert st["swap_consistency"] is None and st["pairwise"]["unscored"] == 3


def test_reask_answer_is_used_and_merged_with_the_first(tmp_path, echo):
    # First reply: quality valid, brevity out of range; the re-ask supplies brevity.
    first = '{"quality": {"score": 4, "rationale": "first"}, "brevity": {"score": 99, "rationale": "x"}}'
    reask = '{"brevity": {"score": 10, "rationale": "second: {{ error }}"}}'
    suite = make_suite(tmp_path / "reask", judge_block(
        echo.base_url, mode="pointwise", prompt={"pointwise": first, "reask": reask}))
    r = judge_suite(suite, suite.examples(2), {"base": ["a", "b"]})
    assert r.scores["base"]["judge:quality"] == [0.75, 0.75]
    assert r.scores["base"]["judge:brevity"] == [1.0, 1.0]
    assert "score 99 is outside 0..10" in r.rationales["base"]["judge:brevity"][0]
    assert r.stats["reasks"] == 1 and r.stats["requests"] == 2  # identical prompts asked once


def test_split_criteria_asks_one_question_per_criterion(tmp_path, echo):
    one = ('{{ response }}: {"score": {{ 3 if criteria[0].name == "quality" else 7 }}, '
           '"rationale": "{{ criteria[0].name }}"}')
    suite = make_suite(tmp_path / "split", judge_block(echo.base_url, mode="pointwise", split_criteria=True,
                                                     prompt={"pointwise": one}))
    r = judge_suite(suite, suite.examples(3), {"base": ["x", "y", "z"], "lora": ["p", "q", "r"]})
    assert r.stats["calls"] == 2 * 3 * 2
    assert r.scores["lora"]["judge:quality"] == [0.5] * 3 and r.scores["lora"]["judge:brevity"] == [0.7] * 3
    assert r.rationales["base"]["judge:brevity"] == ["brevity"] * 3


def test_second_run_is_served_from_cache_with_zero_requests(tmp_path, echo):
    block = judge_block(echo.base_url)
    block["prompt"]["reask"] = "not json either"  # the re-ask exchanges must be cached too
    block["prompt"]["pointwise"] = '{"quality": {"score": 3}} {{ "GOOD" in response }}'
    suite = make_suite(tmp_path / "cached", block)
    examples = suite.examples(5)
    first = judge_suite(suite, examples, predictions(5))
    assert first.stats["requests"] > 0 and first.stats["reasks"] > 0
    second = judge_suite(suite, examples, predictions(5))
    assert second.stats["requests"] == 0
    assert second.stats["cached"] == first.stats["calls"] + first.stats["reasks"]
    assert second.scores == first.scores and second.rationales == first.rationales
    assert (Path(os.environ["HARNESS_HOME"]) / "cache" / "judge.sqlite").is_file()
    third = judge_suite(suite, examples, predictions(5), use_cache=False)
    assert third.stats["requests"] == first.stats["requests"]


def test_agreement_with_human_labels_per_criterion(tmp_path, echo):
    # The judge copies the label into its score for quality (perfect agreement) and gives brevity
    # in reverse order of the label (perfectly wrong).
    rule = ('{"quality": {"score": {{ vars.label }}, "rationale": "r"}, '
            '"brevity": {"score": {{ 10 - vars.label }}, "rationale": "r"}}')
    block = judge_block(echo.base_url, mode="pointwise", prompt={"pointwise": rule},
                        human_labels={"file": "data.jsonl", "id": "id", "response": "sample",
                                      "scores": {"quality": "human.quality", "brevity": "human.quality"}})
    # The label is exposed to the rule template as an item variable.
    suite = make_suite(tmp_path / "agree", block, vars={"question": "question", "label": "human.quality"})
    r = judge_suite(suite, suite.examples(10), {"base": ["x"] * 10})
    agree = r.stats["agreement"]
    assert agree["quality"] == {"method": "spearman", "value": 1.0, "n": 10}
    assert agree["brevity"]["value"] == -1.0 and agree["brevity"]["n"] == 10


def test_budget_caps_requests_and_leaves_the_rest_unscored(tmp_path, echo):
    suite = make_suite(tmp_path / "budget", judge_block(echo.base_url, mode="pointwise", concurrency=1,
                                                       budget={"max_requests": 3}))
    r = judge_suite(suite, suite.examples(8), {"base": [f"a{i}" for i in range(8)]})
    assert r.stats["requests"] == 3 and "request budget of 3" in r.stats["budget_exhausted"]
    values = r.scores["base"]["judge:quality"]
    assert sum(v is not None for v in values) == 3 and values.count(None) == 5
    assert "budget exhausted" in r.details["base"][7]["judge:quality"]["error"]


# --------------------------------------------------------------------------- failure injection


@pytest.mark.timeout(180)
def test_thirty_percent_injected_failures_complete_scored_or_explicitly_unscored(tmp_path):
    with katan(tmp_path, "--error-rate", "0.3", "--latency-ms", "20") as server:
        block = judge_block(server.base_url, concurrency=8, retries=3, timeout=5,
                            backoff={"base": 0.05, "max": 0.4})
        suite = make_suite(tmp_path / "flaky", block)
        examples = suite.examples()
        started = time.monotonic()
        r = judge_suite(suite, examples, predictions(len(examples)))
        wall = time.monotonic() - started
        injected = server.injected()
    st = r.stats
    n = len(examples)
    cells = 0
    for model, metrics in r.scores.items():
        for metric, values in metrics.items():
            assert len(values) == n
            for i, v in enumerate(values):
                cells += 1
                if v is None:  # unscored must say why
                    assert r.details[model][i][metric]["error"]
                else:
                    assert 0.0 <= v <= 1.0
    assert cells == st["scored"] + st["unscored"] == 2 * n * 2 + n
    assert sum(injected.values()) > 0.15 * st["requests"]  # the server really failed ~30%
    # Every injected 500 was retried, except the last attempt of a call that ran out of retries.
    assert st["retries"] == injected.get("500", 0) - st["failures"]
    assert st["errors"].get("HTTP 500", 0) == injected.get("500", 0)
    assert st["scored"] >= 0.9 * cells  # retries rescue almost everything at 0.3^4 per call
    assert wall < 60
    print(f"\nFAILURE-INJECTION: calls={st['calls']} requests={st['requests']} injected={injected} "
          f"retried={st['retries']} failed_calls={st['failures']} scored={st['scored']} "
          f"unscored={st['unscored']} wall={wall:.2f}s")


@pytest.mark.timeout(120)
def test_timeouts_and_rate_limits_end_unscored_in_bounded_time(tmp_path):
    with katan(tmp_path, "--latency-ms", "1500") as slow:
        suite = make_suite(tmp_path / "slow", judge_block(slow.base_url, mode="pointwise", timeout=0.3,
                                                         retries=1, concurrency=4))
        started = time.monotonic()
        r = judge_suite(suite, suite.examples(6), {"base": [f"a{i}" for i in range(6)]})
        wall = time.monotonic() - started
    assert r.scores["base"]["judge:quality"] == [None] * 6
    assert r.stats["errors"] == {"timeout": 12} and r.stats["failures"] == 6
    assert "timeout after 0.3s" in r.details["base"][0]["judge:quality"]["error"]
    assert wall < 10  # 6 calls x 2 attempts x 0.3 s over 4 connections, plus backoff

    with katan(tmp_path, "--rate-limit-after", "4") as limited:
        suite = make_suite(tmp_path / "limited", judge_block(limited.base_url, mode="pointwise", retries=2,
                                                            concurrency=1))
        r = judge_suite(suite, suite.examples(6), {"base": [f"a{i}" for i in range(6)]})
        injected = limited.injected()
    values = r.scores["base"]["judge:quality"]
    assert values[:4] == [0.25] * 4 and values[4:] == [None, None]
    assert r.stats["errors"] == {"HTTP 429": 6} == {f"HTTP {k}": v for k, v in injected.items()}
    assert r.stats["retries"] == 4 and "HTTP 429" in r.details["base"][5]["judge:quality"]["error"]


def test_overload_503s_are_retried_until_answered(tmp_path):
    with katan(tmp_path, "--max-inflight", "1", "--latency-ms", "100") as server:
        suite = make_suite(tmp_path / "busy", judge_block(server.base_url, mode="pointwise", concurrency=4,
                                                         retries=8, backoff={"base": 0.05, "max": 0.3}))
        r = judge_suite(suite, suite.examples(8), {"base": [f"a{i}" for i in range(8)]})
        injected = server.injected()
    assert injected.get("503", 0) > 0 and r.stats["retries"] == injected["503"] - r.stats["failures"]
    assert r.stats["unscored"] == 0 or all(
        r.details["base"][i]["judge:quality"].get("error") for i in range(8)
        if r.scores["base"]["judge:quality"][i] is None)


def test_judge_records_writes_scores_details_and_aggregates_into_the_run_log(tmp_path, echo):
    from harness.evaluate.judges import judge_records

    suite = make_suite(tmp_path / "glue", judge_block(echo.base_url))
    examples = suite.examples(3)
    preds = predictions(3)
    records = [{"model": m, "kind": "suite", "task": suite.name, "item_id": ex.id, "prediction": preds[m][i],
                "scores": {"exact_match": 0.0}} for m in ("base", "lora") for i, ex in enumerate(examples)]
    records.append({"model": "base", "kind": "bench", "task": "mmlu", "item_id": "x", "scores": {}})
    aggs = {"base": {"exact_match": 0.0, "n": 3}, "lora": {"exact_match": 0.0, "n": 3}}
    result = judge_records(suite, examples, records, aggs)
    lora0 = records[3]
    assert lora0["scores"] == {"exact_match": 0.0, "judge:quality": 1.0, "judge:brevity": 0.8, "judge:pairwise": 1.0}
    assert lora0["judge"]["judge:quality"]["rationale"] == "q:lora answer 0 GOOD"
    assert records[0]["scores"]["judge:pairwise"] == 0.5 and records[0]["judge"]["judge:pairwise"]["reference"]
    assert records[-1]["scores"] == {}  # other tasks are left alone
    assert aggs["lora"]["judge:pairwise"] == 1.0 and aggs["base"]["judge:pairwise"] == 0.5
    assert aggs["base"]["judge:quality"] == 0.25 and aggs["base"]["n"] == 3
    assert result.metrics["judge:pairwise"]["reference_value"] == 0.5


# --------------------------------------------------------------------------- keys


def test_api_key_never_appears_in_errors_logs_or_records(tmp_path, echo, monkeypatch):
    logs: list[str] = []
    # 1. The server expects another key and echoes the one it got in its 401 body.
    with katan(tmp_path, key="sk-the-right-one") as strict:
        suite = make_suite(tmp_path / "wrongkey", judge_block(strict.base_url))
        with pytest.raises(ConfigError) as err:
            validate_judge(suite)
        assert "rejected the key in $JUDGE_TEST_KEY" in str(err.value)
        assert KEY not in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(JudgeError) as err2:
            judge_suite(suite, suite.examples(2), predictions(2), log=logs.append)
        assert KEY not in str(err2.value) and "***" in str(err2.value)

    # 2. A response that leaks the key into the judge's reply is scrubbed from every record.
    suite = make_suite(tmp_path / "leak", judge_block(echo.base_url))
    leaked = {"base": [f"my key is {KEY}", "fine"], "lora": [f"{KEY} GOOD", "ok GOOD"]}
    r = judge_suite(suite, suite.examples(2), leaked, log=logs.append)
    assert r.rationales["base"]["judge:quality"][0] == "q:my key is ***"
    for text in every_string([r.scores, r.rationales, r.details, r.stats, r.provenance, logs]):
        assert KEY not in text
    for db in (Path(os.environ["HARNESS_HOME"]) / "cache").glob("judge.sqlite*"):  # WAL files too
        assert KEY.encode() not in db.read_bytes()
    assert redact(f"Bearer {KEY}") == "Bearer ***"


# --------------------------------------------------------------------------- bad config


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "; fix: " in text
    return text


def test_missing_key_env_var_is_a_one_line_error(tmp_path, monkeypatch, echo):
    monkeypatch.delenv(KEY_ENV)
    suite = make_suite(tmp_path / "nokey", judge_block(echo.base_url))
    with pytest.raises(ConfigError) as err:
        validate_judge(suite)
    assert f"environment variable {KEY_ENV} is not set" in _one_line(err.value)
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY_ENV", "OTHER_KEY_VAR")
    with pytest.raises(ConfigError, match="OTHER_KEY_VAR is not set"):
        validate_judge(suite)
    pasted = "sk9f8e7d6c5b4a3f2e1d0c9b8a7"  # a key pasted where its variable's name belongs
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY_ENV", pasted)
    with pytest.raises(ConfigError) as err:
        validate_judge(suite)
    assert "is it the key itself?" in _one_line(err.value) and pasted not in str(err.value)


def test_unreachable_url_is_a_quick_one_line_error(tmp_path):
    suite = make_suite(tmp_path / "down", judge_block(f"http://127.0.0.1:{_free_port()}/v1"))
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        validate_judge(suite, ping_timeout=2)
    assert "is unreachable" in _one_line(err.value)
    assert time.monotonic() - started < 5
    assert validate_judge(suite, ping=False) is not None  # the rest of the config is fine


@pytest.mark.parametrize("change, message", [
    ({"prompt": {"pointwise": "{{ rubric.qualty.description }} {{ response }}"}},
     "refers to criterion 'qualty', which judge.criteria does not define; fix: did you mean 'quality'?"),
    ({"prompt": {"pairwise": "{{ rubric['speed'].name }}"}}, "refers to criterion 'speed'"),
    ({"prompt": {"pointwise": "{{ quality }}"}}, "uses unknown variable 'quality'; fix: criteria are reached"),
    ({"prompt": {"pointwise": "{% for x in criteria %}"}}, "judge.prompt.pointwise: template syntax error"),
    ({"human_labels": {"file": "data.jsonl", "scores": {"speed": "human.quality"}}},
     "human_labels.scores names criterion 'speed', which is not in criteria"),
    ({"human_labels": {"file": "nope.jsonl", "scores": {"quality": "human.quality"}}}, "nope.jsonl does not exist"),
    ({"human_labels": {"file": "data.jsonl", "response": "sample", "scores": {"quality": "human.nothing"}}},
     "no row of data.jsonl has a number at 'human.nothing'"),
    ({"criteria": [{"name": "quality", "description": "q", "scale": {"min": 5, "max": 5}}]},
     "judge.criteria[0].scale: scale min (5) must be below max (5)"),
    ({"criteria": [{"name": "quality", "description": "q", "scale": {"min": 1, "max": 5, "anchors": {7: "x"}}}]},
     "anchor level 7 is outside the scale 1..5"),
    ({"criteria": [{"name": "q", "description": "a"}, {"name": "q", "description": "b"}]}, "criterion 'q' is listed twice"),
    ({"mode": "ranking"}, "judge.mode[0]: 'ranking' is not allowed"),
    ({"retrys": 2}, "judge.retrys: unknown key 'retrys'; fix: did you mean 'retries'?"),
    ({"backend": "claude"}, "unknown judge backend 'claude'"),
    ({"base_url": "127.0.0.1:8765/v1"}, "must start with http:// or https://"),
    ({"api_key_env": "sk-abc-123"}, "api_key_env is not an environment variable name"),
])
def test_bad_judge_config_is_a_one_line_error(tmp_path, change, message):
    suite = make_suite(tmp_path / "bad", {**judge_block("http://127.0.0.1:9/v1"), **change})
    with pytest.raises(ConfigError) as err:
        validate_judge(suite, ping=False)
    text = _one_line(err.value)
    assert message in text
    assert "suite.yaml" in text
    assert "sk-abc-123" not in text


def test_env_overrides_replace_the_suite_endpoint(tmp_path, echo, monkeypatch):
    suite = make_suite(tmp_path / "override", judge_block("http://127.0.0.1:9/v1", api_key_env="NOT_SET_ANYWHERE"))
    monkeypatch.setenv("HARNESS_JUDGE_BASE_URL", echo.base_url)
    monkeypatch.setenv("HARNESS_JUDGE_MODEL", "other-judge")
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY_ENV", KEY_ENV)
    check = validate_judge(suite)
    assert check.ping.status == 200 and check.spec.model == "other-judge" and check.spec.base_url == echo.base_url
    r = judge_suite(suite, suite.examples(1), {"base": ["x GOOD"]})
    assert r.scores["base"]["judge:quality"] == [1.0] and r.provenance["model"] == "other-judge"
    assert judge_enabled(suite)
    monkeypatch.setenv("HARNESS_JUDGE", "off")
    assert not judge_enabled(suite)


def test_cli_judge_check(tmp_path, echo, monkeypatch, capsys):
    from harness.cli import main

    suite = make_suite(tmp_path / "cli", judge_block(echo.base_url))
    with pytest.raises(SystemExit) as code:
        main(["judge", "check", str(suite.path), "--probe"])
    out = capsys.readouterr().out
    assert code.value.code == 0, out
    assert "reachable, GET /models -> HTTP 200" in out and "judge:pairwise" in out
    assert "probe:    judge:quality: 2 -> 0.25" in out and out.strip().endswith("ok")
    assert KEY not in out

    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(SystemExit) as code:
        main(["judge", "check", str(suite.path)])
    err = capsys.readouterr().err
    assert code.value.code == 2 and err.count("\n") == 1 and f"{KEY_ENV} is not set" in err


def test_bundled_judge_suites_validate(monkeypatch):
    monkeypatch.setenv("HARNESS_JUDGE_API_KEY", "dummy-key")
    acl = validate_judge(load_suite("aclsum"), ping=False)
    assert acl.spec.criterion_names == ["faithfulness", "coverage", "concision"]
    assert acl.spec.mode == ("pointwise", "pairwise") and acl.spec.base_url == "http://127.0.0.1:8765/v1"
    assert all(c.scale.min == 1 and c.scale.max == 5 and len(c.scale.anchors) == 5 for c in acl.spec.criteria)
    helpful = load_suite("helpfulness")
    check = validate_judge(helpful, ping=False)
    assert len(helpful.examples()) == 30
    assert check.metrics == ["judge:helpfulness", "judge:correctness", "judge:clarity", "judge:pairwise"]
    assert check.spec.human_labels is not None


# --------------------------------------------------------------------------- units: parse, agreement, retry


def _spec(**over: Any) -> JudgeSpec:
    return JudgeSpec.model_validate({"base_url": "http://127.0.0.1:9/v1", "model": "m", "criteria": CRITERIA, **over})


def test_parser_reads_common_reply_shapes_and_never_invents_scores():
    crit = _spec().criteria
    fenced = 'Here you go:\n```json\n{"quality": {"score": "4/5", "rationale": "ok",}, "brevity": {"score": 7}}\n```'
    assert {k: v.score for k, v in parse_pointwise(fenced, crit).scores.items()} == {"quality": 4, "brevity": 7}
    python_dict = "{'quality': {'score': 5, 'rationale': None}, 'brevity': {'score': 0, 'rationale': \"it's\"}}"
    assert parse_pointwise(python_dict, crit).error is None
    listed = '{"scores": [{"criterion": "Quality", "score": 2}, {"criterion": "brevity", "rating": 3}]}'
    assert parse_pointwise(listed, crit).error is None
    envelope = json.dumps({"response": 'echo {"quality": {"score": 1}, "brevity": {"score": 2}}'})
    assert parse_pointwise(envelope, crit).error is None
    restated = ('Format {"quality": {"score": <1-5>}} then {"quality": {"score": 9}, "brevity": {"score": 1}} '
                'and finally {"quality": {"score": 3}, "brevity": {"score": 1}}')
    assert parse_pointwise(restated, crit).scores["quality"].score == 3
    partial = parse_pointwise('{"quality": {"score": 6}, "brevity": {"score": 2}}', crit)
    assert "quality" not in partial.scores and "outside 1..5" in partial.error
    assert parse_pointwise('{"quality": true, "brevity": 2}', crit).scores.keys() == {"brevity"}
    assert parse_pointwise("", crit).error == "empty reply"
    assert parse_pointwise("I think it is a 4.", crit).error == "no valid JSON object in the reply"
    assert parse_pairwise('{"winner": "Response B", "rationale": "r"}').winner == "B"
    assert parse_pairwise('{"verdict": "[[A]]"}').winner == "A"
    assert parse_pairwise('{"winner": "tie"}').winner == "tie"
    assert parse_pairwise('{"winner": "A" or "B" or "tie"}').error
    assert "not A, B or tie" in parse_pairwise('{"winner": "maybe"}').error


def test_agreement_statistics():
    assert agreement([1, 2, 3, 4], [2, 3, 4, 5])["value"] == 1.0
    assert agreement([1, 2, 3, None], [3, 2, 1, 5]) == {"method": "spearman", "value": -1.0, "n": 3}
    assert agreement([1, 2, 3, 3], [1, 2, 3, 3], "kappa")["value"] == 1.0
    near = agreement([1, 2, 3, 4, 5], [1, 2, 3, 5, 4], "kappa_quadratic")["value"]
    exact = agreement([1, 2, 3, 4, 5], [1, 2, 3, 5, 4], "kappa")["value"]
    assert near == 0.9 and exact == 0.5  # a swapped 4/5 costs kappa far more unweighted
    constant = agreement([3, 3, 3], [1, 2, 3])
    assert constant["value"] is None and "same score" in constant["note"]
    assert agreement([1], [1])["value"] is None


def test_retry_after_is_honoured_and_fatal_statuses_stop_the_pass(monkeypatch):
    import httpx

    from harness.evaluate.judges.openai_client import OpenAIBackend, backoff_delay, parse_retry_after

    replies = iter([
        httpx.Response(429, headers={"Retry-After": "1.5"}, json={"error": {"message": "slow down"}}),
        httpx.Response(503, text="busy"),
        httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}],
                                  "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
    ])
    waits: list[float] = []
    spec = _spec(api_key_env=KEY_ENV, retries=3, backoff={"base": 0.5, "max": 8})
    backend = OpenAIBackend(spec, transport=httpx.MockTransport(lambda req: next(replies)), sleep=waits.append)
    done: list = []
    backend.complete_many([ChatRequest("k", (("user", "x"),))], lambda req, c: done.append(c))
    assert done[0].text == "hi" and done[0].attempts == 3
    assert waits[0] == 1.5 and 0.5 <= waits[1] <= 1.0  # Retry-After wins; then jittered backoff
    assert backend.stats.errors == {"HTTP 429": 1, "HTTP 503": 1} and backend.stats.retries == 2

    seen_auth: list[str] = []

    def refuse(req):
        seen_auth.append(req.headers["authorization"])
        return httpx.Response(401, json={"error": {"message": f"bad key {KEY}"}})

    backend = OpenAIBackend(spec, transport=httpx.MockTransport(refuse), sleep=waits.append)
    with pytest.raises(JudgeError) as err:
        backend.complete_many([ChatRequest(str(i), (("user", str(i)),)) for i in range(20)], lambda *a: None)
    assert seen_auth[0] == f"Bearer {KEY}" and len(seen_auth) < 20 and KEY not in str(err.value)

    bad_request = OpenAIBackend(spec, transport=httpx.MockTransport(lambda r: httpx.Response(400, text="too long")))
    out: list = []
    bad_request.complete_many([ChatRequest("k", (("user", "x"),))], lambda req, c: out.append(c))
    assert out[0].error == "HTTP 400: too long" and out[0].attempts == 1  # not retried

    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), now=1445412470.0) == 10.0
    assert parse_retry_after(httpx.Headers({})) is None
    assert all(4.0 <= backoff_delay(5, 0.5, 8.0) <= 8.0 for _ in range(50))


def test_budget_counts_every_attempt():
    stats = CallStats()
    budget = Budget(max_requests=2, stats=stats)
    budget.acquire()
    budget.acquire()
    with pytest.raises(Exception, match="request budget of 2 spent"):
        budget.acquire()
    assert stats.requests == 2


# --------------------------------------------------------------------------- local backend


def test_local_judge_runs_in_process_and_caches(tmp_path, tiny_dir):
    """A random tiny model cannot write JSON: every item must come back explicitly unscored."""
    block = {"backend": "local", "model": str(tiny_dir), "max_tokens": 8, "mode": "pointwise",
             "criteria": CRITERIA[:1], "batch_size": 4}
    suite = make_suite(tmp_path / "local", block)
    examples = suite.examples(3)
    check = validate_judge(suite)
    assert "local folder judge" in check.ping.note
    r = judge_suite(suite, examples, {"base": ["a", "b", "c"]})
    assert r.stats["requests"] == 6 and r.stats["reasks"] == 3  # ask + one re-ask each
    assert r.scores["base"]["judge:quality"] == [None] * 3
    assert all(r.details["base"][i]["judge:quality"]["raw"] is not None for i in range(3))
    again = judge_suite(suite, examples, {"base": ["a", "b", "c"]})
    assert again.stats["requests"] == 0 and again.details == r.details


# --------------------------------------------------------------------------- slow: a real model behind the API


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_llm_katan_serving_smollm2_judges_the_helpfulness_suite(tmp_path, monkeypatch):
    """The bundled helpfulness suite's rubric, judged by SmolLM2 served over the OpenAI API."""
    import shutil

    from harness.evaluate.suites import BUNDLED_DIR
    from tests.conftest import smollm2_dir

    # A copy with shorter judge replies, so CPU decoding stays within a few minutes, and one
    # request at a time: llm-katan decodes serially, so queued requests would hit the timeout.
    folder = tmp_path / "helpfulness"
    shutil.copytree(BUNDLED_DIR / "helpfulness", folder)
    doc = yaml.safe_load((folder / "suite.yaml").read_text())
    doc["judge"].update(max_tokens=96, concurrency=1, timeout=300)
    (folder / "suite.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with katan(tmp_path, "-m", str(smollm2_dir()), "-n", "smollm2", "--backend", "transformers", "--device", "cpu",
               "--no-quantize", "-t", "0", key=None, ready_s=300) as server:
        monkeypatch.setenv("HARNESS_JUDGE_BASE_URL", server.base_url)
        monkeypatch.setenv("HARNESS_JUDGE_MODEL", "smollm2")
        monkeypatch.setenv("HARNESS_JUDGE_API_KEY_ENV", KEY_ENV)  # llm-katan wants some Authorization header
        suite = load_suite(folder)
        assert validate_judge(suite).ping.status == 200
        examples = suite.examples(2)
        preds = {"base": [ex.references[0] for ex in examples], "lora": ["I don't know."] * 2}
        r = judge_suite(suite, examples, preds)
    st = r.stats
    assert st["requests"] >= st["calls"] == 2 * 2 + 2 + 2 * 2 and st["failures"] == 0
    for model, metrics in r.scores.items():
        for metric, values in metrics.items():
            for i, v in enumerate(values):
                assert v is not None or r.details[model][i][metric]["error"]
    assert set(st["agreement"]) == {"helpfulness", "correctness", "clarity"}
    print(f"\nSMOLLM2-VIA-LLM-KATAN: calls={st['calls']} requests={st['requests']} reasks={st['reasks']} "
          f"scored={st['scored']} unscored={st['unscored']} swap={st['swap_consistency']} wall={st['wall_s']}s")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_smollm2_judge(tmp_path):
    block = {"backend": "local", "model": "smollm2-135m", "max_tokens": 96, "mode": "both",
             "criteria": CRITERIA[:1]}
    suite = make_suite(tmp_path / "smol", block)
    examples = suite.examples(2)
    r = judge_suite(suite, examples, {"base": ["Answer 0.", "Answer 1."], "lora": ["no idea", "no idea"]})
    st = r.stats
    assert st["requests"] >= st["calls"] == 2 * 2 + 2 * 2
    for model, metrics in r.scores.items():
        for metric, values in metrics.items():
            for i, v in enumerate(values):
                assert v is not None or r.details[model][i][metric]["error"]
    print(f"\nLOCAL-SMOLLM2: requests={st['requests']} scored={st['scored']} unscored={st['unscored']} "
          f"wall={st['wall_s']}s")
