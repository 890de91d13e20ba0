"""`harness train` on the tiny model: labels, formats, determinism, resume, validation,
early stopping, overlap refusal, data errors, CLI, training.json, loading the adapter."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError, HarnessError
from harness.train import TrainConfig, load_train_config, train_adapter
from harness.train.data import Sample, load_dataset
from harness.train.encode import IGNORE, encode_sample

HARNESS = [sys.executable, "-m", "harness.cli"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_rows(n: int = 24, offset: int = 0) -> list[dict]:
    return [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What is {i} plus {i}? Think of the sum."},
                                         {"role": "assistant", "content": str(2 * i)}]}
            for i in range(offset, offset + n)]


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture
def chat_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", chat_rows())


def cfg(tiny_dir, data, out, **kw) -> TrainConfig:
    base = dict(base=str(tiny_dir), data=data, out=out, batch_size=4, epochs=1, lr=5e-3, save_every=0, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def lora_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = lora_weights(a), lora_weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


# --------------------------------------------------------------------------- labels and formats


def test_chat_labels_cover_only_the_reply(tok):
    from harness.evaluate.suite_eval import encode_prompt
    from harness.types import Prompt

    s = Sample("a", "messages", messages=[{"role": "user", "content": "What is 2 plus 2?"},
                                         {"role": "assistant", "content": "4"}])
    enc = encode_sample(tok, s, "auto", 512)
    _, prompt_ids = encode_prompt(tok, Prompt(messages=(("user", "What is 2 plus 2?"),)))
    n = len(prompt_ids)
    assert enc.input_ids[:n] == prompt_ids  # exactly what evaluation feeds the model
    assert all(lab == IGNORE for lab in enc.labels[:n])
    reply = enc.input_ids[n:]
    assert enc.labels[n:] == reply and reply  # every completion token is labelled
    assert tok.decode(reply).startswith("4<|im_end|>")  # the end-of-turn marker is learned too
    assert enc.n_labelled == len(reply)


def test_multi_turn_labels_each_reply_and_masks_the_user_turns(tok):
    s = Sample("a", "messages", messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                         {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}])
    enc = encode_sample(tok, s, "chat", 512)
    labelled = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
    assert "Hello" in labelled and "Ciao" in labelled
    assert "Hi" not in labelled and "Bye" not in labelled and "user" not in labelled


def test_plain_prompt_completion_labels(tok):
    s = Sample("a", "prompt/completion", prompt="Q: 2+2?\nA:", completion=" 4")
    enc = encode_sample(tok, s, "auto", 512)
    n = len(tok("Q: 2+2?\nA:")["input_ids"])
    assert all(lab == IGNORE for lab in enc.labels[:n])
    assert enc.labels[n:] == enc.input_ids[n:]
    assert enc.input_ids[-1] == tok.eos_token_id  # learns to stop
    no_eos = encode_sample(tok, s, "plain", 512, add_eos=False)
    assert no_eos.input_ids[-1] != tok.eos_token_id


def test_prompt_completion_through_the_chat_template(tok):
    s = Sample("a", "prompt/completion", prompt="What is 2 plus 2?", completion="4")
    chat = encode_sample(tok, s, "chat", 512)
    as_messages = encode_sample(tok, Sample("a", "messages", messages=[
        {"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}]), "auto", 512)
    assert chat.input_ids == as_messages.input_ids and chat.labels == as_messages.labels


def test_a_long_prompt_loses_its_start_and_the_completion_survives(tok):
    s = Sample("a", "prompt/completion", prompt="word " * 40 + "What is 2 plus 2?", completion=" 4")
    full = encode_sample(tok, s, "plain", 512)
    cut = encode_sample(tok, s, "plain", 16)
    assert cut.truncated and not full.truncated and len(cut.input_ids) == 16
    assert cut.input_ids == full.input_ids[-16:] and cut.labels == full.labels[-16:]
    assert sum(x != -100 for x in cut.labels) == sum(x != -100 for x in full.labels) > 0


def test_text_form_trains_on_every_token_and_truncation_is_counted(tok):
    enc = encode_sample(tok, Sample("a", "text", text="one two three four five six seven"), "auto", 4)
    assert enc.truncated and len(enc.input_ids) == 4 and enc.labels == enc.input_ids
    with pytest.raises(ConfigError, match="text records"):
        encode_sample(tok, Sample("a", "text", text="x"), "chat", 64)


# --------------------------------------------------------------------------- data files


def test_reads_jsonl_csv_json_parquet_and_sharegpt(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    with open(tmp_path / "a.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["question", "answer"])
        w.writeheader()
        w.writerows(rows)
    (tmp_path / "a.json").write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.csv", "a.json", "a.parquet"):
        ds = load_dataset(tmp_path / name)
        assert ds.form == "prompt/completion" and ds.fields == {"prompt": "question", "completion": "answer"}
        assert [s.completion for s in ds.samples] == ["a0", "a1", "a2"]
    share = write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hi"},
                                                                   {"from": "gpt", "value": "yo"}]}])
    ds = load_dataset(share)
    assert ds.samples[0].messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    mapped = load_dataset(tmp_path / "a.jsonl", {"prompt": "answer", "completion": "question", "id": "answer"})
    assert mapped.samples[0].prompt == "a0" and mapped.samples[0].id == "a0"


@pytest.mark.parametrize("content, fields, pattern", [
    ('{"question": "q", "answer": "a"}\n', {"prompt": "qestion"}, r"no field 'qestion'.*did you mean 'question'"),
    ('{"question": "q", "answer": "a"}\n{"question": "q2"}\n', None, r"line 2: record has no field 'answer'"),
    ('{"a": 1, "b": 2}\n', None, "cannot tell the record form"),
    ('{"prompt": "q", "completion": "a"}\n{not json\n', None, r"train.jsonl:2: invalid JSON"),
    ('{"prompt": "q", "completion": ["a", "b"]}\n', None, "must be text"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', None, "no assistant turn"),
    ("", None, "no records"),
])
def test_bad_data_is_one_line_error(tmp_path, content, fields, pattern):
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_dataset(path, fields)
    assert "\n" not in str(err.value) and "fix:" in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file at all")
    with pytest.raises(ConfigError, match="cannot read data"):
        load_dataset(tmp_path / "bad.parquet")
    (tmp_path / "bad.jsonl.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(ConfigError, match="cannot read data"):
        load_dataset(tmp_path / "bad.jsonl.gz")
    with pytest.raises(ConfigError, match="no such file"):
        load_dataset(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match="data format"):
        load_dataset(tmp_path / "data.txt")


# --------------------------------------------------------------------------- config


def test_config_yaml_overrides_and_one_line_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("rank: 4\nlr: 1.0e-3\ndata: d.jsonl\ndtype: bf16\n")
    c = load_train_config(tmp_path / "c.yaml", lr=2e-3, base="m", out=None)
    assert c.rank == 4 and c.lr == 2e-3 and c.dtype == "bfloat16" and c.data == tmp_path / "d.jsonl" and c.out is None
    (tmp_path / "bad.yaml").write_text("rnak: 4\n")
    with pytest.raises(ConfigError, match="unknown setting 'rnak'.*did you mean 'rank'"):
        load_train_config(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("rank: 0\n")
    with pytest.raises(ConfigError, match="rank"):
        load_train_config(tmp_path / "bad2.yaml")
    with pytest.raises(ConfigError, match="patience"):
        load_train_config(None, patience=2)
    with pytest.raises(ConfigError, match="needs `data`"):
        train_adapter(TrainConfig(base="m", out=tmp_path / "o"))


# --------------------------------------------------------------------------- training


def test_same_seed_gives_identical_weights_and_a_complete_record(tmp_path, tiny_dir, chat_file):
    from harness.hashing import sha256_file
    from harness.evaluate.models import load_base

    a = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "a", dropout=0.1), progress=False)
    b = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "b", dropout=0.1), progress=False)
    c = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "c", dropout=0.1, seed=1), progress=False)
    assert same_weights(a.adapter_dir, b.adapter_dir)
    assert not same_weights(a.adapter_dir, c.adapter_dir)
    r = json.loads((tmp_path / "a" / "training.json").read_text())
    assert r == a.record
    assert r["data"]["sha256"] == sha256_file(chat_file) and r["data"]["form"] == "messages"
    assert r["base"]["sha256"] == load_base(str(tiny_dir))[2].sha256
    assert r["seed"] == 0 and r["config"]["rank"] == 8 and r["steps"] == 6 == len(r["loss_curve"])
    assert set(r["loss_curve"][0]) >= {"step", "loss", "lr"}
    assert r["tokens_per_s"] > 0 and r["wall_s"] > 0 and r["data"]["truncated"] == 0
    assert r["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert r["data_order"]["epoch_seeds"] == [0]
    assert r["loss_curve"][-1]["loss"] < r["loss_curve"][0]["loss"]


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path, tiny_dir, chat_file):
    val = write_jsonl(tmp_path / "val.jsonl", chat_rows(6, offset=100))
    kw = dict(epochs=2, grad_accum=2, dropout=0.1, val_data=val, eval_every=2, batch_size=3)
    full = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "full", **kw), progress=False)
    part = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "part", **kw), progress=False, stop_after_steps=3)
    assert not part.finished and (tmp_path / "part" / "checkpoints" / "step-000003").is_dir()
    assert not (tmp_path / "part" / "training.json").exists()
    with pytest.raises(HarnessError, match="unfinished training.*--resume"):
        train_adapter(cfg(tiny_dir, chat_file, tmp_path / "part", **kw), progress=False)
    part = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "part", **kw), progress=False, resume=True,
                         stop_after_steps=5)  # a second interruption, mid-epoch 2
    done = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "part", **kw), progress=False, resume=True)
    assert done.finished and done.record["resumed_from"] == [3, 5]
    assert same_weights(full.adapter_dir, done.adapter_dir)
    assert done.record["loss_curve"] == full.record["loss_curve"]
    with pytest.raises(HarnessError, match="other data or settings"):  # a changed setting cannot resume
        train_adapter(cfg(tiny_dir, chat_file, tmp_path / "part", **{**kw, "lr": 1e-3}), progress=False, resume=True)


def test_validation_loss_is_recorded(tmp_path, tiny_dir, chat_file):
    r = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o", val_fraction=0.25, eval_every=2), progress=False).record
    assert r["val"]["samples"] == 6 and r["data"]["train_samples"] == 18
    vals = [p for p in r["loss_curve"] if "val_loss" in p]
    assert [p["step"] for p in vals] == [2, 4, 5]  # every 2 steps, and at the end
    assert r["best_val_loss"] == min(p["val_loss"] for p in vals)


def test_early_stopping_stops_and_keeps_the_best_adapter(tmp_path, tiny_dir, chat_file):
    # min_delta far above any possible gain: every evaluation after the first is "no improvement"
    r = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o", epochs=3, val_fraction=0.25, eval_every=1,
                          patience=2, min_delta=100.0, save_every=1), progress=False).record
    assert r["stopped"] == "early_stopping" and r["steps"] == 3 and r["total_steps"] == 15
    assert r["best_step"] == 1 and r["saved_step"] == 1
    saved = lora_weights(tmp_path / "o")
    first = lora_weights(tmp_path / "o" / "checkpoints" / "step-000001") if (
        tmp_path / "o" / "checkpoints" / "step-000001").is_dir() else None
    assert first is None or all(bool((saved[k] == first[k]).all()) for k in saved)


def test_bf16_autocast_trains_a_float32_adapter(tmp_path, tiny_dir, chat_file):
    r = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o", dtype="bf16", max_steps=2), progress=False).record
    assert r["dtype"] == "bfloat16" and r["steps"] == 2 and r["stopped"] == "max_steps"
    import torch

    assert all(v.dtype == torch.float32 for v in lora_weights(tmp_path / "o").values())


def test_trained_adapter_loads_and_has_effect(tmp_path, tiny_dir, chat_file):
    from harness.evaluate.models import load

    train_adapter(cfg(tiny_dir, chat_file, tmp_path / "lora"), progress=False)
    bundle = load(str(tiny_dir), [str(tmp_path / "lora")], warn=lambda m: None)
    assert bundle.adapters["lora"].has_effect is True
    assert bundle.adapters["lora"].warnings == []


def test_out_folder_rules(tmp_path, tiny_dir, chat_file):
    first = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o"), progress=False)
    again = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o"), progress=False)
    assert again.reused and again.record == first.record
    with pytest.raises(HarnessError, match="already holds a finished adapter.*--force"):
        train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o", rank=4), progress=False)
    forced = train_adapter(cfg(tiny_dir, chat_file, tmp_path / "o", rank=4), progress=False, force=True)
    assert forced.record["lora"]["r"] == 4 and not forced.reused


# --------------------------------------------------------------------------- overlap with eval items


def make_suite(folder: Path, n: int = 6) -> Path:
    folder.mkdir(parents=True)
    write_jsonl(folder / "data.jsonl", [{"qid": f"q{i}", "question": f"What is the colour of box number {i}?",
                                         "answer": ["red"]} for i in range(n)])
    (folder / "suite.yaml").write_text(f"""\
name: {folder.name}
version: "1"
data: {{file: data.jsonl}}
fields: {{id: qid, references: answer}}
prompt: "Answer briefly. {{{{ question }}}}"
chat: true
generation: {{max_new_tokens: 4}}
metrics: [exact_match]
""")
    return folder


def test_overlap_with_eval_items_is_refused_unless_allowed(tmp_path, tiny_dir):
    suite = make_suite(tmp_path / "boxes")
    rows = chat_rows(8)
    rows[2]["messages"][0]["content"] = "answer briefly:  WHAT is the colour of box number 3?"  # copy, re-cased
    rows[5]["messages"][0]["content"] = "What is the colour of box number 4?"  # the bare question
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(HarnessError) as err:
        train_adapter(cfg(tiny_dir, data, tmp_path / "o", eval_suites=[str(suite)]), progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "2 of 6 items of suite 'boxes'" in msg and "q3" in msg and "q4" in msg
    assert "--allow-overlap" in msg
    assert not (tmp_path / "o").exists()  # refused before anything was written
    r = train_adapter(cfg(tiny_dir, data, tmp_path / "o", eval_suites=[str(suite)], allow_overlap=True),
                      progress=False).record
    assert r["overlap"]["allowed"] and sorted(r["overlap"]["suites"]["boxes"]["ids"]) == ["q3", "q4"]
    clean = write_jsonl(tmp_path / "clean.jsonl", chat_rows(8))
    r = train_adapter(cfg(tiny_dir, clean, tmp_path / "c", eval_suites=[str(suite)]), progress=False).record
    assert r["overlap"]["suites"]["boxes"]["overlapping"] == 0


# --------------------------------------------------------------------------- CLI


def cli(*args):
    return subprocess.run([*HARNESS, "train", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_cli_trains_resumes_and_reports_errors(tmp_path, tiny_dir, chat_file):
    out = tmp_path / "lora"
    common = [tiny_dir, "--data", chat_file, "--out", out, "--batch-size", 4, "--lr", "5e-3", "-q"]
    p = cli(*common, "--stop-after", 2)
    assert p.returncode == 0, p.stderr
    assert "stopped at step 2 of 6" in p.stdout
    p = cli(*common)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--resume" in p.stderr
    p = cli(*common, "--resume")
    assert p.returncode == 0, p.stderr
    assert "resuming from step-000002" in p.stderr and f"adapter: {out}" in p.stdout
    record = json.loads((out / "training.json").read_text())
    assert record["command"][:2] == ["harness", "train"] and record["resumed_from"] == [2]
    p = cli(*common, "--rank", 4)
    assert p.returncode == 2 and "--force" in p.stderr
    p = cli(tiny_dir, "--data", tmp_path / "nope.jsonl", "--out", tmp_path / "x")
    assert p.returncode == 2 and p.stderr.startswith("error: ") and "no such file" in p.stderr
    p = cli(tiny_dir, "--data", chat_file, "--out", tmp_path / "x", "--field", "messages=mesages")
    assert p.returncode == 2 and "did you mean 'messages'" in p.stderr
    p = cli(tiny_dir, "--data", chat_file, "--out", tmp_path / "x", "--lr", "-1")
    assert p.returncode == 2 and "lr" in p.stderr


# --------------------------------------------------------------------------- demo split


def test_demo_split_is_disjoint_by_context_and_renders_like_the_suite(tmp_path):
    from harness.evaluate.suites import load_suite
    from harness.train.demo_data import make_demo_split

    split = make_demo_split(tmp_path / "demo", n_train=40, n_val=8, n_eval=30)
    again = make_demo_split(tmp_path / "again", n_train=40, n_val=8, n_eval=30)
    assert split.train_file.read_bytes() == again.train_file.read_bytes()  # deterministic
    squad = load_suite("squad-qa")
    by_id = {ex.id: ex for ex in squad.examples() + squad.fewshot_pool()}  # the demo draws from all of SQuAD
    heldout = load_suite(split.suite_dir)
    eval_ids = [ex.id for ex in heldout.examples()]
    assert eval_ids == split.eval_ids and len(eval_ids) >= 30
    train = [json.loads(x) for x in split.train_file.read_text().splitlines()]
    val = [json.loads(x) for x in split.val_file.read_text().splitlines()]
    contexts = {side: {by_id[i].vars["context"] for i in ids} for side, ids in
                (("eval", eval_ids), ("train", [r["id"] for r in train]), ("val", [r["id"] for r in val]))}
    assert not contexts["eval"] & contexts["train"] and not contexts["eval"] & contexts["val"]
    assert not contexts["train"] & contexts["val"]
    for ex in heldout.examples()[:5]:  # same prompt, generation and metrics as squad-qa
        assert heldout.render(ex) == squad.render(by_id[ex.id])
    assert heldout.generation == squad.generation and heldout.metric_names == squad.metric_names
    row = train[0]
    ex = by_id[row["id"]]
    assert row["messages"][0] == {"role": "user", "content": squad.render(ex).messages[0][1]}
    assert row["messages"][1]["content"] == min(ex.references, key=len)
    from harness.train.overlap import exact_overlap

    samples = load_dataset(split.train_file).samples
    assert exact_overlap(samples, heldout) == []
    pool = {ex.id for ex in squad.fewshot_pool()}  # squad-qa's few-shot pool is not evaluated
    in_suite = [r for r in train if r["id"] not in pool]
    assert in_suite and len(exact_overlap(samples, squad)) == len(in_suite)  # the full suite does contain them


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(tmp_path, tiny_dir, chat_file):
    import signal
    import time

    common = [tiny_dir, "--data", chat_file, "--batch-size", 2, "--epochs", 8, "--dropout", 0.1, "-q",
              "--save-every", 0]
    ref = cli(*common, "--out", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "int"
    proc = subprocess.Popen([*HARNESS, "train", *map(str, common), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not out.is_dir() and proc.poll() is None:
        time.sleep(0.05)  # the output folder appears when the training loop starts
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "checkpoint" in err and "--resume" in err
    p = cli(*common, "--out", out, "--resume")
    assert p.returncode == 0, p.stderr
    record = json.loads((out / "training.json").read_text())
    assert len(record["resumed_from"]) == 1 and record["resumed_from"][0] > 0
    assert same_weights(tmp_path / "ref", out)
