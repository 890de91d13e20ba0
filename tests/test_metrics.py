"""Metrics: hand-checked values, corpus vs sentence scores, evaluate: modules, registry."""

from __future__ import annotations

import textwrap

import pytest
import sacrebleu

from harness.errors import HarnessError
from harness.evaluate.metrics import METRICS, Metric, get_metric, metric_from_function, register_metric
from harness.evaluate.metrics.hf_evaluate import parse_spec
from harness.evaluate.metrics.sacrebleu_metrics import reference_streams
from harness.evaluate.metrics.squad import normalize_answer


def item(name: str, prediction: str, references: list[str]) -> float:
    return get_metric(name).score_items([prediction], [references])[0]


# --- SQuAD exact match / F1 -------------------------------------------------------------


def test_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("  The  U.S.A.,  an Apple!") == "usa apple"
    # "theatre" contains "the" but is not the article.
    assert normalize_answer("Theatre") == "theatre"


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        ("The Paris", ["paris"], 1.0),
        ("Paris!", ["paris"], 1.0),
        ("Paris, France", ["paris"], 0.0),
        ("blue sky", ["green grass", "Blue sky."], 1.0),  # max over references
        ("", ["paris"], 0.0),
    ],
)
def test_exact_match(prediction, references, expected):
    assert item("exact_match", prediction, references) == expected


@pytest.mark.parametrize(
    "prediction, references, expected",
    [
        # "big red barn" vs "red barn door": overlap 2, P = 2/3, R = 2/3 -> F1 = 2/3.
        ("the big red barn", ["a red barn door"], 2 / 3),
        # "red red barn" vs "red barn": repeated "red" counts once -> overlap 2,
        # P = 2/3, R = 2/2 -> F1 = 2 * (2/3) * 1 / (2/3 + 1) = 0.8.
        ("red red barn", ["red barn"], 0.8),
        # Best reference wins: vs "blue ocean" overlap 1, P = R = 1/2 -> 0.5; vs
        # "green grass" 0.
        ("blue sky", ["green grass", "blue ocean"], 0.5),
        ("The Paris", ["paris"], 1.0),
        ("", ["paris"], 0.0),
        ("london", ["paris"], 0.0),
        # Both normalise to nothing: F1 follows exact match (1.0), see squad.py.
        ("the", ["a"], 1.0),
    ],
)
def test_token_f1(prediction, references, expected):
    assert item("f1", prediction, references) == pytest.approx(expected)


def test_item_metric_aggregate_is_mean_of_items():
    m = get_metric("f1")
    preds, refs = ["the big red barn", "paris", "x"], [["a red barn door"], ["paris"], ["y"]]
    scores = m.score_items(preds, refs)
    assert m.corpus_level is False and m.higher_is_better is True
    assert m.aggregate(preds, refs, scores) == pytest.approx((2 / 3 + 1 + 0) / 3)


# --- ROUGE ------------------------------------------------------------------------------


def test_rouge_hand_computed():
    pred, ref = "the cat ran", ["the cat sat down"]
    # Unigrams: 2 shared ("the", "cat") of 3 predicted and 4 reference tokens:
    # P = 2/3, R = 1/2, F = 2PR / (P + R) = (2/3) / (7/6) = 4/7.
    assert item("rouge1", pred, ref) == pytest.approx(4 / 7)
    # Bigrams: "the cat" shared, 2 predicted, 3 reference: P = 1/2, R = 1/3 -> F = 0.4.
    assert item("rouge2", pred, ref) == pytest.approx(0.4)
    # Longest common subsequence "the cat" (2): same P and R as unigrams.
    assert item("rougeL", pred, ref) == pytest.approx(4 / 7)


def test_rouge_uses_stemmer_and_max_over_references():
    # Porter stemming maps cats -> cat, running/runs -> run.
    assert item("rouge1", "cats running", ["cat runs"]) == pytest.approx(1.0)
    assert item("rouge1", "the cat ran", ["dogs bark", "the cat sat down"]) == pytest.approx(4 / 7)
    assert item("rouge1", "", ["the cat"]) == 0.0


# --- BLEU / chrF ------------------------------------------------------------------------

# A long perfect item, a short perfect item (its second reference) and a one-word miss.
# Sentence scores are 1, 1, 0 (mean 2/3), but the miss is one token out of 16, so the
# pooled corpus statistics stay near 1: the two aggregates must differ by a lot.
PREDS = [
    "the quick brown fox jumps over the lazy dog near the river bank today",
    "hello world",
    "yes",
]
REFS = [
    ["the quick brown fox jumps over the lazy dog near the river bank today"],
    ["hello there world", "hello world"],
    ["no"],
]


@pytest.mark.parametrize("name, corpus_fn", [("bleu", sacrebleu.corpus_bleu),
                                               ("chrf", sacrebleu.corpus_chrf)])
def test_corpus_score_matches_sacrebleu_and_differs_from_item_mean(name, corpus_fn):
    m = get_metric(name)
    assert m.corpus_level is True
    scores = m.score_items(PREDS, REFS)
    corpus = m.aggregate(PREDS, REFS, scores)
    # Variable reference counts: the 1-reference items are padded with None.
    streams = [
        [r[0] for r in REFS],
        [r[1] if len(r) > 1 else None for r in REFS],
    ]
    assert corpus == pytest.approx(corpus_fn(PREDS, streams).score / 100)
    assert sum(scores) / len(scores) == pytest.approx(2 / 3)
    assert corpus > 0.95


def test_sentence_scores_match_sacrebleu():
    bleu = get_metric("bleu").score_items(PREDS, REFS)
    chrf = get_metric("chrf").score_items(PREDS, REFS)
    for p, refs, b, c in zip(PREDS, REFS, bleu, chrf):
        assert b == pytest.approx(min(1.0, sacrebleu.sentence_bleu(p, refs).score / 100))
        assert c == pytest.approx(sacrebleu.sentence_chrf(p, refs).score / 100)
    assert bleu[1] == pytest.approx(1.0)  # "hello world" matches its second reference
    assert 0.0 <= min(bleu + chrf) and max(bleu + chrf) <= 1.0


def test_multiple_references_count_in_corpus_bleu():
    m = get_metric("bleu")
    preds = ["the cat is on the mat"]
    one = m.aggregate(preds, [["there is a cat on the mat"]], [0.0])
    two = m.aggregate(preds, [["there is a cat on the mat", "the cat is on the mat"]], [0.0])
    assert one < two == pytest.approx(1.0)


def test_reference_streams_pad_with_none():
    assert reference_streams([["a"], ["b", "c"]]) == [["a", "b"], [None, "c"]]


# --- input checks -----------------------------------------------------------------------


def test_bad_inputs_raise_harness_error():
    m = get_metric("f1")
    with pytest.raises(HarnessError, match="2 predictions but 1 reference"):
        m.score_items(["a", "b"], [["a"]])
    with pytest.raises(HarnessError, match="item 0 has no references"):
        m.score_items(["a"], [[]])
    with pytest.raises(HarnessError, match="is a string"):
        m.score_items(["a"], ["a"])
    with pytest.raises(HarnessError, match="no items"):
        m.aggregate([], [], [])


# --- registry ---------------------------------------------------------------------------


def test_builtins_are_registered():
    for name in ("exact_match", "f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf"):
        m = get_metric(name)
        assert isinstance(m, Metric) and m.name == name and m.higher_is_better


def test_unknown_metric_suggests_close_name():
    with pytest.raises(HarnessError) as err:
        get_metric("f11")
    assert "did you mean 'f1'" in str(err.value)
    assert "evaluate:<name-or-path>" in str(err.value)


def test_register_plain_function_metric():
    name = "test_contains_answer"

    @register_metric(name)
    def contains(prediction, references):
        return float(any(r in prediction for r in references))

    try:
        m = get_metric(name)
        assert contains("xay", ["a"]) == 1.0  # the decorated function stays callable
        assert m.name == name and m.higher_is_better and not m.corpus_level
        assert m.score_items(["xay", "z"], [["a"], ["a"]]) == [1.0, 0.0]
        with pytest.raises(HarnessError, match="registered twice"):
            register_metric(name)(lambda p, r: 0.0)
    finally:
        METRICS.remove(name)


def test_metric_from_function_and_lower_is_better():
    m = metric_from_function(lambda p, refs: float(len(p)), "length", higher_is_better=False)
    assert m.name == "length" and m.higher_is_better is False
    preds, refs = ["ab", "abcd"], [["x"], ["x"]]
    assert m.aggregate(preds, refs, m.score_items(preds, refs)) == 3.0


# --- evaluate: modules ------------------------------------------------------------------

SINGLE_REF_SCRIPT = '''
import datasets
import evaluate


class ExactAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="exact string accuracy", citation="", inputs_description="",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        hits = sum(p == r for p, r in zip(predictions, references))
        return {"note": "not a number", "accuracy": hits / len(predictions),
                "hits": hits}
'''

MULTI_REF_SCRIPT = '''
import datasets
import evaluate


class AnyMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="prediction equals any reference", citation="", inputs_description="",
            features=datasets.Features({
                "predictions": datasets.Value("string"),
                "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        hits = sum(p in r for p, r in zip(predictions, references))
        return {"any_match": hits / len(predictions)}
'''


@pytest.fixture
def offline(monkeypatch):
    # Effective if `evaluate` is first imported in this test; the sandbox has no hub anyway.
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_script(tmp_path, name, text):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_evaluate_local_script_single_reference(tmp_path, offline):
    path = write_script(tmp_path, "exact_accuracy", SINGLE_REF_SCRIPT)
    m = get_metric(f"evaluate:{path}")
    assert m.name == f"evaluate:{path}" and m.higher_is_better and m.corpus_level
    preds = ["a", "b", "c"]
    refs = [["a"], ["x", "b"], ["y"]]  # item 2 matches its second reference
    scores = m.score_items(preds, refs)
    assert scores == [1.0, 1.0, 0.0]
    assert m.aggregate(preds, refs, scores) == pytest.approx(2 / 3)
    # Same spec -> same loaded module (loading is slow).
    assert get_metric(f"evaluate:{path}") is m


def test_evaluate_key_selection(tmp_path, offline):
    path = write_script(tmp_path, "exact_accuracy2", SINGLE_REF_SCRIPT)
    m = get_metric(f"evaluate:{path}:hits")
    assert m.aggregate(["a", "b"], [["a"], ["b"]], m.score_items(["a", "b"], [["a"], ["b"]])) == 2.0
    missing = get_metric(f"evaluate:{path}:nope")
    with pytest.raises(HarnessError, match="no numeric key 'nope'.*accuracy, hits"):
        missing.score_items(["a"], [["a"]])


def test_evaluate_local_script_multi_reference(tmp_path, offline):
    path = write_script(tmp_path, "any_match", MULTI_REF_SCRIPT)
    m = get_metric(f"evaluate:{path}")
    preds, refs = ["a", "b"], [["x", "a"], ["y"]]
    scores = m.score_items(preds, refs)
    assert scores == [1.0, 0.0]
    assert m.aggregate(preds, refs, scores) == 0.5


def test_evaluate_bad_path_is_one_line_error(tmp_path):
    with pytest.raises(HarnessError) as err:
        get_metric(f"evaluate:{tmp_path / 'missing.py'}")
    assert "\n" not in str(err.value)
    assert "no metric script" in str(err.value) and "missing.py" in str(err.value)


def test_evaluate_broken_script_is_one_line_error(tmp_path, offline):
    source = "import evaluate\nraise RuntimeError('boom\\ntwo')\n"
    path = write_script(tmp_path, "broken_metric", source)
    with pytest.raises(HarnessError) as err:
        get_metric(f"evaluate:{path}")
    message = str(err.value)
    assert "\n" not in message
    assert "cannot load evaluate module" in message and "local path" in message


def test_evaluate_folder_path_and_relative_path(tmp_path, offline, monkeypatch):
    folder = tmp_path / "exact_acc"
    folder.mkdir()
    write_script(folder, "exact_acc", SINGLE_REF_SCRIPT)
    monkeypatch.chdir(tmp_path)
    for spec in (f"evaluate:{folder}", "evaluate:./exact_acc/exact_acc.py:accuracy"):
        m = get_metric(spec)
        assert m.score_items(["a", "b"], [["a"], ["a"]]) == [1.0, 0.0]


def test_evaluate_unknown_hub_name_is_one_line_error(offline):
    with pytest.raises(HarnessError) as err:
        get_metric("evaluate:no_such_metric_for_harness_tests")
    assert "\n" not in str(err.value) and "local path" in str(err.value)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("evaluate:rouge", ("rouge", None)),
        ("evaluate:rouge:rougeL", ("rouge", "rougeL")),
        ("evaluate:./m/acc.py:accuracy", ("./m/acc.py", "accuracy")),
        ("evaluate:org/name:score", ("org/name", "score")),
        ("evaluate:C:\\m\\acc.py", ("C:\\m\\acc.py", None)),  # drive letter is no key
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected
