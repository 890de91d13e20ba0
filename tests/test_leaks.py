"""Leak detection: planted leaks with known ground truth, readers, errors, CLI, membership."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError, HarnessError
from harness.leaks import (EvalItem, FieldMap, LeakConfig, build_index, finish, label_map, load_leaks, parse_field_specs,
                           scan, scan_block, suite_items, write_leaks)
from harness.leaks.normalize import chunk_tokens, normalize, quote_span, tokens
from harness.leaks.ngrams import ngram_hashes, ngram_hashes_at, token_stream, within_rows
from harness.leaks import LABELS, Partial, add_membership, label_of

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- fixtures

_TOPICS = {
    "volcano": "magma crater eruption lava ash basalt plume vent caldera tremor summit slope".split(),
    "banking": "loan interest deposit ledger credit teller vault mortgage audit branch account rate".split(),
    "orchard": "apple pear blossom graft harvest ladder cider bough prune frost bee ripe".split(),
    "railway": "locomotive signal platform timetable carriage junction freight track sleeper boiler whistle depot".split(),
}
_GLUE = "the a of to and in was with for on by as near from after before".split()


def _sentence(rng: random.Random, topic: list[str], n: int) -> str:
    words = [rng.choice(topic) if rng.random() < 0.5 else rng.choice(_GLUE) for _ in range(n)]
    words += [f"{rng.choice(topic)}{rng.randint(10, 99)}"]  # a rare token keeps items distinct
    return " ".join(words).capitalize() + "."


def make_items(seed: int = 0) -> list[EvalItem]:
    """Twenty multi-sentence items, five per topic, sharing vocabulary within a topic."""
    rng = random.Random(seed)
    items = []
    for topic, vocab in _TOPICS.items():
        for k in range(5):
            text = " ".join(_sentence(rng, vocab, rng.randint(12, 16)) for _ in range(3))
            items.append(EvalItem("toy", f"{topic}-{k}", text, "suite"))
    return items


def filler(rng: random.Random, n_words: int = 60) -> str:
    vocab = [w for ws in _TOPICS.values() for w in ws] + _GLUE
    return " ".join(rng.choice(vocab) for _ in range(n_words)) + "."


def edit(text: str) -> str:
    """Casing, punctuation and two substituted words."""
    words = text.split()
    words[5] = "zebra"
    words[len(words) * 2 // 3] = "quartz"
    return " ".join(w.upper() if i % 4 == 0 else w for i, w in enumerate(words)).replace(".", "!")


def reorder(text: str) -> str:
    sents = [s.strip() for s in text.split(".") if s.strip()]
    return ". ".join(reversed(sents)) + "."


@pytest.fixture(scope="module")
def planted():
    """Items and training rows with known truth: row number of each planted copy."""
    items = make_items()
    by_id = {it.item_id: it for it in items}
    rng = random.Random(1)
    plants = {
        "volcano-0": ("verbatim", by_id["volcano-0"].text),
        "banking-1": ("verbatim", "Q: " + by_id["banking-1"].text.lower()),
        "orchard-2": ("edited", edit(by_id["orchard-2"].text)),
        "railway-3": ("reordered", reorder(by_id["railway-3"].text)),
        # near-topic: the item's own words shuffled, and new text on the same topic
        "volcano-4": ("near_topic", " ".join(rng.sample(words4 := by_id["volcano-4"].text.split(), len(words4)))),
        "banking-4": ("near_topic", _sentence(random.Random(99), _TOPICS["banking"], 40)),
    }
    rows, truth_rows = [], {}
    plant_at = {3: "volcano-0", 10: "banking-1", 17: "orchard-2", 25: "railway-3", 31: "volcano-4", 38: "banking-4"}
    for i in range(45):
        if i in plant_at:
            item_id = plant_at[i]
            rows.append(filler(rng, 20) + " " + plants[item_id][1] + " " + filler(rng, 20))
            truth_rows[item_id] = i
        else:
            rows.append(filler(rng))
    truth = {k: v[0] for k, v in plants.items()}
    return items, rows, truth, truth_rows


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def labels_of(report) -> dict[str, str]:
    return {r["item_id"]: r["label"] for r in report.records}


# --------------------------------------------------------------------------- normalisation


def test_normalisation_removes_casing_and_punctuation_but_keeps_words():
    assert tokens("Hello, WORLD!  It's 3.5 km_away") == [b"hello", b"world", b"it", b"s", b"3", b"5", b"km", b"away"]
    assert normalize("“Don’t” — CAFÉ…") == normalize("don't cafe\u0301") == "don t café"
    assert normalize("ﬁnd the Ａnswer") == "find the answer"
    # the chunk path gives the same tokens as one call per row, with one separator per row gap
    texts = ["A b, c", "", "Ünïcode — ok", "x\x01y"]
    toks = chunk_tokens(texts)
    assert [t for t in toks if t != b"\x01"] == [t for x in texts for t in tokens(x)]
    assert toks.count(b"\x01") == len(texts) - 1


def test_token_stream_rows_and_ngrams():
    ts = token_stream(["a b c", "", "d e", "f"])
    assert ts.row.tolist() == [0, 0, 0, 2, 2, 3]
    assert ts.row_start.tolist() == [0, 3, 3, 5, 6]
    h = ngram_hashes(ts.hashes, 2)
    pos = np.arange(len(h))
    assert np.array_equal(ngram_hashes_at(ts.hashes, pos, 2), h)
    assert within_rows(ts.row, pos, 2).tolist() == [True, True, False, True, False]


def test_vectorised_token_hashes_are_exactly_xxh64():
    import xxhash

    from harness.leaks.ngrams import SEED, hash_tokens

    rng = random.Random(5)
    toks = [bytes(rng.choice(b"abcxyz019\xc3\xa9") for _ in range(n)) for n in list(range(1, 70)) * 3]
    toks = [t.replace(b" ", b"_") for t in toks]
    want = np.array([xxhash.xxh64_intdigest(t, SEED) for t in toks], dtype=np.uint64)
    assert np.array_equal(hash_tokens(toks), want)
    ts = token_stream(["Hello, wörld!", "a-very-long-token-of-more-than-32-bytes" + "x" * 40])
    assert np.array_equal(ts.hashes, hash_tokens([t for x in ("Hello, wörld!", "a-very-long-token-of-more-than-32-bytes"
                                                                 + "x" * 40) for t in tokens(x)]))


def test_quote_span_maps_tokens_back_to_original_text():
    text = "Intro words. The CAPITAL of France, is Paris!"
    assert quote_span(text, 2, 8) == "The CAPITAL of France, is Paris"


# --------------------------------------------------------------------------- detectors on planted data


@pytest.fixture(scope="module")
def planted_report(planted, tmp_path_factory):
    items, rows, _, _ = planted
    path = write_jsonl(tmp_path_factory.mktemp("train") / "train.jsonl", [{"text": r} for r in rows])
    return scan(path, items, workers=1), path


def test_planted_leaks_get_the_right_labels(planted, planted_report):
    _, _, truth, _ = planted
    report, _ = planted_report
    labels = labels_of(report)
    for item_id, kind in truth.items():
        want = "clean" if kind == "near_topic" else "contaminated"
        assert labels[item_id] == want, (item_id, kind, report.records)
    untouched = [k for k in labels if k not in truth]
    assert all(labels[k] == "clean" for k in untouched), {k: labels[k] for k in untouched if labels[k] != "clean"}


def test_each_detector_reports_its_evidence(planted, planted_report):
    items, rows, _, truth_rows = planted
    report, path = planted_report
    rec = {r["item_id"]: r for r in report.records}
    text = {it.item_id: it.text for it in items}

    v = rec["volcano-0"]  # verbatim: every n-gram rule fires, evidence quotes the row
    assert v["detectors"]["gpt3"]["hit"] and v["detectors"]["gpt3"]["longest_match"] == v["tokens"]
    assert v["detectors"]["palm"]["coverage"] == 1.0 and v["detectors"]["llama2"]["category"] == "dirty"
    ev = [e for e in v["evidence"] if e["detector"] == "ngram"][0]
    assert ev["row"] == truth_rows["volcano-0"] and ev["line"] == ev["row"] + 1 and ev["source"] == str(path)
    assert normalize(ev["span"]) == normalize(text["volcano-0"])
    assert ev["item_tokens"] == [0, v["tokens"]]

    e = rec["orchard-2"]  # edited: n-gram coverage breaks, MinHash still finds it
    assert not e["detectors"]["palm"]["hit"]
    assert e["detectors"]["minhash"]["hit"] and 0.5 <= e["detectors"]["minhash"]["jaccard"] < 1.0
    mh = [x for x in e["evidence"] if x["detector"] == "minhash"][0]
    assert mh["row"] == truth_rows["orchard-2"] and "QUARTZ" in mh["span"].upper()

    r = rec["railway-3"]  # reordered: coverage stays high though no run spans the whole item
    assert r["detectors"]["llama2"]["coverage"] > 0.8
    assert r["detectors"]["gpt3"]["longest_match"] < r["tokens"]

    n = rec["volcano-4"]  # bag of the item's own words: no n-gram, no near-duplicate
    assert n["detectors"]["gpt3"]["longest_match"] == 0 and not n["detectors"]["minhash"]["hit"]
    assert n["evidence"] == []


def test_summary_counts_hash_and_config(planted, planted_report):
    report, path = planted_report
    s = report.summary
    import hashlib

    assert s["training"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s["training"]["files"][0]["rows"] == 45
    assert s["counts"]["toy"]["n"] == 20
    assert sum(s["counts"]["toy"][lab] for lab in LABELS) == 20
    assert s["totals"]["contaminated"] == 4
    assert s["config"]["gpt3_n"] == 13 and "contaminated" in s["label_rule"]


def test_two_workers_give_identical_records(planted, tmp_path):
    items, rows, _, _ = planted
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": r} for r in rows])
    cfg = LeakConfig(chunk_bytes=2048)  # many small blocks, so rows resolve across blocks
    one = scan(path, items, cfg, workers=1)
    two = scan(path, items, cfg, workers=2)
    assert one.records == two.records


def test_map_step_partials_merge_like_the_local_scan(planted, planted_report):
    """The distributed shape: broadcast index, scan_block per block, merge, finish."""
    items, rows, _, _ = planted
    report, path = planted_report
    index = build_index(items)
    whole = scan_block(rows, index)
    parts = []
    for k in range(0, len(rows), 7):
        part = scan_block(rows[k:k + 7], index, source=0, seq=k)
        part.rows[(0, k)] = (k, len(rows[k:k + 7]))  # first row id of the block, rows in it
        parts.append(part)
    merged = Partial()
    for part in reversed(parts):  # order does not matter
        merged = merged.merge(part)
    assert np.array_equal(whole.palm, merged.palm) and np.array_equal(whole.llama, merged.llama)
    assert whole.longest == merged.longest and set(whole.minhash) == set(merged.minhash)
    from harness.leaks.io import open_source

    done = finish([merged], index, [open_source(path)])
    assert [(r["item_id"], r["label"], r["evidence"]) for r in done.records] == \
        [(r["item_id"], r["label"], r["evidence"]) for r in report.records]


def test_short_items_and_boilerplate_do_not_crash(tmp_path):
    items = [EvalItem("t", "short", "Paris", "suite"), EvalItem("t", "empty", "", "suite"),
             EvalItem("t", "long", "one two three four five six seven eight nine ten eleven twelve thirteen", "suite")]
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "Paris"}, {"text": ""}, {"text": items[2].text}])
    rep = scan(path, items, workers=1)
    # A row that is the whole one-token item is an exact copy (issue #16: it used to pass as clean).
    assert labels_of(rep) == {"short": "contaminated", "empty": "clean", "long": "contaminated"}


# --------------------------------------------------------------------------- readers


def _forms(rows: list[str]):
    """The same training text in the three record forms."""
    def split(r):
        words = r.split(" ")
        return " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2:])

    pc = [dict(zip(("prompt", "completion"), split(r))) for r in rows]
    msgs = [{"messages": [{"role": "user", "content": a}, {"role": "assistant", "content": b}]} for a, b in map(split, rows)]
    return [{"text": r} for r in rows], pc, msgs


def test_every_format_and_form_finds_the_same_leaks(planted, tmp_path):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    items, rows, truth, truth_rows = planted
    text, pc, msgs = _forms(rows)
    paths = {
        "jsonl": write_jsonl(tmp_path / "a.jsonl", text),
        "jsonl.gz": tmp_path / "b.jsonl.gz",
        "txt": tmp_path / "c.txt",
        "csv": tmp_path / "d.csv",
        "parquet": tmp_path / "e.parquet",
        "arrow": tmp_path / "f.arrow",
        "save_to_disk": tmp_path / "g",
    }
    with gzip.open(paths["jsonl.gz"], "wt") as fh:
        fh.writelines(json.dumps(m) + "\n" for m in msgs)
    paths["txt"].write_text("\n".join(rows) + "\n")
    pd.DataFrame(pc).to_csv(paths["csv"], index=False)
    pq.write_table(pa.Table.from_pylist(msgs), paths["parquet"], row_group_size=10)
    table = pa.Table.from_pylist(pc)
    with pa.OSFile(str(paths["arrow"]), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=8)
    Dataset.from_list(text).save_to_disk(str(paths["save_to_disk"]))

    want = scan(paths["jsonl"], items, workers=1)
    for name, path in paths.items():
        got = scan(path, items, LeakConfig(chunk_bytes=4096), workers=1)
        assert labels_of(got) == labels_of(want), name
        rec = {r["item_id"]: r for r in got.records}
        ev = [e for e in rec["volcano-0"]["evidence"] if e["detector"] == "ngram"][0]
        assert ev["row"] == truth_rows["volcano-0"], name
        assert got.summary["training"]["files"][0]["rows"] == len(rows), name


def test_field_mapping_detected_and_explicit(tmp_path):
    from harness.leaks.io import open_source

    p = write_jsonl(tmp_path / "pc.jsonl", [{"question": "q", "answer": "a", "id": 1}])
    assert open_source(p).fields == FieldMap(prompt="question", completion="answer")
    p2 = write_jsonl(tmp_path / "conv.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    assert open_source(p2).fields.form == "messages"
    p3 = write_jsonl(tmp_path / "custom.jsonl", [{"body": "x", "title": "y"}])
    fm = parse_field_specs(["text=title", "body"])
    assert open_source(p3, fm).fields.text == ("title", "body")
    assert FieldMap(prompt="p", completion="c").row_text({"p": "Q?", "c": ["A", {"content": "B"}]}) == "Q?\nA\nB"
    roles = FieldMap(messages="m").row_text({"m": [{"role": "system", "content": "be brief"},
                                                   {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert roles == "be brief\nhi"


# --------------------------------------------------------------------------- errors


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "fix:" in msg, msg
    return msg


def test_bad_inputs_are_one_line_errors(tmp_path):
    items = make_items()[:2]
    with pytest.raises(HarnessError) as e:
        scan(tmp_path / "missing.jsonl", items)
    assert "no such file" in _one_line(e.value)

    p = write_jsonl(tmp_path / "t.jsonl", [{"body": "x", "title": "y"}])
    with pytest.raises(ConfigError) as e:
        scan(p, items, fields=FieldMap(text=("bdy",)))
    assert "did you mean 'body'" in _one_line(e.value) and "available: body, title" in str(e.value)
    with pytest.raises(ConfigError) as e:
        scan(p, items)
    assert "cannot tell which fields" in _one_line(e.value)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": broken\n')
    with pytest.raises(HarnessError) as e:
        scan(bad, items, workers=1)
    assert "bad.jsonl:3" in _one_line(e.value)
    with pytest.raises(HarnessError) as e:
        scan(bad, items, workers=2)
    assert "bad.jsonl:3" in _one_line(e.value)

    arr = tmp_path / "arr.json"
    arr.write_text('[{"text": "a"}]')
    with pytest.raises(ConfigError) as e:
        scan(arr, items)
    assert "JSON array" in _one_line(e.value)

    for name, content in (("x.xlsx", b"PK"), ("empty.jsonl", b""), ("broken.parquet", b"not parquet")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(HarnessError) as e:
            scan(tmp_path / name, items)
        _one_line(e.value)

    with pytest.raises(ConfigError) as e:
        parse_field_specs(["answer=x"])
    _one_line(e.value)
    txt = tmp_path / "t.txt"
    txt.write_text("a line\n")
    with pytest.raises(ConfigError) as e:
        scan(txt, items, fields=FieldMap(text=("body",)))
    assert "plain text" in _one_line(e.value)
    with pytest.raises(ConfigError):
        LeakConfig(palm_n=14)


def test_dataset_dict_folder_asks_for_a_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([{"text": "a"}]), "test": Dataset.from_list([{"text": "b"}])}).save_to_disk(
        str(tmp_path / "dd"))
    with pytest.raises(ConfigError) as e:
        scan(tmp_path / "dd", make_items()[:1])
    assert "several splits" in _one_line(e.value) and "dd/" in str(e.value)


# --------------------------------------------------------------------------- items, files, labels


def test_suite_items_use_example_ids_and_include_references():
    items = suite_items("data2text")
    from harness.evaluate.suites import load_suite

    ex = load_suite("data2text").examples()
    assert [it.item_id for it in items] == [e.id for e in ex]
    assert ex[0].references[0] in items[0].text and "The Olive Kettle" in items[0].text


def test_bench_items_ids_match_the_run_log():
    from harness.leaks import bench_items

    try:
        mmlu = bench_items("mmlu", limit=2)
        hs = bench_items("hellaswag", limit=3)
        arc = bench_items("arc_easy", limit=2)
    except HarnessError as exc:  # assets not pulled
        pytest.skip(str(exc))
    assert mmlu[0].item_id == "abstract_algebra:0" and mmlu[1].item_id == "abstract_algebra:1"
    assert len({it.item_id.split(":")[0] for it in mmlu}) == len(mmlu) // 2
    assert hs[0].item_id == "24:0" and "[" not in hs[0].text  # ind:row, unique
    assert arc[0].item_id == "MCAS_2000_4_6" and "cellular telephone" in arc[0].text
    # gold answers are marked for the answer-only rule
    assert arc[0].text[slice(*arc[0].answers[0])] == "cellular telephone"
    assert hs[0].text[slice(*hs[0].answers[0])] == "starts pulling up roofing on a roof."
    assert mmlu[1].text[slice(*mmlu[1].answers[0])] == "24"  # abstract_algebra:1, gold option 2
    from harness.leaks import is_bench_task

    assert is_bench_task("hellaswag") and is_bench_task("mmlu_anatomy")
    assert not is_bench_task("mmlu_stem") and not is_bench_task("gsm8k")
    anatomy = bench_items("mmlu_anatomy", limit=1)
    assert anatomy[0].task == "mmlu_anatomy" and anatomy[0].item_id == "anatomy:0"
    with pytest.raises(ConfigError) as e:
        bench_items("mmlu_anatomyy")
    assert "did you mean 'mmlu_anatomy'" in _one_line(e.value)
    with pytest.raises(ConfigError) as e:
        bench_items("helaswag")
    assert "did you mean 'hellaswag'" in _one_line(e.value)


def test_write_load_and_label_map(planted_report, tmp_path):
    report, _ = planted_report
    write_leaks(tmp_path, report)
    back = load_leaks(tmp_path)
    assert back.records == json.loads(json.dumps(report.records))
    lines = (tmp_path / "leaks.jsonl").read_text().splitlines()
    assert len(lines) == 20 and all({"task", "item_id", "label", "evidence"} <= set(json.loads(x)) for x in lines)
    lm = label_map(back)
    assert lm[("toy", "volcano-0")] == "contaminated" and set(lm.values()) <= set(LABELS)
    # a key shared by two items (HellaSwag's duplicate `ind`) gets the worse label
    dup = type(report)([{"task": "t", "item_id": "1", "label": "clean"}, {"task": "t", "item_id": "1", "label": "suspect"}], {})
    assert label_map(dup) == {("t", "1"): "suspect"}
    with pytest.raises(HarnessError) as e:
        load_leaks(tmp_path / "nothing")
    _one_line(e.value)


def test_label_rule():
    base = {"gpt3": {"hit": False}, "palm": {"hit": False}, "llama2": {"category": "clean"},
            "minhash": {"hit": False}}
    assert label_of(base) == "clean"
    assert label_of({**base, "gpt3": {"hit": True}}) == "suspect"
    assert label_of({**base, "llama2": {"category": "not-clean"}}) == "suspect"
    assert label_of({**base, "min_k": {"flagged": True}}) == "suspect"
    assert label_of({**base, "llama2": {"category": "dirty"}}) == "contaminated"
    assert label_of({**base, "palm": {"hit": True}}) == "contaminated"
    assert label_of({**base, "minhash": {"hit": True}}) == "contaminated"
    assert label_of({**base, "answer": {"hit": True}}) == "contaminated"


# --------------------------------------------------------------------------- CLI


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", "leaks", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def test_cli_on_a_bundled_suite(tmp_path):
    items = {it.item_id: it for it in suite_items("data2text")}
    rng = random.Random(3)
    rows = [{"prompt": filler(rng), "completion": filler(rng)} for _ in range(30)]
    rows[7] = {"prompt": "Describe it.", "completion": items["d2t-0005"].text}
    ref = items["d2t-0010"]
    rows[12] = {"prompt": "Write one sentence.", "completion": ref.text[slice(*ref.answers[0])]}  # the target only
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    res = _cli("--train", str(train), "--suite", "data2text", "--out", str(out), "--workers", "2")
    assert res.returncode == 0, res.stderr
    assert "data2text" in res.stdout and "contaminated" in res.stdout
    recs = [json.loads(x) for x in (out / "leaks.jsonl").read_text().splitlines()]
    assert len(recs) == len(items)
    by_id = {r["item_id"]: r for r in recs}
    assert by_id["d2t-0005"]["label"] == "contaminated"
    assert by_id["d2t-0005"]["evidence"][0]["row"] == 7
    target_only = by_id["d2t-0010"]
    assert target_only["label"] == "contaminated" and target_only["detectors"]["answer"]["hit"]
    assert not target_only["detectors"]["palm"]["hit"] and target_only["evidence"][0]["row"] == 12
    summary = json.loads((out / "leaks.json").read_text())
    assert summary["counts"]["data2text"]["contaminated"] >= 1 and summary["training"]["sha256"]


def test_cli_errors_are_one_line(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", [{"text": "x"}])
    for args, needle in (
        (["--train", str(train), "--bench", "helaswag", "--out", str(tmp_path)], "did you mean 'hellaswag'"),
        (["--train", str(train), "--suite", "data2txt", "--out", str(tmp_path)], "did you mean 'data2text'"),
        (["--train", str(train), "--out", str(tmp_path)], "nothing to check"),
        (["--train", str(train), "--suite", "data2text", "--field", "text=txt", "--out", str(tmp_path)], "did you mean 'text'"),
        (["--train", str(tmp_path / "none.jsonl"), "--suite", "data2text", "--out", str(tmp_path)], "no such file"),
        (["--train", str(train), "--suite", "data2text", "--membership", "--out", str(tmp_path)], "--model"),
    ):
        res = _cli(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr


# --------------------------------------------------------------------------- membership


def test_robust_z_flags_a_planted_outlier():
    from harness.leaks.membership import robust_z

    rng = np.random.default_rng(0)
    shifts = rng.normal(0.05, 0.01, size=200)
    shifts[17] = 0.5
    z = robust_z(shifts)
    assert z[17] > 3.5 and np.sum(z > 3.5) <= 2
    assert robust_z(np.array([1.0, 1.0, 1.0])).tolist() == [0.0, 0.0, 0.0]


def test_membership_min_k_on_tiny_model(tiny_dir, tiny_lora, planted_report):
    from harness.evaluate import models
    from harness.leaks.membership import membership

    report, _ = planted_report
    items = make_items()
    bundle = models.load(str(tiny_dir), [str(tiny_lora)], probe=False)
    result = membership(bundle, items, k=0.2)
    assert len(result.per_item) == len(items)
    first = result.per_item[0]
    assert first["base"] < 0 and first["adapter"] < 0
    assert first["shift"] == pytest.approx(first["adapter"] - first["base"], abs=1e-3)
    assert result.summary["per_task"]["toy"]["n"] == len(items) and result.summary["adapter"]
    # a different LoRA changes scores: the signal is adapter-specific
    assert any(abs(p["shift"]) > 1e-6 for p in result.per_item)

    # flagged items become at least suspect; contaminated ones stay contaminated
    rep = type(report)(json.loads(json.dumps(report.records)), json.loads(json.dumps(report.summary)))
    fake = type(result)(items, [dict(p, flagged=(i in (0, 19))) for i, p in enumerate(result.per_item)], result.summary)
    add_membership(rep, fake)
    lab = labels_of(rep)
    assert lab["volcano-0"] == "contaminated" and lab["railway-4"] == "suspect"
    assert rep.summary["detectors"]["min_k"]["flagged"] == 2
    assert any(e["detector"] == "min_k" for e in rep.records[19]["evidence"])


@pytest.mark.slow
def test_benchmark_script_runs_small(tmp_path):
    res = subprocess.run([sys.executable, "bench/leaks.py", "--size-mb", "3", "--items", "3000", "--leaks", "100",
                          "--tmp", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "n-gram rules only" in res.stdout and "MB/s" in res.stdout and "label contaminated" in res.stdout
