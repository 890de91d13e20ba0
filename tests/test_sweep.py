"""`harness sweep`: grid parsing and its one-line errors, the Pareto front and the gain/forgetting
numbers on hand-made points, the report's chart, and one resumed sweep of two points on the
tiny model."""

from __future__ import annotations

import json
import math
import os
import re
from html import unescape

import pytest

from harness.analysis.pareto import dominates, pareto_front
from harness.analysis.tradeoff import tradeoff
from harness.errors import ConfigError
from harness.log.schema import RunMeta, SweepDoc, SweepPoint
from harness.sweep import read_sweep, write_summary
from harness.sweep_grid import build_grid, point_name
from tests.test_run import cli, make_suite
from tests.test_train import chat_rows, write_jsonl

# --------------------------------------------------------------------------- grid


def test_grid_from_yaml_and_set_is_the_cartesian_product(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("r: [4, 8]\nlearning-rate: ['1e-3', 5.0e-4]\nepochs: 2\n")
    g = build_grid(grid, ["target_modules=q_proj+v_proj,o_proj"])
    assert g.axes == {"rank": [4, 8], "lr": [0.001, 0.0005], "epochs": [2],
                      "target_modules": [["q_proj", "v_proj"], ["o_proj"]]}
    points = g.points()
    assert len(points) == 2 * 2 * 1 * 2
    assert points[0] == {"rank": 4, "lr": 0.001, "epochs": 2, "target_modules": ["q_proj", "v_proj"]}
    assert points[1] == {"rank": 4, "lr": 0.001, "epochs": 2, "target_modules": ["o_proj"]}
    assert points[-1] == {"rank": 8, "lr": 0.0005, "epochs": 2, "target_modules": ["o_proj"]}
    assert point_name(points[0]) == "rank=4_lr=0.001_epochs=2_target_modules=q_proj+v_proj"
    assert len({point_name(p) for p in points}) == 8


def test_grid_yaml_nested_module_lists_and_a_comma_string_are_one_value_each(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("target_modules: [[q_proj, v_proj], 'q_proj,k_proj,v_proj']\n")
    assert build_grid(grid, []).axes == {"target_modules": [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj"]]}


def _yaml(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("grid, sets, message", [
    (None, ["rank"], "--set 'rank' is not KEY=VALUE"),
    (None, ["rank=4,,8"], "has an empty value"),
    (None, ["rnak=4,8"], "unknown training setting 'rnak'"),
    (None, ["seed=0,1"], "'seed' cannot be swept"),
    (None, ["lr=0,1e-3"], "--set: lr: must be > 0.0 (got 0)"),
    (None, ["scheduler=linear,step"], "--set: scheduler: 'step' is not allowed"),
    (None, ["rank=4,4"], "--set: rank lists 4 twice"),
    (None, ["lr=1e-3,0.001"], "--set: lr lists 0.001 twice"),
    (None, ["rank=4", "rank=8"], "--set rank is given twice"),
    (None, ["patience=2"], "grid point patience=2: training config: early stopping"),
    (None, [], "the sweep has no grid"),
    ("r: [4]\nrank: [8]\n", [], "'rank' is already in the grid"),
    ("rank: [4]\n", ["r=8"], "--set: 'r' is already in the grid (as 'rank')"),
    ("- rank\n- lr\n", [], "a grid must be a mapping"),
    ("rank: []\n", [], "rank has no values"),
])
def test_bad_grid_is_one_line_error(tmp_path, grid, sets, message):
    with pytest.raises(ConfigError) as err:
        build_grid(_yaml(tmp_path, grid) if grid else None, sets)
    text = str(err.value)
    assert message in text and "\n" not in text and "; fix: " in text


def test_unknown_setting_suggests_the_right_one():
    with pytest.raises(ConfigError) as err:
        build_grid(None, ["rnak=4"])
    assert "did you mean 'rank'?" in err.value.hint


def test_bad_input_exits_2_before_any_training(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "arith", n=4)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(4, offset=100))
    cases = [(["--set", "rnak=4,8"], "unknown training setting 'rnak'"),
             (["--set", "rank=4", "--gain", "arith:acc"], "--gain arith:acc: task arith has no metric 'acc'"),
             (["--set", "rank=4", "--suite", tmp_path / "nope"], "nope"),
             (["--set", "rank=4", "--seeds", "a"], "--seeds 'a'")]
    for k, (extra, message) in enumerate(cases):
        out = tmp_path / f"sw{k}"
        args = ["sweep", tiny_dir, "--train", train, "--out", out]
        args += [] if "--suite" in extra else ["--suite", suite]
        proc = cli(*args, *extra, check=False)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], proc.stderr
        assert not (out / "points").exists()  # nothing trained, nothing written
    proc = cli("sweep", tiny_dir, "--train", train, "--set", "rank=4", "--out", tmp_path / "nosuite", check=False)
    assert proc.returncode == 2 and "a sweep needs a task to measure gain on" in proc.stderr


# --------------------------------------------------------------------------- Pareto front and trade-off


def test_pareto_front_on_hand_made_points():
    points = [(5.0, 1.0),   # on: nothing has gain >= 5 with forgetting <= 1 and beats it on one
              (5.0, 1.0),   # on: an exact tie with the first, neither dominates the other
              (5.0, 2.0),   # off: same gain as the first, more forgetting
              (6.0, 3.0),   # on: the highest gain of the measured points
              (4.0, 0.0),   # on: the least forgetting with the most gain among those
              (3.0, 0.0),   # off: (4, 0) has more gain at the same forgetting
              (2.0, 5.0),   # off: dominated by (5, 1) on both
              (None, 1.0),  # off: no gain measured
              (7.0, None)]  # off: no forgetting measured while others have it
    assert pareto_front(points) == [True, True, False, True, True, False, False, False, False]
    assert dominates((5, 1), (5, 2)) and dominates((6, 1), (5, 1)) and not dominates((5, 1), (5, 1))
    assert not dominates((6, 3), (4, 0)) and not dominates((4, 0), (6, 3))
    # Without benchmarks nobody has forgetting: the front is the highest gain (ties included).
    assert pareto_front([(1.0, None), (3.0, None), (3.0, None), (None, None)]) == [False, True, True, False]
    assert pareto_front([(float("nan"), 1.0), (0.0, 2.0)]) == [False, True]


def test_tradeoff_signs_and_means_by_hand():
    meta = RunMeta.model_validate({
        "metrics": {"answered_anyway": {"higher_is_better": False}},
        "aggregates": {
            "suites": {"arith": {"base": {"n": 4, "f1": 0.5, "answered_anyway": 0.5},
                                 "seed0": {"n": 4, "f1": 0.6, "answered_anyway": 0.25},
                                 "seed1": {"n": 4, "f1": 0.8, "answered_anyway": 0.75}}},
            "bench": {"hellaswag": {"base": {"n": 4, "acc": 0.5, "acc_norm": 0.25},
                                    "seed0": {"n": 4, "acc": 0.45, "acc_norm": 1.0},
                                    "seed1": {"n": 4, "acc": 0.4, "acc_norm": 1.0}},
                      "gsm8k": {"base": {"n": 4, "exact_match": 0.5},
                                "seed0": {"n": 4, "exact_match": 0.5},
                                "seed1": {"n": 4, "exact_match": 0.3}}}}})
    t = tradeoff(meta, "arith", "f1")
    assert t.seeds == 2
    # seed gains 10 and 30 points: mean 20, sample sd sqrt((10² + 10²) / (2 - 1))
    assert t.gain == pytest.approx(20.0) and t.gain_sd == pytest.approx(math.sqrt(200.0))
    # hellaswag drops 5 and 10 points on acc (acc_norm is not read); gsm8k (no acc) 0 and 20 on exact_match.
    assert t.per_task == pytest.approx({"hellaswag:acc": 7.5, "gsm8k:exact_match": 10.0})
    assert t.forgetting == pytest.approx((7.5 + 10.0) / 2)
    # A lower-is-better metric gains when it goes down: seed0 -25 points -> +25, seed1 +25 -> -25.
    assert tradeoff(meta, "arith", "answered_anyway").gain == pytest.approx(0.0)
    no_bench = RunMeta.model_validate({"aggregates": {"suites": meta.model_dump()["aggregates"]["suites"]}})
    assert tradeoff(no_bench, "arith", "f1").forgetting is None


# --------------------------------------------------------------------------- report


def test_summary_marks_the_front_and_the_report_draws_it(tmp_path):
    def done(name, gain, forgetting, rank):
        return SweepPoint(name=name, settings={"rank": rank}, status="done", run=f"points/{name}",
                          gain_points=gain, forgetting_points=forgetting, seconds=1.5)

    doc = SweepDoc(base="tiny", suites=["arith"], benches=["hellaswag"], seeds=[0], grid={"rank": [2, 4, 8, 16]},
                   gain_task="arith", gain_metric="f1",
                   points=[done("rank=2", 1.0, 0.5, 2), done("rank=4", 4.0, 2.0, 4), done("<img src=x>", 3.0, 3.0, 8),
                           SweepPoint(name="rank=16", settings={"rank": 16}, status="interrupted")])
    report = write_summary(tmp_path, doc, log=lambda m: None)
    saved = read_sweep(tmp_path)
    assert [p.on_front for p in saved.points] == [True, True, False, None]
    html = report.read_text()
    assert html.count("<svg") == 1 and 'class="pareto-front"' in html
    assert re.findall(r'<g class="(front|dominated)" data-points="([0-9,]+)">', html) == [
        ("dominated", "3"), ("front", "1"), ("front", "2")]
    assert "#2 rank=4: gain +4.00, forgetting +2.00 (on the Pareto front)" in html
    assert "<img src=x>" not in html and "&lt;img src=x&gt;" in html
    assert "script-src 'none'" in unescape(html) and "<script" not in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "interrupted" in html and html.count("on the front</span>") == 2


# --------------------------------------------------------------------------- end to end


def test_sweep_two_points_on_the_tiny_model_resumes(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "arith", n=4)
    train = write_jsonl(tmp_path / "train.jsonl", chat_rows(8, offset=100))  # disjoint from the eval items
    out = tmp_path / "sweep"
    args = ["sweep", tiny_dir, "--train", train, "--suite", suite, "--bench", "hellaswag", "--limit", 2,
            "--set", "rank=2,4", "--set", "max_steps=2", "--gain", "f1", "--out", out]
    first = cli(*args)
    doc = json.loads((out / "sweep.json").read_text())
    names = ["rank=2_max_steps=2", "rank=4_max_steps=2"]
    assert [p["name"] for p in doc["points"]] == names and all(p["status"] == "done" for p in doc["points"])
    for p, rank in zip(doc["points"], (2, 4)):
        run = out / "points" / p["name"]
        assert json.loads((run / "adapters" / "seed0" / "adapter_config.json").read_text())["r"] == rank
        agg = json.loads((run / "run.json").read_text())["aggregates"]
        f1 = agg["suites"]["arith"]
        assert p["gain_points"] == pytest.approx(100 * (f1["seed0"]["f1"] - f1["base"]["f1"]))
        hs = agg["bench"]["hellaswag"]
        assert p["forgetting_points"] == pytest.approx(100 * (hs["base"]["acc"] - hs["seed0"]["acc"]))
    expected_front = pareto_front([(p["gain_points"], p["forgetting_points"]) for p in doc["points"]])
    assert [p["on_front"] for p in doc["points"]] == expected_front
    html = (out / "report.html").read_text()
    drawn = {int(n) for kind, ns in re.findall(r'<g class="(front|dominated)" data-points="([0-9,]+)">', html)
             for n in ns.split(",") if kind == "front"}
    assert "<svg" in html and drawn == {i for i, on in enumerate(expected_front, 1) if on}
    assert 'href="points/rank=2_max_steps=2/report.html"' in html
    assert "gain (arith f1)" in first.stdout

    # Mark the second point interrupted: a re-run skips the first and restarts only the second,
    # whose adapter is reused (training.json untouched) and whose run is written again.
    first_run, second = out / "points" / names[0] / "run.json", out / "points" / names[1]
    state = json.loads((second / "point.json").read_text())
    (second / "point.json").write_text(json.dumps({**state, "status": "interrupted"}))
    stamps = {p: os.stat(p).st_mtime_ns for p in (first_run, second / "run.json",
                                                  second / "adapters" / "seed0" / "training.json")}
    again = cli(*args)
    assert f"point 1/2 {names[0]}: finished earlier, skipped" in again.stderr
    assert f"point 2/2 {names[1]}: restarting (it was interrupted)" in again.stderr
    assert again.stderr.count("training adapter") == 1 and "reusing it" in again.stderr
    assert os.stat(first_run).st_mtime_ns == stamps[first_run]
    assert os.stat(second / "run.json").st_mtime_ns > stamps[second / "run.json"]
    assert os.stat(second / "adapters" / "seed0" / "training.json").st_mtime_ns == \
        stamps[second / "adapters" / "seed0" / "training.json"]
    assert [p["status"] for p in json.loads((out / "sweep.json").read_text())["points"]] == ["done", "done"]
