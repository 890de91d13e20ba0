"""Issue #16: items shorter than the n-gram window, copied verbatim into training data.

`harness leaks` (scan API and CLI) and `harness train`'s overlap refusal must both catch
a row that is a short item's question plus its answer, through the one detector in
harness.leaks.exact, and must not flag rows that merely share common words.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.leaks import EvalItem, build_index, scan, suite_items
from harness.leaks.exact import build_exact, match_texts
from harness.leaks.ngrams import SpanHashes, mix, ngram_hashes
from harness.leaks.normalize import tokens
from tests.test_leaks import _cli, labels_of, write_jsonl

QA = {  # id: (question, answer); every pair is shorter than the 8-token window
    "france": ("What is the capital of France?", "Paris"),
    "hamlet": ("Who wrote Hamlet?", "Shakespeare"),
    "planet": ("Name the largest planet.", "Jupiter"),
    "cairo": ("Which river flows through Cairo?", "Nile"),
    "pi": ("Pi?", "3.14"),
}


def make_suite(folder: Path) -> Path:
    folder.mkdir(parents=True)
    write_jsonl(folder / "data.jsonl", [{"qid": k, "question": q, "answer": [a]} for k, (q, a) in QA.items()])
    (folder / "suite.yaml").write_text(f"""\
name: {folder.name}
version: "1"
data: {{file: data.jsonl}}
fields: {{id: qid, references: answer, vars: {{question: question}}}}
prompt: "Answer briefly. {{{{ question }}}}"
chat: true
generation: {{max_new_tokens: 4}}
metrics: [exact_match]
""")
    return folder


@pytest.fixture()
def suite_dir(tmp_path) -> Path:
    return make_suite(tmp_path / "trivia")


# Rows sharing words with the items, in a different order or with other words between:
# none is a copy.
COMMON_WORDS = [
    {"prompt": "The capital city has many museums, and France is large.", "completion": "What is it?"},
    {"prompt": "The river flows north through the city of Cairo to the sea.", "completion": "Which one?"},
    {"prompt": "Who wrote this letter about the largest planet?", "completion": "Someone in Paris."},
    {"prompt": "The value of Pi? 3.14, as every student learns.", "completion": "Yes."},  # 3 tokens: too short
]


def test_short_copies_are_contaminated_and_common_words_are_not(suite_dir, tmp_path):
    assert all(len(tokens(f"{q} {a}")) < 8 for q, a in QA.values())
    rows = COMMON_WORDS + [
        {"prompt": "WHAT is the capital   of france", "completion": "paris!!"},  # question + answer, re-cased
        {"prompt": "Quiz: who wrote Hamlet? Shakespeare. Next one?", "completion": "ok"},  # inside a longer row
        {"prompt": "name the largest planet", "completion": ""},  # the question alone: 4 of 5 tokens
    ]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    rep = scan(path, suite_items(str(suite_dir)), workers=1)
    assert labels_of(rep) == {"france": "contaminated", "hamlet": "contaminated", "planet": "suspect",
                              "cairo": "clean", "pi": "clean"}
    rec = {r["item_id"]: r for r in rep.records}
    ev = [e for e in rec["france"]["evidence"] if e["detector"] == "exact"]
    assert [(e["row"], e["line"], e["match"], e["coverage"]) for e in ev] == [(4, 5, "item", 1.0)]
    assert ev[0]["span"] == "WHAT is the capital of france paris"
    assert rec["france"]["detectors"]["exact"] == {"coverage": 1.0, "category": "dirty"}
    assert not rec["france"]["detectors"]["palm"]["hit"]  # the n-gram rules cannot see it
    assert rec["planet"]["detectors"]["exact"] == {"coverage": 0.8, "category": "not-clean"}
    assert rec["cairo"]["evidence"] == [] and rep.summary["detectors"]["exact"]["dirty"] == 2


def test_cli_labels_a_short_copy_contaminated(suite_dir, tmp_path):
    rows = COMMON_WORDS + [{"text": "What is the capital of France? Paris"}]
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": f"{r['prompt']} {r['completion']}"} for r in rows[:-1]]
                        + rows[-1:])
    out = tmp_path / "out"
    res = _cli("--train", str(train), "--suite", str(suite_dir), "--out", str(out), "--workers", "1")
    assert res.returncode == 0, res.stderr
    recs = {r["item_id"]: r for r in map(json.loads, (out / "leaks.jsonl").read_text().splitlines())}
    assert {k: r["label"] for k, r in recs.items()} == {"france": "contaminated", "hamlet": "clean", "planet": "clean",
                                                        "cairo": "clean", "pi": "clean"}
    assert recs["france"]["evidence"][0]["detector"] == "exact" and recs["france"]["evidence"][0]["row"] == 4


def test_train_refuses_what_the_scan_labels_contaminated(suite_dir, tmp_path):
    from harness.train.data import load_dataset
    from harness.train.overlap import check_overlap

    # Text form: the old exact check compared only prompts with the question, so question +
    # answer in one text slipped through both checks.
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "Filler about nothing."},
                                               {"text": "who wrote HAMLET -- Shakespeare"}])
    data = load_dataset(bad)
    for use_leaks in (False, True):
        with pytest.raises(ConfigError) as err:
            check_overlap(data.samples, [bad], data.fields, [str(suite_dir)], use_leaks=use_leaks)
        msg = str(err.value)
        assert "1 of 5 items of suite 'trivia'" in msg and "hamlet" in msg and "\n" not in msg
    assert labels_of(scan(bad, suite_items(str(suite_dir)), workers=1))["hamlet"] == "contaminated"

    ok = write_jsonl(tmp_path / "ok.jsonl", [{"text": f"{r['prompt']} {r['completion']}"} for r in COMMON_WORDS])
    data = load_dataset(ok)
    res = check_overlap(data.samples, [ok], data.fields, [str(suite_dir)])
    assert res["suites"]["trivia"]["overlapping"] == 0 and res["suites"]["trivia"]["leak_detector"] == 0
    assert set(labels_of(scan(ok, suite_items(str(suite_dir)), workers=1)).values()) == {"clean"}


def test_keys_normalise_and_cover_inputs_and_answer_pairs():
    q = "Which planet is known as the red planet?"
    opts = ["Venus", "Mars", "Jupiter"]
    text = "\n".join([q, *opts])
    start = len(q) + 1 + len(opts[0]) + 1
    # Shaped like an MMLU item: question, options, gold span, the question as its input.
    mc = EvalItem("mmlu", "astro:0", text, "bench", answers=((start, start + 4),), inputs=(q,))
    ex = build_exact([mc, EvalItem("t", "plain", "Hello there, General Kenobi!", "suite")])
    texts = ["which planet is known as the RED planet ... mars", "hello THERE general kenobi", q,
             "Which planet is known as the red planet? Venus", "general kenobi"]
    assert match_texts(texts, ex) == [(0, 0), (1, 1), (2, 0)]


def test_long_keys_match_whole_rows_only():
    long_q = "Which of these eleven words names the color of a clear daytime sky?"
    item = EvalItem("t", "sky", f"{long_q}\nblue", "suite", answers=((len(long_q) + 1, len(long_q) + 5),))
    ex = build_index([item]).exact
    assert ex.contain_lens == ()  # inside a row, 8+ tokens are the n-gram rules' job
    assert match_texts([f"Quiz: {long_q} blue", f"{long_q.upper()} -- blue"], ex) == [(1, 0)]


def test_span_hashes_equal_ngram_hashes():
    th = np.random.default_rng(0).integers(0, 2**63, 500, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    sh = SpanHashes(th)
    for n in (1, 2, 7, 13, 500):
        ref = ngram_hashes(th, n)
        s = np.arange(len(ref))
        assert np.array_equal(mix(sh(s, s + n)), ref) and np.array_equal(mix(sh.windows(n)), ref), n
    one = (np.array([3]), np.array([30]))
    assert sh.joined((np.array([3]), np.array([10])), (np.array([10]), np.array([30]))) == sh(*one)
