"""Abstention: abstained / answered_anyway with hand-computed values, the squad-unanswerable
suite on a small fake asset (hand-checked pairing) and on the real SQuAD asset, and one real
SmolLM2 run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evaluate.metrics import get_metric
from harness.evaluate.metrics.abstain import abstention, normalize_reply
from harness.evaluate.metrics.squad import normalize_answer
from harness.evaluate.suites import load_suite
from tests.conftest import REAL_HOME


def item(name: str, reply: str) -> float:
    return get_metric(name).score_items([reply], [["unanswerable"]])[0]


# --- the abstention rule ------------------------------------------------------------------


@pytest.mark.parametrize("reply, phrase", [
    ("unanswerable", "unanswerable"),
    ("Unanswerable.", "unanswerable"),
    ("UNANSWERABLE", "unanswerable"),
    ("The question is not answerable from the text.", "not answerable"),
    ("This question cannot be answered from the background.", "cannot be answered"),
    ("I can't answer that.", "cannot answer"),
    ("I can\u2019t tell from the passage", "cannot tell"),
    ("It is impossible to determine.", "impossible to determine"),
    ("No answer", "no answer"),
    ("There is no information about this.", "no information"),
    ("Not enough information.", "not enough information"),
    ("I don't know", "do not know"),
    ("The date is not mentioned.", "is not mentioned"),
    ("Not stated in the text", "not stated in the text"),
    ("That is not in the background.", "not in the background"),
    ("The passage doesn't say.", "the passage does not say"),
    ("The text does not contain the answer", "the text does not contain"),
    ("Unknown", "unknown"),
    ("N/A", "n a"),
])
def test_replies_that_abstain(reply, phrase):
    assert abstention(reply) == phrase
    assert item("abstained", reply) == 1.0 and item("answered_anyway", reply) == 0.0


@pytest.mark.parametrize("reply", [
    "Paris", "23 years", "1923", "the Unknown Soldier", "No", "None", "Denver Broncos",
    "He answered the letter",  # 'answer' alone is not an abstention
    "The text is about Tesla",
])
def test_replies_that_answer(reply):
    assert abstention(reply) is None
    assert item("abstained", reply) == 0.0 and item("answered_anyway", reply) == 1.0


def test_an_empty_reply_counts_in_neither():
    for reply in ("", "   "):
        assert item("abstained", reply) == 0.0 and item("answered_anyway", reply) == 0.0


def test_normalisation():
    assert normalize_reply("  The TEXT doesn\u2019t   say!") == "the text does not say"
    assert normalize_reply("Can't; won't.") == "cannot will not"


def test_rates_over_a_suite_hand_computed():
    replies = ["unanswerable", "Paris", "", "The text does not say.", "1923", "I don't know", "Blue"]
    refs = [["unanswerable"]] * len(replies)
    abst, anyway = get_metric("abstained"), get_metric("answered_anyway")
    a_items, h_items = abst.score_items(replies, refs), anyway.score_items(replies, refs)
    assert a_items == [1, 0, 0, 1, 0, 1, 0]
    assert h_items == [0, 1, 0, 0, 1, 0, 1]
    assert abst.aggregate(replies, refs, a_items) == pytest.approx(3 / 7)
    assert anyway.aggregate(replies, refs, h_items) == pytest.approx(3 / 7)  # 1 empty reply: 3 + 3 + 1 = 7
    assert abst.higher_is_better is True and anyway.higher_is_better is False
    assert abst.details(replies[:2], refs[:2]) == [{"matched": "unanswerable"}, None]


# --- the suite on a small fake asset ------------------------------------------------------

ROWS = [
    {"id": "a1", "title": "Alpha", "context": "The Alpha bridge opened in 1923 and is 40 metres long.",
     "question": "When did the Alpha bridge open?", "answers": ["1923", "in 1923"]},
    {"id": "a2", "title": "Alpha", "context": "The Alpha bridge opened in 1923 and is 40 metres long.",
     "question": "How long is the bridge?", "answers": ["40 metres"]},
    {"id": "b1", "title": "Beta", "context": "Beta is a village of 23 houses near the U.S. border.",
     "question": "How many houses does Beta have?", "answers": ["23", "23 houses"]},
    {"id": "c1", "title": "Gamma", "context": "Gamma Lake freezes every winter; the US Army mapped it.",
     "question": "Who mapped Gamma Lake?", "answers": ["the U.S. Army", "."]},
    {"id": "d1", "title": "Delta", "context": "Delta station has 2 platforms.",
     "question": "How many platforms?", "answers": ["2"]},
]


@pytest.fixture
def fake_squad(tmp_path, monkeypatch):
    home = tmp_path / "fake-home"
    folder = home / "assets" / "squad"
    folder.mkdir(parents=True)
    (folder / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (folder / ".harness-asset.json").write_text(json.dumps({"name": "squad"}))
    monkeypatch.setenv("HARNESS_HOME", str(home))
    return folder


def test_pairing_rules_on_a_fake_asset(fake_squad):
    suite = load_suite("squad-unanswerable")
    hook = suite.hook
    # The pool: one entry per distinct context, in file order.
    assert [(t, src) for t, _, src in hook.pool()] == [("Alpha", "a1"), ("Beta", "b1"), ("Gamma", "c1"),
                                                       ("Delta", "d1")]
    contexts = {r["title"]: r["context"] for r in ROWS}
    # Whole words, raw or SQuAD-normalised: "23" is in Beta's text, not in Alpha's "1923";
    # "the U.S. Army" is in Gamma's "the US Army"; the punctuation-only gold '.' is ignored.
    assert hook.contains_answer(contexts["Beta"], ["23"]) is True
    assert hook.contains_answer(contexts["Alpha"], ["23"]) is False
    assert hook.contains_answer(contexts["Gamma"], ["the U.S. Army", "."]) is True
    assert hook.contains_answer(contexts["Delta"], ["."]) is False
    assert hook.contains_answer(contexts["Beta"], ["u.s."]) is True
    examples = {ex.id: ex for ex in suite.examples()}
    assert list(examples) == ["a1", "a2", "b1", "c1", "d1"]
    for row in ROWS:
        ex = examples[row["id"]]
        assert ex.references == ("unanswerable",)
        assert ex.vars["question"] == row["question"]
        ctx = ex.vars["context"]
        source = next(r for r in ROWS if r["id"] == ex.meta["context_from"])
        assert ctx == source["context"] and source["title"] != row["title"]
        assert not hook.contains_answer(ctx, row["answers"])
    # The walk is seeded by the id: the same pairs on every load.
    again = {ex.id: ex.vars["context"] for ex in load_suite("squad-unanswerable").examples()}
    assert again == {i: ex.vars["context"] for i, ex in examples.items()}
    prompt = suite.render(examples["a1"]).messages[-1][1]
    assert "reply with the single word: unanswerable" in prompt
    assert examples["a1"].vars["context"] in prompt and "When did the Alpha bridge open?" in prompt


def test_a_question_with_no_answer_free_background_is_a_suite_error(fake_squad):
    from harness.errors import ConfigError

    rows = [ROWS[0], {**ROWS[2], "answers": ["is"]}]  # 'is' is in every other context
    (fake_squad / "squad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match="no context without the answers of question b1"):
        load_suite("squad-unanswerable").examples()


# --- the suite on the real asset ----------------------------------------------------------


def real_squad_rows() -> list[dict]:
    path = REAL_HOME / "assets" / "squad" / "squad.jsonl"
    if not path.is_file():
        pytest.fail("SQuAD asset missing: run `harness assets pull squad`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_real_suite_pairs_every_question_with_a_background_free_of_its_answers():
    rows = real_squad_rows()  # the isolated home sees the real assets through a symlink
    suite = load_suite("squad-unanswerable")
    examples = suite.examples()
    assert len(examples) == len(rows) == 1000
    by_id = {r["id"]: r for r in rows}
    titles = {r["context"]: r["title"] for r in rows}
    for ex in examples:
        row = by_id[ex.id]
        ctx = ex.vars["context"]
        assert ex.references == ("unanswerable",) and ex.vars["question"] == row["question"]
        assert titles[ctx] != row["title"]
        norm = f" {normalize_answer(ctx)} "
        for answer in row["answers"]:
            words = normalize_answer(answer)
            assert not words or f" {words} " not in norm, (ex.id, answer)
    # Many different backgrounds are used, none overwhelmingly often.
    used = [ex.vars["context"] for ex in examples]
    assert len(set(used)) > 500 and max(used.count(c) for c in set(used)) <= 10
    fp = suite.fingerprint()
    assert fp["metrics"] == ["abstained", "answered_anyway"] and fp["name"] == "squad-unanswerable"


# --- a real run ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_run_on_squad_unanswerable_logs_the_metrics_per_item(tmp_path):
    real_squad_rows()
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "smollm2-135m", "--suite",
                           "squad-unanswerable", "--limit", "4", "--batch-size", "4", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "run.json").read_text())
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["references"] == ["unanswerable"] for r in rows)
    assert meta["metrics"]["abstained"] == {"higher_is_better": True, "corpus_level": False}
    assert meta["metrics"]["answered_anyway"] == {"higher_is_better": False, "corpus_level": False}
    agg = meta["aggregates"]["suites"]["squad-unanswerable"]["base"]
    for name in ("abstained", "answered_anyway"):
        assert agg[name] == pytest.approx(sum(r["scores"][name] for r in rows) / 4)
    for r in rows:
        assert list(r["scores"]) == ["abstained", "answered_anyway"]
        assert r["scores"]["abstained"] == float(abstention(r["prediction"]) is not None)
        assert r["scores"]["abstained"] + r["scores"]["answered_anyway"] == float(bool(r["prediction"].strip()))
    assert Path(out / "run.json").is_file()
