"""Issue #18 part 6: temporal leakage. Eval items dated on or before the last day of the
training data are at risk; the cutoff comes from --train-cutoff or the training rows'
latest `date`; bad dates are one line naming file and line; undated items are counted."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError
from harness.leaks import scan, suite_items
from harness.leaks.temporal import parse_cutoff, parse_date
from tests.test_contamination_split import QA, make_qa_suite, training_rows
from tests.test_leaks import _cli, write_jsonl

# item -> date; q5 is undated. The training rows below end on 2024-06-30.
ITEM_DATES = {"q1": "2023-12-31", "q2": "2024-01-01", "q3": "2024-06-30", "q4": "2024-07-01"}
TRAIN_DATES = ["2023-03-05", "2024-06-30T23:59:00Z", "", "2024-02-10"]  # "" = undated row


def dated_suite(tmp_path: Path, declared: bool = False) -> Path:
    """The QA suite with item dates in a top-level `date`, or (declared) in `published`
    mapped as fields.meta.date."""
    key = "published" if declared else "date"
    dates = {**ITEM_DATES, "q5": None} if declared else ITEM_DATES  # a mapped field must exist: null is undated
    suite = make_qa_suite(tmp_path / ("news" if declared else "qa"), {k: {key: d} for k, d in dates.items()})
    if declared:
        yaml = suite / "suite.yaml"
        yaml.write_text(yaml.read_text().replace("vars: {context: context, question: question}}",
                                                 "vars: {context: context, question: question}, "
                                                 "meta: {date: published}}"))
    return suite


def dated_training(tmp_path: Path) -> Path:
    rows = training_rows()
    for row, day in zip(rows, TRAIN_DATES):
        if day:
            row["date"] = day
    return write_jsonl(tmp_path / "train.jsonl", rows)


def test_parse_date_accepts_iso_days_only():
    assert parse_date("2024-03-01") == dt.date(2024, 3, 1)
    assert parse_date(" 2024-03-01T12:30:00Z ") == dt.date(2024, 3, 1)  # the calendar day as written
    assert parse_date("2024-03-01T23:30:00-05:00") == dt.date(2024, 3, 1)
    assert parse_date(None) is None and parse_date("") is None
    assert parse_date(dt.datetime(2024, 3, 1, 9)) == dt.date(2024, 3, 1)  # a Parquet timestamp
    for bad, why in [("03/01/2024", "not a YYYY-MM-DD date"), ("20240301", "not a YYYY-MM-DD date"),
                     ("2024-13-01", "not a valid date"), ("2024-02-30", "not a valid date"),
                     (20240301, "is a int, not a date"), (True, "is a bool, not a date")]:
        with pytest.raises(ValueError, match=why):
            parse_date(bad)
    with pytest.raises(ConfigError, match="--train-cutoff: '2024/06/30' is not a YYYY-MM-DD date"):
        parse_cutoff("2024/06/30")


@pytest.mark.parametrize("declared", [False, True])
def test_items_dated_on_or_before_the_training_data_are_at_risk(tmp_path, declared):
    items = suite_items(str(dated_suite(tmp_path, declared)), dates=True)
    assert {it.item_id: it.date for it in items} == {**ITEM_DATES, "q5": None}
    train = dated_training(tmp_path)
    rep = scan(train, items, workers=1)
    rec = {r["item_id"]: r for r in rep.records}
    # cutoff = the latest training date, 2024-06-30 (the date-time's calendar day); <= is at risk
    assert {k: r["temporal"] for k, r in rec.items()} == {"q1": "at_risk", "q2": "at_risk", "q3": "at_risk",
                                                         "q4": "after_cutoff", "q5": "undated"}
    assert rec["q4"]["date"] == "2024-07-01" and "date" not in rec["q5"]
    assert rec["q1"]["label"] == "contaminated"  # reported beside the n-gram label, never folded into it
    t = rep.summary["temporal"]
    assert (t["cutoff"], t["cutoff_source"]) == ("2024-06-30", "training data")
    assert t["training"] == {"dated_rows": 3, "first": "2023-03-05", "last": "2024-06-30"}
    task = items[0].task
    assert t["counts"][task] == {"n": 5, "at_risk": 3, "after_cutoff": 1, "undated": 1}
    assert t["totals"] == t["counts"][task]


def test_train_cutoff_overrides_the_training_dates(tmp_path):
    items = suite_items(str(dated_suite(tmp_path)), dates=True)
    rep = scan(dated_training(tmp_path), items, workers=1, train_cutoff="2024-01-01")
    assert [r["temporal"] for r in rep.records] == ["at_risk", "at_risk", "after_cutoff", "after_cutoff", "undated"]
    t = rep.summary["temporal"]
    assert (t["cutoff"], t["cutoff_source"]) == ("2024-01-01", "--train-cutoff")
    assert "training" not in t  # with a cutoff given, the training rows' dates are not read


def test_dated_items_without_any_cutoff_keep_their_dates_and_are_counted(tmp_path):
    items = suite_items(str(dated_suite(tmp_path)), dates=True)
    train = write_jsonl(tmp_path / "undated.jsonl", training_rows())
    rep = scan(train, items, workers=1)
    assert all("temporal" not in r for r in rep.records)
    assert rep.records[0]["date"] == "2023-12-31"
    t = rep.summary["temporal"]
    assert t["cutoff"] is None and t["training"]["dated_rows"] == 0
    assert t["totals"] == {"n": 5, "dated": 4, "undated": 1}


def test_undated_items_add_nothing_unless_a_cutoff_is_given(tmp_path):
    items = suite_items(str(make_qa_suite(tmp_path / "qa")), dates=True)
    train = dated_training(tmp_path)
    assert "temporal" not in scan(train, items, workers=1).summary
    rep = scan(train, items, workers=1, train_cutoff="2024-01-01")
    assert rep.summary["temporal"]["totals"] == {"n": 5, "at_risk": 0, "after_cutoff": 0, "undated": 5}


def test_training_dates_from_csv_and_parquet_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    items = suite_items(str(dated_suite(tmp_path)), dates=True)
    rows = training_rows()
    csv = tmp_path / "train.csv"
    pcsv.write_csv(pa.table({"prompt": [r["prompt"] for r in rows], "completion": [r["completion"] for r in rows],
                               "date": ["2023-01-02", "2024-01-01", None, "2023-05-06"]}), csv)
    pq_path = tmp_path / "train.parquet"
    pq.write_table(pa.table({"prompt": [r["prompt"] for r in rows], "completion": [r["completion"] for r in rows],
                             "date": [dt.date(2022, 1, 1), None, dt.date(2023, 12, 31), None]}), pq_path)
    for path, last, dated in [(csv, "2024-01-01", 3), (pq_path, "2023-12-31", 2)]:
        t = scan(path, items, workers=1).summary["temporal"]
        assert (t["cutoff"], t["training"]["dated_rows"]) == (last, dated), path.name


def test_bad_dates_are_one_line_with_file_and_line(tmp_path):
    suite = make_qa_suite(tmp_path / "bad", {"q1": {"date": "2024-01-05"}, "q3": {"date": "2024/02/30"}})
    with pytest.raises(ConfigError) as err:
        suite_items(str(suite), dates=True)
    assert str(err.value).startswith(f"{suite / 'data.jsonl'}:3: field 'date' of item 'q3': '2024/02/30' is not "
                                     "a YYYY-MM-DD date")
    rows = training_rows()
    rows[2]["date"] = "last spring"
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    good = dated_suite(tmp_path)
    with pytest.raises(HarnessError, match=r"^training data .*train.jsonl:3: field 'date': 'last spring' is not"):
        scan(train, suite_items(str(good), dates=True), workers=1)
    # the CLI: exit 2 and one line, for the items, the training rows and the flag (before any scan)
    for args, where in [(["--train", train, "--suite", suite], "data.jsonl:3:"),
                        (["--train", train, "--suite", good], "train.jsonl:3:"),
                        (["--train", train, "--suite", good, "--train-cutoff", "June"], "--train-cutoff:")]:
        res = _cli(*map(str, args), "--out", str(tmp_path / "out"))
        assert res.returncode == 2, res.stderr
        assert where in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_leaks_cli_prints_the_cutoff_and_the_split(tmp_path):
    out = tmp_path / "out"
    res = _cli("--train", str(dated_training(tmp_path)), "--suite", str(dated_suite(tmp_path)), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "temporal: cutoff 2024-06-30 (from training data)" in res.stdout
    assert "contaminated · qa: 1 input only, 3 input + answer" in res.stdout
    lines = [json.loads(x) for x in (out / "leaks.jsonl").read_text().splitlines()]
    assert [(r["label"], r.get("contamination"), r["temporal"]) for r in lines] == [
        ("contaminated", "input_answer", "at_risk"), ("contaminated", "input_only", "at_risk"),
        ("contaminated", "input_answer", "at_risk"), ("contaminated", "input_answer", "after_cutoff"),
        ("clean", None, "undated")]


def test_run_refuses_a_cutoff_without_training_data_before_loading(tmp_path, tiny_dir):
    from tests.test_run import cli

    suite = dated_suite(tmp_path)
    res = cli("run", tiny_dir, "--suite", suite, "--train-cutoff", "2024-01-01", "--out", tmp_path / "r", check=False)
    assert res.returncode == 2 and "--train-cutoff dates the training data, and this run has no --train" in res.stderr
    res = cli("run", tiny_dir, "--suite", suite, "--train", dated_training(tmp_path), "--train-cutoff", "1 June",
              "--out", tmp_path / "r", check=False)
    assert res.returncode == 2 and "--train-cutoff: '1 June' is not a YYYY-MM-DD date" in res.stderr


def test_ab_checks_dates_before_any_training(tmp_path, tiny_dir):
    from harness.log.folder import RunFolder
    from tests.test_run import cli

    bad = make_qa_suite(tmp_path / "bad", {"q2": {"date": "2024-02-30"}})
    train = dated_training(tmp_path)
    for args, where in [(["--suite", bad], "data.jsonl:2: field 'date' of item 'q2': '2024-02-30' is not a valid date"),
                        (["--suite", dated_suite(tmp_path), "--train-cutoff", "2024"], "--train-cutoff: '2024'")]:
        res = cli("ab", tiny_dir, "--train", train, *args, "--max-steps", 1, "--out", tmp_path / "ab", check=False)
        assert res.returncode == 2 and where in res.stderr, res.stderr
        assert not RunFolder(tmp_path / "ab").adapters.exists()  # nothing was trained


@pytest.mark.slow  # the tiny model answers 5 items for base and adapter: ~20 s on 2 CPU cores
def test_compare_tags_items_and_reports_the_split_and_the_dates(tmp_path, tiny_dir, tiny_lora):
    from harness.log.folder import RunFolder
    from tests.test_run import cli

    suite = dated_suite(tmp_path)
    policy = tmp_path / "gate.yaml"
    policy.write_text("rules:\n  - {name: qa-em, task: qa, metric: exact_match, max_drop: 100}\n")
    out = tmp_path / "run"
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--train", dated_training(tmp_path),
        "--train-cutoff", "2024-01-01", "--policy", policy, "--out", out, "--batch-size", 5, check=False)
    assert (out / "summary.md").is_file(), "compare did not gate"
    folder = RunFolder(out)
    tags = {(r.model, r.item_id): (r.leak, r.contamination, r.temporal) for r in folder.read_items()}
    want = {"q1": ("contaminated", "input_answer", "at_risk"), "q2": ("contaminated", "input_only", "at_risk"),
            "q3": ("contaminated", "input_answer", "after_cutoff"),
            "q4": ("contaminated", "input_answer", "after_cutoff"), "q5": ("clean", None, "undated")}
    assert tags == {(m, k): v for m in ("base", "ft") for k, v in want.items()}
    meta = folder.read_meta()
    assert meta.spec.train_cutoff == "2024-01-01"
    assert meta.leaks.temporal.cutoff == "2024-01-01" and meta.leaks.temporal.counts["qa"].at_risk == 2
    assert meta.leaks.counts["qa"].input_answer == 3 and meta.leaks.counts["qa"].input_only == 1
    sub = meta.leaks.subset_aggregates
    n = {s: sub[s]["suite"]["qa"]["ft"]["n"] for s in sub}
    assert n == {"contaminated": 4, "input_only": 1, "input_answer": 3, "at_risk": 2, "after_cutoff": 2, "undated": 1}
    items = folder.read_items()
    for s, ids in [("input_answer", ("q1", "q3", "q4")), ("at_risk", ("q1", "q2"))]:
        for model in ("base", "ft"):
            scores = [r.scores["exact_match"] for r in items if r.model == model and r.item_id in ids]
            assert sub[s]["suite"]["qa"][model]["exact_match"] == pytest.approx(sum(scores) / len(scores))
    summary = (out / "summary.md").read_text()
    assert "### Leak subsets" in summary and "| ft | qa | exact_match | contaminated: input + answer | 3 |" in summary
    assert "| ft | qa | exact_match | dated on/before cutoff (at risk) | 2 |" in summary
    html = (out / "report.html").read_text()
    assert "Temporal leakage" in html and "contaminated: input + answer" in html
