"""Suite loading, validation errors, rendering and the bundled suites (no model, no asset cache)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import AssetError, ConfigError
from harness.evaluate.suites import BUNDLED_DIR, Suite, list_suites, load_suite
from harness.types import Example, GenerationParams, Prompt

SQUAD_ROWS = [
    {"id": "q1", "title": "Harvard_University", "context": "Older than The Game by 23 years, the Regatta is old.",
     "question": "By how many years does the Regatta predate The Game?", "answers": ["23 years", "23", "23"]},
    {"id": "q2", "title": "Montana", "context": "Montana is a state in the Western United States.",
     "question": "Where is Montana?", "answers": ["the Western United States"]},
    {"id": "q3", "title": "Oxygen", "context": "Oxygen has the symbol O.",
     "question": "What is the symbol of oxygen?", "answers": ["O"]},
]
# squad-qa holds out the file's last 32 questions as its few-shot pool (suite.yaml `fewshot:`)
SQUAD_POOL_ROWS = [{"id": f"p{i}", "title": f"Pool_{i}", "context": f"Pool background number {i}.",
                    "question": f"Which pool background is this, {i}?", "answers": [str(i)]} for i in range(32)]

ACLSUM_ROWS = [
    {
        "id": "P19-1001",
        "title": "Pair Embeddings for Inference",
        "summary": {"challenge": "Word pairs matter.", "approach": "They learn pair embeddings.",
                    "outcome": "Accuracy improves."},
        "sentences": {
            "abstract": ["Reasoning about pairs ( e.g. paraphrases ) is crucial .",
                         "We gain 2.7 % on SQuAD , and 1.3 % on MultiNLI ."],
            "introduction": ["Intro ."], "conclusion": ["Done ."],
        },
    },
    {
        "id": "P19-1002",
        "title": "Another Paper",
        "summary": {"challenge": "C.", "approach": "A.", "outcome": "O."},
        "sentences": {"abstract": ["One sentence ."], "introduction": [], "conclusion": []},
    },
]


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def add_asset(home: Path, name: str, files: dict[str, list]) -> Path:
    folder = home / "assets" / name
    for fname, rows in files.items():
        write_jsonl(folder / fname, rows)
    (folder / ".harness-asset.json").write_text(json.dumps({"name": name}))  # what a pull leaves
    return folder


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty asset cache and no extra suite folders, for every test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HARNESS_HOME", str(home))
    monkeypatch.delenv("HARNESS_SUITES_PATH", raising=False)
    return home


@pytest.fixture
def assets(isolated):
    add_asset(isolated, "squad", {"squad.jsonl": SQUAD_ROWS + SQUAD_POOL_ROWS})
    add_asset(isolated, "aclsum", {"test.jsonl": ACLSUM_ROWS, "train.jsonl": [], "val.jsonl": []})
    return isolated


BASE = {
    "name": "toy",
    "version": "1",
    "description": "a toy suite",
    "data": {"file": "data.jsonl"},
    "fields": {"id": "id", "references": "answer", "vars": {"question": "q"}},
    "prompt": "Q: {{ question }}\nA:",
    "generation": {"max_new_tokens": 8, "stop": ["\n"]},
    "metrics": ["exact_match", "f1"],
}
ROWS = [{"id": "a", "q": "one?", "answer": "1"}, {"id": "b", "q": "two?", "answer": ["2", "two"]}]


def make_suite(root: Path, spec: dict | str | None = None, rows=ROWS, dirname: str = "toy", **changes) -> Path:
    """A suite folder `root/dirname` with suite.yaml (from BASE + changes, or raw text) and data."""
    folder = root / dirname
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, str):
        text = spec
    else:
        doc = json.loads(json.dumps(spec or BASE))
        doc.update(changes)
        text = yaml.safe_dump(doc, sort_keys=False)
    (folder / "suite.yaml").write_text(text, encoding="utf-8")
    if rows is not None:
        write_jsonl(folder / "data.jsonl", rows)
    return folder


def config_error(ref, trusted=()) -> str:
    """Load (and read the data of) a suite that must fail; return the one-line message."""
    with pytest.raises(ConfigError) as info:
        load_suite(ref, trusted_dirs=trusted).examples()
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert "; fix: " in msg, msg
    return msg


# --------------------------------------------------------------------------- bundled suites


def test_bundled_suites_are_found_by_name_and_listed():
    names = {s.name: s for s in list_suites()}
    assert {"squad-qa", "aclsum", "data2text"} <= set(names)
    for name in ("squad-qa", "aclsum", "data2text"):
        info = names[name]
        assert info.source == "bundled" and info.error is None and info.description
        assert info.path == BUNDLED_DIR / name
        assert (BUNDLED_DIR / name / "suite.yaml").is_file()
    assert names["data2text"].n_items == 200  # local jsonl data is counted
    assert names["squad-qa"].n_items is None  # its asset is not pulled in this test


def test_squad_qa_renders_chat_prompt_from_asset(assets):
    suite = load_suite("squad-qa")
    assert isinstance(suite, Suite) and suite.name == "squad-qa" and suite.path == BUNDLED_DIR / "squad-qa"
    assert suite.check() == 3
    exs = suite.examples()
    assert [e.id for e in exs] == ["q1", "q2", "q3"]
    assert exs[0].references == ("23 years", "23", "23")
    prompt = suite.render(exs[0])
    assert prompt.text is None
    (role, text), = prompt.messages
    assert role == "user"
    assert "Title: Harvard University\n" in text  # underscores of SQuAD titles are undone
    assert "Background: Older than The Game by 23 years" in text
    assert text.endswith("Question: By how many years does the Regatta predate The Game?")
    assert suite.generation == GenerationParams(max_new_tokens=24, stop=("\n",))
    assert suite.metric_names == ["exact_match", "f1"]


def test_aclsum_hook_detokenises_and_joins_summary(assets):
    suite = load_suite("aclsum")
    assert suite.check() == 2
    ex = suite.examples()[0]
    assert ex.id == "P19-1001"
    assert ex.references == ("Word pairs matter. They learn pair embeddings. Accuracy improves.",)
    (srole, _), (urole, text) = suite.render(ex).messages
    assert (srole, urole) == ("system", "user")
    assert "Title: Pair Embeddings for Inference" in text
    assert ("Abstract: Reasoning about pairs (e.g. paraphrases) is crucial. "
            "We gain 2.7% on SQuAD, and 1.3% on MultiNLI.") in text
    assert suite.metric_names == ["rouge1", "rouge2", "rougeL"]
    assert suite.generation.max_new_tokens == 96


def test_data2text_renders_every_fact_from_committed_data():
    suite = load_suite("data2text")
    exs = suite.examples()
    assert len(exs) == 200 and len({e.id for e in exs}) == 200
    for ex in exs:
        assert 4 <= len(ex.vars["facts"]) <= 6
        assert len(ex.references) == 2 and ex.references[0] != ex.references[1]
        (_, text), = suite.render(ex).messages
        assert text.startswith(f"Write one sentence that states all these facts about a {ex.vars['type']}:\n")
        for fact in ex.vars["facts"]:
            assert f"- {fact['attribute']}: {fact['value']}\n" in text
    assert suite.metric_names == ["bleu", "chrf"]
    assert suite.examples(limit=3) == exs[:3]


def test_make_data_reproduces_committed_data_byte_for_byte(tmp_path):
    folder = BUNDLED_DIR / "data2text"
    out = tmp_path / "regenerated.jsonl"
    subprocess.run([sys.executable, str(folder / "make_data.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_bytes() == (folder / "data.jsonl").read_bytes()
    out.write_bytes(out.read_bytes().replace(b"Utrecht", b"Utrecht!", 1))
    check = subprocess.run([sys.executable, str(folder / "make_data.py"), "--check", "--out", str(out)],
                           capture_output=True)
    assert check.returncode == 1


def test_bundled_asset_suite_reports_missing_asset():
    suite = load_suite("squad-qa")  # loading works before `harness assets pull`
    with pytest.raises(AssetError) as info:
        suite.examples()
    assert "suites/squad-qa/suite.yaml" in str(info.value) and "harness assets pull squad" in str(info.value)


# --------------------------------------------------------------------------- the suite object


def test_examples_rendering_and_fingerprint(tmp_path):
    folder = make_suite(tmp_path)
    suite = load_suite(folder)
    exs = suite.examples()
    assert exs == [
        Example(id="a", vars={"question": "one?"}, references=("1",), meta={"row": 0}),
        Example(id="b", vars={"question": "two?"}, references=("2", "two"), meta={"row": 1}),
    ]
    assert suite.examples(limit=1) == exs[:1]
    assert suite.render(exs[1]) == Prompt(text="Q: two?\nA:")

    fp = suite.fingerprint()
    assert fp["name"] == "toy" and fp["version"] == "1" and fp["metrics"] == ["exact_match", "f1"]
    assert fp["data_hash"] == hashlib.sha256((folder / "data.jsonl").read_bytes()).hexdigest() == suite.data_hash
    assert load_suite(folder / "suite.yaml").fingerprint() == fp  # same suite, same fingerprint

    make_suite(tmp_path, prompt="Question: {{ question }}\nA:")
    assert load_suite(folder).fingerprint()["prompt_hash"] != fp["prompt_hash"]
    make_suite(tmp_path, generation={"max_new_tokens": 9, "stop": ["\n"]})
    assert load_suite(folder).fingerprint()["prompt_hash"] != fp["prompt_hash"]
    make_suite(tmp_path, rows=ROWS[:1])
    assert load_suite(folder).fingerprint()["data_hash"] != fp["data_hash"]


def test_chat_with_system_and_default_vars(tmp_path):
    folder = make_suite(tmp_path, chat=True, system="Be brief.", version=2,
                        fields={"references": "answer"}, prompt="{{ q }} ({{ id }})")
    suite = load_suite(folder)
    assert suite.version == "2"  # an int version is read as a string
    ex = suite.examples()[0]
    assert ex.id == "0" and ex.vars == ROWS[0]  # default id: index; default vars: whole record
    assert suite.render(ex) == Prompt(messages=(("system", "Be brief."), ("user", "one? (a)")))


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl.gz"])
def test_data_formats(tmp_path, fmt):
    folder = make_suite(tmp_path, rows=None, data={"file": f"data.{fmt}"})
    rows = [{"id": "a", "q": "one?", "answer": "1"}, {"id": "b", "q": "two?", "answer": "2"}]
    if fmt == "json":
        (folder / "data.json").write_text(json.dumps(rows))
    elif fmt == "csv":
        (folder / "data.csv").write_text("id,q,answer\na,one?,1\nb,two?,2\n")
    else:
        with gzip.open(folder / "data.jsonl.gz", "wt") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    exs = load_suite(folder).examples()
    assert [(e.id, e.vars["question"], e.references) for e in exs] == [("a", "one?", ("1",)), ("b", "two?", ("2",))]


def test_dotted_paths_and_meta(tmp_path):
    rows = [{"doc": {"id": 7, "qs": [{"text": "why?"}]}, "gold": {"answers": ["because"]}, "subject": "x"}]
    folder = make_suite(tmp_path, rows=rows, fields={
        "id": "doc.id", "references": "gold.answers", "vars": {"question": "doc.qs.0.text"},
        "meta": {"subject": "subject"}})
    ex, = load_suite(folder).examples()
    assert ex == Example(id="7", vars={"question": "why?"}, references=("because",),
                         meta={"row": 0, "subject": "x"})


# --------------------------------------------------------------------------- validation errors


def test_unknown_top_level_key(tmp_path):
    doc = dict(BASE)
    doc["promt"] = doc.pop("prompt")
    folder = make_suite(tmp_path, doc)
    msg = config_error(folder)
    assert str(folder / "suite.yaml") in msg
    assert "promt: unknown key 'promt'" in msg and "did you mean 'prompt'?" in msg


def test_unknown_nested_key(tmp_path):
    folder = make_suite(tmp_path, generation={"max_tokens": 8})
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: generation.max_tokens: unknown key" in msg
    assert "did you mean 'max_new_tokens'?" in msg


@pytest.mark.parametrize("value", [0, -3])
def test_bad_max_new_tokens(tmp_path, value):
    folder = make_suite(tmp_path, generation={"max_new_tokens": value})
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: generation.max_new_tokens: must be > 0 (got {value})" in msg


def test_wrong_type_names_field(tmp_path):
    folder = make_suite(tmp_path, chat="sometimes")
    assert f"{folder / 'suite.yaml'}: chat: " in config_error(folder)


def test_missing_required_key(tmp_path):
    doc = dict(BASE)
    del doc["metrics"]
    folder = make_suite(tmp_path, doc)
    assert f"{folder / 'suite.yaml'}: metrics: required key is missing" in config_error(folder)


def test_unknown_metric_did_you_mean(tmp_path):
    folder = make_suite(tmp_path, metrics=["exact_match", "f11"])
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: metrics[1]: unknown metric 'f11'; did you mean 'f1'?" in msg


def test_evaluate_metric_is_accepted_without_loading(tmp_path):
    folder = make_suite(tmp_path, metrics=["evaluate:some/local/metric"])
    assert load_suite(folder).metric_names == ["evaluate:some/local/metric"]


def test_missing_data_file(tmp_path):
    folder = make_suite(tmp_path, data={"file": "missing.jsonl"})
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: data.file: {folder / 'missing.jsonl'} does not exist" in msg


def test_missing_file_inside_asset(assets, tmp_path):
    folder = make_suite(tmp_path, data={"asset": "squad", "path": "nope.jsonl"})
    msg = config_error(folder)
    assert "data.path:" in msg and "nope.jsonl" in msg and "squad.jsonl" in msg  # names what is there


def test_unknown_asset_name_is_caught_at_load(tmp_path):
    folder = make_suite(tmp_path, data={"asset": "squadd", "path": "squad.jsonl"})
    with pytest.raises(ConfigError) as info:
        load_suite(folder)
    assert f"{folder / 'suite.yaml'}: data.asset: unknown asset 'squadd'; did you mean 'squad'?" in str(info.value)


def test_single_stop_string(tmp_path):
    folder = make_suite(tmp_path, generation={"max_new_tokens": 4, "stop": "###"})
    assert load_suite(folder).generation == GenerationParams(max_new_tokens=4, stop=("###",))


def test_data_needs_exactly_one_source(tmp_path):
    folder = make_suite(tmp_path, data={"file": "data.jsonl", "asset": "squad"})
    assert f"{folder / 'suite.yaml'}: data: give exactly one of" in config_error(folder)


def test_template_syntax_error_names_line(tmp_path):
    text = """name: toy
version: "1"
data: {file: data.jsonl}
fields: {id: id, references: answer, vars: {question: q}}
prompt: |
  Answer this.
  Q: {{ question }
metrics: [f1]
"""
    folder = make_suite(tmp_path, text)
    msg = config_error(folder)
    # template line 2 is file line 7
    assert f"{folder / 'suite.yaml'}:7: prompt: template syntax error on line 2 of the template" in msg


def test_template_variable_not_mapped(tmp_path):
    folder = make_suite(tmp_path, prompt="Q: {{ qestion }}")
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: prompt: uses variable 'qestion'" in msg and "did you mean 'question'?" in msg


def test_undefined_variable_at_render_names_example(tmp_path):
    folder = make_suite(tmp_path, fields={"id": "id", "references": "answer"}, prompt="{{ nope }}")
    suite = load_suite(folder)
    with pytest.raises(ConfigError) as info:
        suite.render(suite.examples()[0])
    assert f"{folder / 'suite.yaml'}: prompt: 'nope' is undefined (example 'a')" in str(info.value)


def test_bad_field_path_names_record(tmp_path):
    rows = [{"id": "a", "q": "one?", "answer": "1"}, {"id": "b", "question": "two?", "answer": "2"}]
    folder = make_suite(tmp_path, rows=rows)
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: fields.vars.question: record 1 (line 2 of " in msg
    assert "has no 'q'" in msg


def test_bad_references_value(tmp_path):
    folder = make_suite(tmp_path, rows=[{"id": "a", "q": "x", "answer": []}])
    assert "fields.references: record 0" in config_error(folder)


def test_duplicate_ids(tmp_path):
    rows = [{"id": "a", "q": "1", "answer": "1"}, {"id": "b", "q": "2", "answer": "2"},
            {"id": "a", "q": "3", "answer": "3"}]
    folder = make_suite(tmp_path, rows=rows)
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: fields.id: duplicate id 'a' in record 2" in msg and "first at record 0" in msg


def test_yaml_syntax_error_names_line(tmp_path):
    text = 'name: toy\nversion: "1"\ndata: {file: data.jsonl\nmetrics: [f1]\n'
    folder = make_suite(tmp_path, text)
    msg = config_error(folder)
    assert msg.startswith(f"{folder / 'suite.yaml'}:4:") and "YAML syntax error" in msg


def test_invalid_data_line(tmp_path):
    folder = make_suite(tmp_path, rows=None)
    (folder / "data.jsonl").write_text('{"id": "a", "q": "x", "answer": "1"}\n{"id": "b",\n')
    assert f"{folder / 'data.jsonl'}:2: invalid JSON" in config_error(folder)


def test_system_needs_chat(tmp_path):
    folder = make_suite(tmp_path, system="hi")
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: system: `system` is only used with `chat: true`" in msg


# --------------------------------------------------------------------------- python hooks

HOOK = """
from pathlib import Path
from harness.evaluate.metrics import register_metric

Path(__file__).with_name("ran.txt").write_text("hook ran")

@register_metric("toy_contains_{tag}")
def contains(prediction, references):
    return float(any(r in prediction for r in references))

def prompt(vars):
    return "HOOK: " + vars["question"].upper()
"""


def hook_suite(tmp_path: Path, tag: str) -> Path:
    doc = dict(BASE)
    del doc["prompt"]  # the hook's prompt() renders instead
    folder = make_suite(tmp_path, doc, dirname=f"hooked-{tag}", name=f"hooked-{tag}", python="hooks.py",
                        metrics=[f"toy_contains_{tag}"])
    (folder / "hooks.py").write_text(HOOK.replace("{tag}", tag))
    return folder


def test_python_hook_refused_outside_trusted_dirs(tmp_path):
    folder = hook_suite(tmp_path, "refused")
    msg = config_error(folder)
    assert f"{folder / 'suite.yaml'}: python: this suite would run code from {folder / 'hooks.py'}" in msg
    assert f"--trust-code {folder}" in msg
    assert not (folder / "ran.txt").exists()  # nothing was executed
    other = tmp_path / "elsewhere"
    other.mkdir()
    config_error(folder, trusted=[other])


def test_python_hook_runs_when_trusted(tmp_path):
    folder = hook_suite(tmp_path, "trusted")
    suite = load_suite(folder, trusted_dirs=[tmp_path])  # a parent folder trusts its suites
    assert (folder / "ran.txt").read_text() == "hook ran"
    assert suite.metric_names == ["toy_contains_trusted"]
    assert suite.render(suite.examples()[0]) == Prompt(text="HOOK: ONE?")
    again = load_suite(folder, trusted_dirs=[folder])  # loading twice does not re-register
    assert again.fingerprint() == suite.fingerprint()
    from harness.evaluate.metrics import get_metric
    assert get_metric("toy_contains_trusted").name == "toy_contains_trusted"


def test_hook_transform_and_filters(tmp_path):
    folder = make_suite(tmp_path, python="hooks.py", prompt="{{ question | shout }}",
                        fields={"id": "id", "references": "gold", "vars": {"question": "question"}})
    (folder / "hooks.py").write_text(
        "def transform(r):\n    return {'id': r['id'], 'question': r['q'], 'gold': 'x' + str(r['answer'])}\n"
        "FILTERS = {'shout': lambda s: s.upper() + '!'}\n")
    suite = load_suite(folder, trusted_dirs=[folder])
    ex = suite.examples()[0]
    assert ex.references == ("x1",) and suite.render(ex) == Prompt(text="ONE?!")


def test_hook_path_must_stay_in_suite_folder(tmp_path):
    folder = make_suite(tmp_path, python="../evil.py")
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    assert "python: '../evil.py' is outside the suite folder" in config_error(folder, trusted=[tmp_path])


# --------------------------------------------------------------------------- lookup


def test_harness_suites_path_lookup(tmp_path, monkeypatch):
    extra = tmp_path / "mysuites"
    make_suite(extra, dirname="my-suite", name="my-suite")
    monkeypatch.setenv("HARNESS_SUITES_PATH", f"{tmp_path / 'nothing-here'}:{extra}")
    suite = load_suite("my-suite")
    assert suite.name == "my-suite" and suite.path == extra / "my-suite"
    listed = {s.name: s for s in list_suites()}
    assert listed["my-suite"].source == str(extra) and listed["my-suite"].n_items == 2
    assert listed["squad-qa"].source == "bundled"


def test_name_must_match_folder_when_found_by_name(tmp_path, monkeypatch):
    extra = tmp_path / "mysuites"
    make_suite(extra, dirname="folder-name")  # the YAML says name: toy
    monkeypatch.setenv("HARNESS_SUITES_PATH", str(extra))
    assert "name: 'toy' differs from its folder 'folder-name'" in config_error("folder-name")
    assert load_suite(extra / "folder-name").name == "toy"  # by path the folder name is free


def test_unknown_suite_name_did_you_mean():
    msg = config_error("squad-q")
    assert "unknown suite 'squad-q'; did you mean 'squad-qa'?" in msg and "harness suites list" in msg


def test_missing_suite_path(tmp_path):
    assert "no such suite file or folder" in config_error(str(tmp_path / "nope" / "suite.yaml"))
    (tmp_path / "empty").mkdir()
    assert "folder has no suite.yaml" in config_error(tmp_path / "empty")
