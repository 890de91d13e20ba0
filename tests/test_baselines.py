"""Baseline arms of `harness compare` (#18 part 1): `--baseline fewshot:K` / `system:FILE` and
`--baseline-model` (local and hosted) answer the same items as the base and the adapter; the
comparison, summary, report and gate put the adapter against each arm."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
from pathlib import Path
from typing import Iterator

import pytest

from harness.errors import ConfigError
from harness.evaluate.baselines import choose_shots, parse_all, prepare
from harness.evaluate.suites import load_suite
from harness.log.folder import RunFolder
from tests.conftest import build_tiny_model
from tests.runlog_factory import TaskSpec, write_run
from tests.test_bad_input import _invoke, tripwire  # noqa: F401 (pytest fixture)
from tests.test_run import cli, make_suite

POOL = range(100, 105)  # pool questions "What is i plus i?" (answer 2i), ids p100..p104


def pool_suite(folder: Path, n: int = 8, chat: bool = False) -> Path:
    """make_suite's arithmetic suite (ids q000.., prompt "Q: ...\\nA:") with a 5-item pool file."""
    make_suite(folder, n=n)
    with open(folder / "pool.jsonl", "w") as fh:
        for i in POOL:
            fh.write(json.dumps({"qid": f"p{i}", "question": f"What is {i} plus {i}?", "answer": [str(2 * i)]}) + "\n")
    extra = "fewshot: {file: pool.jsonl}\n" + ('chat: true\nsystem: "Be brief."\n' if chat else "")
    (folder / "suite.yaml").write_text((folder / "suite.yaml").read_text() + extra)
    return folder


def _questions(suite) -> dict[str, str]:
    return {ex.id: ex.vars["question"] for ex in suite.examples()}


# --------------------------------------------------------------------------- prompts and pools


def test_fewshot_prompt_holds_exactly_k_pool_examples_and_no_eval_item(tmp_path):
    suite = load_suite(pool_suite(tmp_path / "arith"))
    [arm] = parse_all(["fewshot:3"], [])
    assert arm.name == "base+fewshot:3"
    prepare([arm], [suite], seed=0)
    shots = arm.shots["arith"]
    assert len({s.id for s in shots}) == 3 and {s.id for s in shots} <= {f"p{i}" for i in POOL}
    render = arm.render(suite)
    questions = _questions(suite)
    for ex in suite.examples():
        text = render(ex).text
        blocks = text.split("\n\n")
        assert len(blocks) == 4  # three solved shots, then the item itself
        for block, shot in zip(blocks[:3], shots):
            i = int(shot.id[1:])
            assert block == f"Q: What is {i} plus {i}?\nA: {2 * i}"
        assert blocks[3] == suite.render(ex).text
        others = [q for iid, q in questions.items() if iid != ex.id]
        assert not any(f"Q: {q}" in text for q in others)  # no other eval item leaks into the prompt


def test_chat_fewshot_prompt_is_k_turn_pairs_after_the_system_message(tmp_path):
    suite = load_suite(pool_suite(tmp_path / "arith", chat=True))
    [arm] = parse_all(["fewshot:2"], [])
    prepare([arm], [suite], seed=5)
    ex = suite.examples()[3]
    msgs = arm.render(suite)(ex).messages
    assert [r for r, _ in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[0] == ("system", "Be brief.")
    for (_, user), (_, answer), shot in zip(msgs[1:5:2], msgs[2:5:2], arm.shots["arith"]):
        i = int(shot.id[1:])
        assert user == f"Q: What is {i} plus {i}?\nA:" and answer == str(2 * i)
    assert msgs[-1] == ("user", f"Q: {ex.vars['question']}\nA:")


def test_shots_are_seeded_and_the_same_for_every_item(tmp_path):
    suite = load_suite(pool_suite(tmp_path / "arith"))
    pool = suite.fewshot_pool()
    picks = {seed: [s.id for s in choose_shots(pool, 3, seed, "arith")] for seed in range(6)}
    assert picks[0] == [s.id for s in choose_shots(pool, 3, 0, "arith")]  # same seed, same shots
    assert len({tuple(p) for p in picks.values()}) > 1  # the seed does choose
    [arm] = parse_all(["fewshot:3"], [])
    prepare([arm], [suite], seed=0)
    assert [s.id for s in arm.shots["arith"]] == picks[0]


def _context_suite(folder: Path, contexts: list[str], fewshot: str) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "data.jsonl", "w") as fh:
        for i, c in enumerate(contexts):
            fh.write(json.dumps({"id": f"r{i}", "context": f"Background {c}.", "question": f"Question {i}?",
                                 "answer": [f"a{i}"]}) + "\n")
    (folder / "suite.yaml").write_text(f"""\
name: ctx
version: "1"
data: {{file: data.jsonl}}
fields: {{id: id, references: answer, vars: {{context: context, question: question}}}}
prompt: "{{{{ context }}}} {{{{ question }}}}"
metrics: [exact_match]
fewshot: {fewshot}
""")
    return folder


def test_holdout_takes_whole_context_groups_from_the_end(tmp_path):
    # r9 has context C (shared with r2): {r9, r2} is 2 < 3, so r8's group A (r0, r3, r8) joins too
    contexts = ["A", "B", "C", "A", "D", "E", "F", "G", "A", "C"]
    suite = load_suite(_context_suite(tmp_path / "ctx", contexts, "{holdout: 3, disjoint_on: [context]}"))
    assert sorted(ex.id for ex in suite.fewshot_pool()) == ["r0", "r2", "r3", "r8", "r9"]
    assert [ex.id for ex in suite.examples()] == ["r1", "r4", "r5", "r6", "r7"]
    fp_without = load_suite(_context_suite(tmp_path / "plain", contexts, "null")).fingerprint()
    assert suite.fingerprint()["prompt_hash"] != fp_without["prompt_hash"]  # another eval set, another fingerprint


@pytest.mark.parametrize("pool_line,expect", [
    ({"qid": "q001", "question": "What is 100 plus 100?", "answer": ["200"]}, "is also an eval item (same id)"),
    ({"qid": "p9", "question": "WHAT is 1 plus 1?? pad", "answer": ["2"]}, "same normalised prompt text as eval item 'q001'"),
])
def test_a_pool_that_overlaps_the_eval_set_is_refused(tmp_path, pool_line, expect):
    folder = pool_suite(tmp_path / "arith")
    with open(folder / "pool.jsonl", "a") as fh:
        fh.write(json.dumps(pool_line) + "\n")
    with pytest.raises(ConfigError, match=re.escape(expect)):
        load_suite(folder).fewshot_pool()


def test_a_pool_item_sharing_a_background_with_an_eval_item_is_refused(tmp_path):
    folder = _context_suite(tmp_path / "ctx", ["A", "B"], "{file: pool.jsonl, disjoint_on: [context]}")
    (folder / "pool.jsonl").write_text(json.dumps({"id": "x1", "context": "background  b", "question": "Other?",
                                                   "answer": ["z"]}) + "\n")
    with pytest.raises(ConfigError, match="pool item 'x1' shares its 'context' text with eval item 'r1'"):
        load_suite(folder).fewshot_pool()


def test_bundled_squad_qa_pool_never_shares_a_background_with_its_eval_items():
    suite = load_suite("squad-qa")
    pool, evals = suite.fewshot_pool(), suite.examples()
    assert len(pool) == 32 and len(evals) == 968  # 1,000 SQuAD questions: whole backgrounds moved to the pool
    assert not {ex.vars["context"] for ex in pool} & {ex.vars["context"] for ex in evals}
    assert not {ex.id for ex in pool} & {ex.id for ex in evals}


# --------------------------------------------------------------------------- end to end


@contextlib.contextmanager
def chat_server() -> Iterator[tuple[str, list[dict]]]:
    """An OpenAI-compatible server on 127.0.0.1: it answers "What is i plus i?" right for even i
    and "7" for odd i, each followed by "\\nmore" (which the stop string must cut)."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _send(self, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self._send({"object": "list", "data": [{"id": "big", "object": "model"}]})

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            i = int(re.search(r"What is (\d+) plus", body["messages"][-1]["content"]).group(1))
            answer = str(2 * i) if i % 2 == 0 else "7"
            self._send({"choices": [{"message": {"role": "assistant", "content": answer + "\nmore"}}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 2}})

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("other") / "model", seed=3)


def test_compare_with_every_kind_of_baseline(tmp_path, tiny_dir, tiny_lora, other_model):
    suite = pool_suite(tmp_path / "arith")
    (tmp_path / "terse.txt").write_text("Reply with the number only.\n")
    (tmp_path / "policy.yaml").write_text(
        "rules:\n  - {name: no-worse-than-hosted, task: arith, metric: exact_match, max_drop: 10, against: big}\n")
    out = tmp_path / "run"
    with chat_server() as (url, seen):
        proc = cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", out, "--batch-size", 4,
                   "--baseline", "fewshot:2", "--baseline", f"system:{tmp_path / 'terse.txt'}",
                   "--baseline-model", f"other={other_model}", "--baseline-model", f"big=openai:big@{url}",
                   "--policy", tmp_path / "policy.yaml", check=False)
    assert proc.returncode == 1, proc.stderr  # the hosted arm is far better than the tiny adapter: the rule fails
    assert "Traceback" not in proc.stderr, proc.stderr
    arms = ["base+fewshot:2", "base+system:terse", "other", "big"]
    meta = json.loads((out / "run.json").read_text())
    assert meta["models"] == ["base", "ft", *arms]
    assert meta["timing"]["items_computed"] == 6 * 8  # no arm was served the base's cached answers
    lines = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    by = {(r["model"], r["item_id"]): r for r in lines}
    ids = [f"q{i:03d}" for i in range(8)]
    assert all((m, i) in by for m in arms for i in ids)  # every arm answered every item

    # few-shot: the recorded shots are the seeded choice, and each prompt is longer than the base's
    prov = meta["provenance"]["baselines"]
    pool = load_suite(suite).fewshot_pool()
    assert prov["base+fewshot:2"]["shots"]["arith"]["ids"] == [s.id for s in choose_shots(pool, 2, 0, "arith")]
    assert prov["base+fewshot:2"]["shots"]["arith"]["pool_size"] == 5
    for i in ids:
        base, few = by[("base", i)], by[("base+fewshot:2", i)]
        assert few["prompt_hash"] != base["prompt_hash"] and few["prompt_tokens"] > base["prompt_tokens"]
    assert prov["base+system:terse"]["kind"] == "system" and prov["other"]["kind"] == "model"
    assert prov["big"]["model"] == {"backend": "openai", "base_url": url, "model": "big"}

    # hosted: one request per item, the suite prompt as the user turn, the stop string applied
    assert len(seen) == 8 and {b["model"] for b in seen} == {"big"}
    assert all(b["max_tokens"] == 6 and b["stop"] == ["\n"] for b in seen)
    assert [by[("big", i)]["prediction"] for i in ids] == ["0", "7", "4", "7", "8", "7", "12", "7"]
    assert meta["aggregates"]["suites"]["arith"]["big"]["exact_match"] == 0.5

    # the comparison: the adapter against every arm, `base` holding the arm's score
    verdict = json.loads((out / "verdict.json").read_text())
    rows = {(d["against"], d["metric"]): d for d in verdict["baseline_deltas"]}
    assert {a for a, _ in rows} == set(arms)
    ft_em = meta["aggregates"]["suites"]["arith"]["ft"]["exact_match"]
    hosted = rows[("big", "exact_match")]
    assert hosted["base"] == pytest.approx(50.0) and hosted["delta"] == pytest.approx(100 * ft_em - 50.0)
    [rule] = [r for r in verdict["rules"] if r["rule"] == "no-worse-than-hosted"]
    assert rule["status"] == "fail" and rule["numbers"]["against"] == "big"
    assert "against big" in rule["reason"]
    summary = (out / "summary.md").read_text()
    assert "### Against baselines" in summary and "| ft vs big | arith | exact_match | 8 | 50.00 |" in summary
    assert "adapter vs baseline arms" in proc.stdout
    report = (out / "report.html").read_text()
    assert 'id="baselines"' in report and "ft vs big" in report
    assert "hosted model big at " + url in report and f"arith: {', '.join(prov['base+fewshot:2']['shots']['arith']['ids'])}" in report


# --------------------------------------------------------------------------- the gate, by hand


def _arm_run(tmp_path: Path) -> Path:
    """40 items: base right on 10, the few-shot arm on 20 (those 10 and 10 more), ft on 30
    (the arm's 20 and 10 more), the 5-shot arm on 35 (ft's 30 and 5 more).

    Against base+fewshot:3, ft gains 10 items and loses none: +25 points. Against
    base+fewshot:5, ft loses 5 items and gains none: -12.5 points."""
    n = 40
    base = [1.0 if i < 10 else 0.0 for i in range(n)]
    arm3 = [1.0 if i < 20 else 0.0 for i in range(n)]
    ft = [1.0 if i < 30 else 0.0 for i in range(n)]
    arm5 = [1.0 if i < 35 else 0.0 for i in range(n)]
    hashes = {"base+fewshot:3": [f"few3-{i}" for i in range(n)], "base+fewshot:5": [f"few5-{i}" for i in range(n)]}
    out = write_run(tmp_path / "run", [TaskSpec("arith", {"base": {"exact_match": base}, "ft": {"exact_match": ft},
                                                         "base+fewshot:3": {"exact_match": arm3},
                                                         "base+fewshot:5": {"exact_match": arm5}},
                                                prompt_hashes=hashes)])
    folder = RunFolder(out)
    meta, items = folder.read_meta(), folder.read_items()
    # the factory writes every non-base model as an adapter; these two are baseline arms
    meta = meta.model_validate({**meta.model_dump(mode="json", exclude_unset=True),
                                "provenance": {**meta.provenance.model_dump(mode="json", exclude_unset=True),
                                               "adapters": {"ft": meta.provenance.adapters["ft"].model_dump()},
                                               "baselines": {"base+fewshot:3": {"kind": "fewshot", "k": 3},
                                                             "base+fewshot:5": {"kind": "fewshot", "k": 5}}}})
    folder.write_run(meta, items)
    return out


def test_gate_rules_against_a_prompted_base_pass_and_fail_as_built(tmp_path):
    from harness.analysis.comparison import Comparison
    from harness.analysis.gate import evaluate
    from harness.analysis.policy import parse_policy

    run = _arm_run(tmp_path)
    comp = Comparison.from_run_dir(run)
    assert comp.adapters == ["ft"] and comp.baselines == ["base+fewshot:3", "base+fewshot:5"]
    vs3 = comp.row("ft", "arith", "exact_match", against="base+fewshot:3")
    vs5 = comp.row("ft", "arith", "exact_match", against="base+fewshot:5")
    vs_base = comp.row("ft", "arith", "exact_match")
    assert (vs3.base, vs3.score, vs3.delta, vs3.better, vs3.worse) == (50.0, 75.0, 25.0, 10, 0)
    assert (vs5.base, vs5.score, vs5.delta, vs5.better, vs5.worse) == (87.5, 75.0, -12.5, 0, 5)
    assert (vs_base.delta, vs_base.against) == (50.0, "base")  # the base comparison is untouched
    policy = parse_policy({"rules": [
        {"name": "beats-3-shot", "task": "arith", "metric": "exact_match", "min_gain": 5.0, "against": "base+fewshot:3"},
        {"name": "beats-5-shot", "task": "arith", "metric": "exact_match", "min_gain": 0.0, "against": "base+fewshot:5"},
        {"name": "vs-base", "task": "arith", "metric": "exact_match", "max_drop": 1.0},
        {"name": "vs-absent", "task": "arith", "metric": "exact_match", "max_drop": 1.0, "against": "base+system:x",
         "optional": True}]})
    verdict = evaluate(comp, policy)
    status = {r.name: r.status for r in verdict.rules}
    assert status == {"adapter-has-effect": "pass", "beats-3-shot": "pass", "beats-5-shot": "fail", "vs-base": "pass",
                      "vs-absent": "skipped"}
    by = {r.name: r for r in verdict.rules}
    # 10 of 40 items better, none worse: the one-sided 95% lower bound sits well above the +5 required
    assert by["beats-3-shot"].numbers["delta"] == 25.0 and by["beats-3-shot"].numbers["gain_low"] > 5.0
    assert by["beats-5-shot"].numbers["gain_high"] < 0.0 and by["beats-5-shot"].numbers["against"] == "base+fewshot:5"
    assert "baseline 'base+system:x'" in by["vs-absent"].reason
    assert verdict.exit_code == 1


def test_a_rule_against_an_arm_the_run_lacks_is_one_line_exit_2(tmp_path, capfd):
    run = _arm_run(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - {task: arith, metric: exact_match, min_gain: 0, against: 'base+fewshot:9'}\n")
    code, err = _invoke(["gate", str(run), "--policy", str(policy)], capfd)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "compares against 'base+fewshot:9'" in err and "--baseline fewshot:9" in err


# --------------------------------------------------------------------------- bad input


BAD = [
    ("unknown-kind", "--baseline retrieval:3", "unknown baseline kind 'retrieval'"),
    ("k-zero", "--baseline fewshot:0", "K must be a whole number"),
    ("k-not-a-number", "--baseline fewshot:three", "K must be a whole number"),
    ("k-over-pool", "--baseline fewshot:6", "has 5 examples in its few-shot pool, fewer than K=6"),
    ("no-pool", "--baseline fewshot:2 -s {plain}", "suite 'plain' has no few-shot pool"),
    ("system-missing", "--baseline system:{tmp}/none.txt", "none.txt is not a file"),
    ("system-empty", "--baseline system:{tmp}/empty.txt", "empty.txt is empty"),
    ("same-arm-twice", "--baseline fewshot:2 --baseline fewshot:2", "two baselines are named 'base+fewshot:2'"),
    ("model-named-like-adapter", "--baseline-model ft={model}", "like a model of the run"),
    ("model-missing", "--baseline-model big={tmp}/no-model", "no-model"),
    ("hosted-syntax", "--baseline-model openai:gpt", "openai:MODEL@URL"),
    ("hosted-down", "--baseline-model big=openai:big@http://127.0.0.1:9/v1", "unreachable"),
    ("bench-only", "--baseline fewshot:2 --bench hellaswag --limit 2", "has no --suite"),
    ("policy-arm-absent", "--baseline fewshot:2 --policy {tmp}/vs.yaml", "compares against 'base+fewshot:3'"),
]


@pytest.mark.parametrize("row,extra,expect", BAD, ids=[r[0] for r in BAD])
def test_bad_baseline_input_is_one_line_exit_2_before_any_model(row, extra, expect, tmp_path, tiny_dir, tiny_lora,
                                                                 tripwire, capfd):  # noqa: F811
    suite = pool_suite(tmp_path / "arith")
    make_suite(tmp_path / "plain", n=4)
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "vs.yaml").write_text("rules:\n  - {task: arith, metric: f1, min_gain: 0, against: 'base+fewshot:3'}\n")
    fields = {"tmp": tmp_path, "model": tiny_dir, "plain": tmp_path / "plain"}
    args = ["compare", str(tiny_dir), f"ft={tiny_lora}", "--out", str(tmp_path / "r")]
    if "-s " not in extra and "--bench" not in extra:
        args += ["-s", str(suite)]
    code, err = _invoke(args + [a.format(**fields) for a in extra.split()], capfd)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expect in lines[0]
    assert not (tmp_path / "r").exists()
