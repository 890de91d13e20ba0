"""Issue #18 part 5: contaminated items split by what the training row held (the input only,
or the input with its gold answer), and scores on each part in run.json, summary.md and
the report. Training files and suites are built here, so which item is which is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.comparison import Comparison
from harness.analysis.leak_subsets import subset_aggregates
from harness.leaks import EvalItem, build_index, scan, suite_items
from harness.leaks.contamination import answer_rows
from harness.leaks.ngrams import token_stream
from harness.leaks.overlap import Runs
from harness.log.folder import RunFolder
from harness.log.schema import LeakSummary
from harness.pipeline import gate_run
from tests.runlog_factory import squad_task, write_run
from tests.test_leaks import write_jsonl

# id: (context, question, answer); every answer except q3's also occurs in its context,
# as in SQuAD, so a copied passage always "contains" the answer.
QA = {
    "q1": ("The Harbour Bridge in the old port town was finished in 1932 after eight years of work by crews of "
           "riveters and painters.", "In which year was the Harbour Bridge in the old port town finished?", "1932"),
    "q2": ("Marta Kowalski founded the Lindenfeld orchestra with twelve violinists and a borrowed piano in a church "
           "hall near the river.", "Who founded the Lindenfeld orchestra with twelve violinists and a borrowed piano?",
           "Marta Kowalski"),
    "q3": ("The copper mine at Graubach closed in the wet spring, and the village turned to sheep farming and "
           "weaving for the markets downstream.", "Why did the copper mine at Graubach close?",
           "the lower galleries flooded"),
    "q4": ("Astronomers at the Pellworth observatory catalogued four hundred variable stars using a glass plate "
           "telescope built by a local clockmaker.",
           "Who built the glass plate telescope used at the Pellworth observatory?", "a local clockmaker"),
    "q5": ("A ferry crosses the Samso strait twice a day in summer, carrying cyclists, cars and the morning post "
           "between the two harbours.", "How often does the ferry cross the Samso strait in summer?", "twice a day"),
}


def make_qa_suite(folder: Path, extra: dict | None = None) -> Path:
    """A SQuAD-like suite of QA (rows may carry more fields: `extra` item id -> fields)."""
    folder.mkdir(parents=True)
    write_jsonl(folder / "data.jsonl", [{"id": k, "context": c, "question": q, "answer": a, **(extra or {}).get(k, {})}
                                        for k, (c, q, a) in QA.items()])
    (folder / "suite.yaml").write_text(f"""\
name: {folder.name}
version: "1"
data: {{file: data.jsonl}}
fields: {{id: id, references: answer, vars: {{context: context, question: question}}}}
prompt: "Context: {{{{ context }}}}\\nQuestion: {{{{ question }}}}\\nAnswer:"
generation: {{max_new_tokens: 6}}
metrics: [exact_match]
""")
    return folder


def prompt(k: str) -> str:
    c, q, _ = QA[k]
    return f"Read and answer.\nContext: {c}\nQuestion: {q}\nAnswer:"


def training_rows() -> list[dict]:
    """Row 0: q1's prompt with its answer after it; row 1: q2's prompt without the answer
    (which its passage holds anyway); row 2: q3's question and answer alone; row 3: q4's
    item text copied inside a longer note. q5 is not in training."""
    c4, q4, a4 = QA["q4"]
    return [{"prompt": prompt("q1"), "completion": " 1932"},
            {"prompt": prompt("q2"), "completion": ""},
            {"prompt": QA["q3"][1], "completion": QA["q3"][2]},
            {"prompt": f"Notes from the archive. {c4} {q4} {a4} End of the notes.", "completion": "Filed."}]


def test_each_contaminated_item_says_whether_the_row_held_its_answer(tmp_path):
    suite = make_qa_suite(tmp_path / "qa")
    train = write_jsonl(tmp_path / "train.jsonl", training_rows())
    rep = scan(train, suite_items(str(suite)), workers=1)
    rec = {r["item_id"]: r for r in rep.records}
    assert {k: r["label"] for k, r in rec.items()} == {"q1": "contaminated", "q2": "contaminated",
                                                       "q3": "contaminated", "q4": "contaminated", "q5": "clean"}
    assert {k: r.get("contamination") for k, r in rec.items()} == {
        "q1": "input_answer",   # " 1932" after "Answer:" is aligned with no input token
        "q2": "input_only",     # "Marta Kowalski" occurs only inside the copied passage
        "q3": "input_answer",   # exact question + answer pair
        "q4": "input_answer",   # the copied item text runs on into its reference
        "q5": None}
    assert "Marta Kowalski" in training_rows()[1]["prompt"]  # the answer was in the row, inside the input
    # the first row holding input and answer, as evidence gives it (0-based row, 1-based line)
    assert {k: r.get("answer_row") for k, r in rec.items() if r.get("answer_row")} == {
        "q1": {"source": str(train), "row": 0, "line": 1}, "q3": {"source": str(train), "row": 2, "line": 3},
        "q4": {"source": str(train), "row": 3, "line": 4}}
    c = rep.summary["counts"]["qa"]
    assert (c["contaminated"], c["input_only"], c["input_answer"], c["clean"]) == (4, 1, 3, 1)
    assert (rep.summary["totals"]["input_only"], rep.summary["totals"]["input_answer"]) == (1, 3)


def test_the_earliest_answer_row_wins_whichever_block_or_worker_finds_it(tmp_path):
    suite = make_qa_suite(tmp_path / "qa")
    rows = training_rows()
    rows = rows[1:2] * 30 + [rows[0]] * 2 + rows[1:]  # q2 repeated, then q1's answer rows at 30 and 31
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    from harness.leaks import LeakConfig

    small = LeakConfig(chunk_bytes=2048)  # many blocks, two workers: partials merge out of order
    for workers in (1, 2):
        rec = {r["item_id"]: r for r in scan(train, suite_items(str(suite)), small, workers=workers).records}
        assert rec["q1"]["answer_row"]["row"] == 30
        assert rec["q2"]["contamination"] == "input_only"


def mc_item(task: str, shown: bool) -> EvalItem:
    question = "Which of these metals was smelted first by the bronze age workshops of the northern valley?"
    options = ["tin", "copper", "iron", "zinc"]
    text = "\n".join([question, *options])
    start = len(question) + 1 + len("tin") + 1
    return EvalItem(task, "x", text, "bench", answers=((start, start + len("copper")),), inputs=(question,),
                    answer_shown=shown)


def test_an_answer_the_model_is_shown_counts_only_when_copied_again(tmp_path):
    items = [mc_item("mc-shown", True), mc_item("mc-hidden", False)]
    question = items[0].text.split("\n")[0]
    # the question with its options, verbatim: for MMLU (options in the prompt) only the input;
    # for a task that scores the options as continuations, the correct one was copied too
    train = write_jsonl(tmp_path / "options.jsonl", [{"text": f"{question} tin copper iron zinc"}])
    rec = {r["task"]: r for r in scan(train, items, workers=1).records}
    assert rec["mc-shown"]["label"] == rec["mc-hidden"]["label"] == "contaminated"
    assert (rec["mc-shown"]["contamination"], rec["mc-hidden"]["contamination"]) == ("input_only", "input_answer")
    keyed = write_jsonl(tmp_path / "keyed.jsonl", [{"text": f"{question} tin copper iron zinc. Answer: copper"}])
    rec = {r["task"]: r for r in scan(keyed, items, workers=1).records}
    assert (rec["mc-shown"]["contamination"], rec["mc-hidden"]["contamination"]) == ("input_answer", "input_answer")


def test_a_near_duplicate_row_needs_the_answer_more_often_than_the_input_has_it():
    c, q, a = QA["q2"]
    start = len(c) + 1 + len(q) + 1
    index = build_index([EvalItem("qa", "q2", f"{c}\n{q}\n{a}", answers=((start, start + len(a)),))])
    assert index.gold.in_input.tolist() == [1]  # "Marta Kowalski" once in the passage, the reference aside
    ts = token_stream([f"{c} {q}", f"{c} {q} Answer: {a}"])
    # rows 0 and 1 as MinHash near-duplicates without any aligned n-gram run
    found = answer_rows(index.gold, index.offsets, 10, ts, Runs.empty(), [], [(0, 0), (0, 1)])
    assert found == {0: 1}


def records(model: str, scores: list[float], tags: list[tuple]) -> list[dict]:
    return [{"model": model, "kind": "suite", "task": "qa", "item_id": f"i{i}", "scores": {"exact_match": s},
             **{k: v for k, v in zip(("leak", "contamination", "temporal"), t) if v is not None}}
            for i, (s, t) in enumerate(zip(scores, tags))]


TAGS = [("clean", None, "after_cutoff"), ("contaminated", "input_answer", "at_risk"),
        ("contaminated", "input_answer", "at_risk"), ("contaminated", "input_only", "undated"),
        ("suspect", None, "at_risk"), ("clean", None, "undated")]
BASE = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
FT = [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_subset_means_by_hand():
    agg = subset_aggregates(records("base", BASE, TAGS) + records("ft", FT, TAGS))
    assert list(agg) == ["contaminated", "input_only", "input_answer", "at_risk", "after_cutoff", "undated"]
    qa = {s: agg[s]["suite"]["qa"] for s in agg}
    assert qa["contaminated"] == {"base": {"n": 3, "exact_match": 1 / 3}, "ft": {"n": 3, "exact_match": 1.0}}
    assert qa["input_answer"] == {"base": {"n": 2, "exact_match": 0.0}, "ft": {"n": 2, "exact_match": 1.0}}
    assert qa["input_only"] == {"base": {"n": 1, "exact_match": 1.0}, "ft": {"n": 1, "exact_match": 1.0}}
    assert qa["at_risk"] == {"base": {"n": 3, "exact_match": 0.0}, "ft": {"n": 3, "exact_match": 2 / 3}}
    assert qa["after_cutoff"]["ft"] == {"n": 1, "exact_match": 1.0}
    assert qa["undated"]["base"] == {"n": 2, "exact_match": 0.5}


def tagged_run(tmp_path: Path) -> Path:
    """A synthetic run log (base vs ft on 6 items) with TAGS on every line and a leak summary."""
    run = write_run(tmp_path / "run", [squad_task(6, (BASE, BASE), (BASE, BASE), name="qa")])
    folder = RunFolder(run)
    meta, items = folder.read_meta(), folder.read_items()
    for line in items:
        i = int(str(line.item_id).rsplit("-", 1)[1])
        if line.model == "ft":
            line.scores = {"exact_match": FT[i], "f1": FT[i]}
        for key, value in zip(("leak", "contamination", "temporal"), TAGS[i]):
            if value is not None:
                setattr(line, key, value)
    lines = [json.loads(r.to_line()) for r in items]
    meta.leaks = LeakSummary.model_validate({
        "counts": {"qa": {"kind": "suite", "n": 6, "clean": 2, "suspect": 1, "contaminated": 3, "input_only": 1,
                          "input_answer": 2}},
        "subset_aggregates": subset_aggregates(lines),
        "temporal": {"cutoff": "2024-06-30", "cutoff_source": "--train-cutoff",
                     "counts": {"qa": {"n": 6, "at_risk": 3, "after_cutoff": 1, "undated": 2}}}})
    folder.write_run(meta, items)
    return run


def test_split_rows_in_the_comparison_summary_and_report(tmp_path):
    run = tagged_run(tmp_path)
    comp = Comparison.from_run_dir(run)
    rows = {s: comp.row("ft", "qa", "exact_match", subset=s) for s in
            ("contaminated", "input_only", "input_answer", "at_risk", "after_cutoff", "undated", "clean")}
    # by hand from BASE/FT (points): contaminated items 1,2,3: 33.33 -> 100; input + answer 1,2: 0 -> 100;
    # input only 3: 100 -> 100; at risk 1,2,4: 0 -> 66.67; after cutoff 0: 100 -> 100; undated 3,5: 50 -> 50
    want = {"contaminated": (3, 100 / 3, 100.0), "input_answer": (2, 0.0, 100.0), "input_only": (1, 100.0, 100.0),
            "at_risk": (3, 0.0, 200 / 3), "after_cutoff": (1, 100.0, 100.0), "undated": (2, 50.0, 50.0),
            "clean": (2, 50.0, 50.0)}
    for s, (n, base, ft) in want.items():
        r = rows[s]
        assert (r.n, r.base, r.score) == (n, pytest.approx(base), pytest.approx(ft)), s
        assert r.delta == pytest.approx(ft - base)
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {name: qa-em, task: qa, metric: exact_match, max_drop: 50}\n")
    gate_run(run, policy)
    summary = (run / "summary.md").read_text()
    assert "### Leak subsets" in summary and "Training cutoff 2024-06-30 (from --train-cutoff)" in summary
    for label, n, base, ft, delta in [("contaminated: input + answer", 2, "0.00", "100.00", "+100.00"),
                                      ("contaminated: input only", 1, "100.00", "100.00", "+0.00"),
                                      ("contaminated (all)", 3, "33.33", "100.00", "+66.67"),
                                      ("dated on/before cutoff (at risk)", 3, "0.00", "66.67", "+66.67"),
                                      ("dated after cutoff", 1, "100.00", "100.00", "+0.00"),
                                      ("undated", 2, "50.00", "50.00", "+0.00"),
                                      ("all", 6, "33.33", "66.67", "+33.33")]:
        assert f"| ft | qa | exact_match | {label} | {n} | {base} | {ft} | **{delta}** |" in summary, label
    from harness.outputs.report import render_report

    html = render_report(run).read_text()
    assert "Contaminated and dated items vs all items" in html and "Temporal leakage" in html
    assert "contaminated: input + answer" in html and "dated on/before cutoff (at risk)" in html
    assert "Training cutoff <strong>2024-06-30</strong>" in html


def test_rows_without_leak_tags_add_no_section(tmp_path):
    run = write_run(tmp_path / "run", [squad_task(6, (BASE, FT), (BASE, FT), name="qa")])
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {name: qa-em, task: qa, metric: exact_match, max_drop: 50}\n")
    gate_run(run, policy)
    assert "Leak subsets" not in (run / "summary.md").read_text()
    assert Comparison.from_run_dir(run).task("qa").subset_masks() == {}
    assert not np.any(Comparison.from_run_dir(run).task("qa").mask(subset="input_only"))
