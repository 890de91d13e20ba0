"""Leak detection at scale: ~1 GB of synthetic training text with planted leaks.

    .venv/bin/python bench/leaks.py                     # 1 GB, 20k items, 2 workers
    .venv/bin/python bench/leaks.py --size-mb 50 --items 5000   # quick

Eval items are real MMLU / HellaSwag / ARC / SQuAD items from the offline assets (topped
up with synthetic ones if fewer are available), de-duplicated so that no two share an
8-gram. The training file is JSONL `{"text": ...}` of random sentences drawn from a
Zipfian vocabulary built from those items' own words, so common eval phrases do occur
by chance and exercise the prefilter. Planted, each in its own training row among
random sentences:

* verbatim:  the item text as is;
* edited:    casing and punctuation changes plus 1-3 word edits (substitute/insert/delete,
             about one per 12 words);
* reordered: the item's sentences (or lines: question and options) shuffled;
* near-topic (must stay clean): another item on the same subject/activity/article that
  is not in the eval set, or the item's own words shuffled into a bag of words.

Prints the generation and scan times, throughput, and precision and recall per detector
and leak kind. Two scans run on the same file: n-gram rules only (the "13-gram scan"),
then everything (n-gram rules + MinHash LSH).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.leaks import EvalItem, LeakConfig, bench_items, scan, suite_items  # noqa: E402
from harness.leaks.ngrams import ngram_hashes, text_hashes  # noqa: E402
from harness.leaks.normalize import tokens  # noqa: E402

KINDS = ("verbatim", "edited", "reordered", "near_topic")


# --------------------------------------------------------------------------- eval items


def _topic(it: EvalItem) -> str:
    if it.task == "mmlu":
        return "mmlu:" + it.item_id.split(":")[0]
    if it.task == "squad-qa":
        return "squad:" + it.meta.get("title", "")
    return it.task


def load_candidates(log) -> list[EvalItem]:
    cands: list[EvalItem] = []
    for task in ("mmlu", "hellaswag", "arc_easy", "arc_challenge"):
        try:
            got = bench_items(task)
        except Exception as exc:  # asset missing: synthetic items fill in
            log(f"  {task}: unavailable ({exc})")
            continue
        if task == "hellaswag":
            from harness.io import arrow_folder_files, iter_arrow_batches
            from harness.assets import asset_path

            labels = []
            for f in arrow_folder_files(asset_path("hellaswag") / "none" / "validation"):
                for b in iter_arrow_batches(f, ["activity_label"]):
                    labels += b.column(0).to_pylist()
            # ids are not unique in HellaSwag; the bench keys items by row instead
            got = [EvalItem(it.task, f"row{i}", it.text, it.kind, {"topic": f"hellaswag:{labels[i]}"})
                   for i, it in enumerate(got)]
        log(f"  {task}: {len(got)}")
        cands += got
    try:
        from harness.evaluate.suites import load_suite

        suite = load_suite("squad-qa")
        got = []
        for ex, it in zip(suite.examples(), suite_items(suite)):
            got.append(EvalItem(it.task, it.item_id, it.text, it.kind, {"title": ex.vars.get("title", "")}))
        log(f"  squad-qa: {len(got)}")
        cands += got
    except Exception as exc:
        log(f"  squad-qa: unavailable ({exc})")
    return cands


def dedupe(items: list[EvalItem]) -> list[EvalItem]:
    """Keep items sharing no 8-gram with an earlier kept item (clean ground truth)."""
    seen: set[int] = set()
    out = []
    for it in items:
        h = ngram_hashes(text_hashes(it.text), 8)
        if len(h) == 0:
            continue
        hs = set(h.tolist())
        if hs & seen:
            continue
        seen |= hs
        out.append(it)
    return out


def synthetic_items(n: int, vocab: list[str], rng: random.Random) -> list[EvalItem]:
    out = []
    for i in range(n):
        sents = [" ".join(rng.choice(vocab) for _ in range(rng.randint(8, 20))).capitalize() + "."
                 for _ in range(rng.randint(2, 4))]
        out.append(EvalItem("synthetic", f"syn{i}", " ".join(sents), "bench", {"topic": "synthetic"}))
    return out


# --------------------------------------------------------------------------- leaks


def edit(text: str, vocab: list[str], rng: random.Random) -> str:
    words = text.split()
    k = min(3, max(1, len(words) // 12))
    for _ in range(k):
        op = rng.choice(("sub", "sub", "ins", "del"))
        i = rng.randrange(len(words))
        if op == "sub":
            words[i] = rng.choice(vocab)
        elif op == "ins":
            words.insert(i, rng.choice(vocab))
        elif len(words) > 3:
            del words[i]
    out = []
    for w in words:
        r = rng.random()
        if r < 0.15:
            w = w.upper()
        elif r < 0.3:
            w = w.capitalize()
        elif r < 0.4:
            w = w.lower()
        r = rng.random()
        if r < 0.1:
            w = w.strip(".,;:!?\"'")
        elif r < 0.2:
            w += rng.choice((",", ";", " -", "!", "'"))
        out.append(w)
    return " ".join(out)


def sentences(text: str) -> list[str]:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+|\n+", text) if p.strip()]
    return parts


def reorder(text: str, rng: random.Random) -> str | None:
    parts = sentences(text)
    if len(parts) < 2:
        return None
    for _ in range(10):
        shuffled = parts[:]
        rng.shuffle(shuffled)
        if shuffled != parts:
            return " ".join(shuffled)
    return None


# --------------------------------------------------------------------------- training data


def make_vocab(items: list[EvalItem]) -> tuple[list[str], np.ndarray]:
    # Normalised tokens, not whitespace words: a "word" such as "x^{11}+10x^9" would put
    # whole eval n-grams into the random text.
    counts = collections.Counter()
    for it in items:
        counts.update(t.decode("utf-8") for t in tokens(it.text))
    words, freq = zip(*counts.most_common(50000))
    p = np.asarray(freq, dtype=np.float64)
    return list(words), p / p.sum()


def write_training(path: Path, size_bytes: int, vocab: list[str], p: np.ndarray, plants: list[str],
                   seed: int) -> int:
    """Random-sentence documents, with each planted text inside its own document."""
    rng = np.random.default_rng(seed)
    n_pool = 200_000
    lens = rng.integers(6, 24, size=n_pool)
    idx = rng.choice(len(vocab), size=int(lens.sum()), p=p)
    words = np.asarray(vocab, dtype=object)[idx]
    pool, off = [], 0
    for ln in lens.tolist():
        pool.append(" ".join(words[off:off + ln]).capitalize() + ".")
        off += ln
    avg_doc = 10
    avg_bytes = sum(len(s) for s in pool[:1000]) / 1000 * avg_doc + 12
    n_docs = max(int(size_bytes / avg_bytes), len(plants) + 1)
    plant_at = dict(zip(rng.choice(n_docs, size=len(plants), replace=False).tolist(), plants))
    written = 0
    picks = rng.integers(0, n_pool, size=(n_docs, 2 * avg_doc))
    doc_lens = rng.integers(2, 2 * avg_doc, size=n_docs)
    with open(path, "w", encoding="utf-8") as fh:
        buf = []
        for d in range(n_docs):
            sents = [pool[j] for j in picks[d, :doc_lens[d]]]
            if d in plant_at:
                sents.insert(int(rng.integers(0, len(sents) + 1)), plant_at[d])
            buf.append(json.dumps({"text": " ".join(sents)}))
            if len(buf) >= 4096:
                chunk = "\n".join(buf) + "\n"
                fh.write(chunk)
                written += len(chunk)
                buf = []
        if buf:
            chunk = "\n".join(buf) + "\n"
            fh.write(chunk)
            written += len(chunk)
    return written


# --------------------------------------------------------------------------- scoring


def score(records: list[dict], truth: dict[tuple[str, str], str]) -> list[tuple[str, dict]]:
    preds = {
        "gpt3 13-gram": lambda d, lab: d["gpt3"]["hit"],
        "palm 8-gram >=70%": lambda d, lab: d["palm"]["hit"],
        "llama2 dirty >80%": lambda d, lab: d["llama2"]["category"] == "dirty",
        "llama2 not clean >=20%": lambda d, lab: d["llama2"]["category"] != "clean",
        "gold answer >80%": lambda d, lab: d.get("answer", {}).get("hit", False),
        "minhash lsh": lambda d, lab: d.get("minhash", {}).get("hit", False),
        "label contaminated": lambda d, lab: lab == "contaminated",
        "label not clean": lambda d, lab: lab != "clean",
    }
    rows = []
    for name, fn in preds.items():
        flagged = collections.Counter()
        total = collections.Counter()
        for r in records:
            kind = truth.get((r["task"], r["item_id"]), "clean")
            total[kind] += 1
            if fn(r["detectors"], r["label"]):
                flagged[kind] += 1
        tp = sum(flagged[k] for k in ("verbatim", "edited", "reordered"))
        fp = flagged["near_topic"] + flagged["clean"]
        rows.append((name, {
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            **{f"recall_{k}": flagged[k] / total[k] if total[k] else float("nan") for k in ("verbatim", "edited", "reordered")},
            "fp_near_topic": flagged["near_topic"], "fp_other": flagged["clean"],
        }))
    return rows


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the scan's pool)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1024.0, help="training data size")
    ap.add_argument("--items", type=int, default=20000, help="eval items")
    ap.add_argument("--leaks", type=int, default=1000, help="planted items per leak kind")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="folder for the training file [default: system temp]")
    ap.add_argument("--keep", action="store_true", help="keep the training file")
    ap.add_argument("--skip-ngram-only", action="store_true", help="run only the full scan")
    ap.add_argument("--show-fp", type=int, default=0, help="print up to N false positives with their evidence")
    args = ap.parse_args()
    log = lambda m: print(m, flush=True)  # noqa: E731
    rng = random.Random(args.seed)

    t = time.perf_counter()
    log("eval items:")
    cands = load_candidates(log)
    rng.shuffle(cands)
    cands = dedupe(cands)
    vocab, p = make_vocab(cands or [EvalItem("x", "0", "the of and a to in is was for on")])
    need = args.items + args.leaks  # the rest is the near-topic pool
    if len(cands) < need:
        cands += dedupe(synthetic_items(need - len(cands), vocab[:5000], rng))
    items, pool = cands[:args.items], cands[args.items:]
    log(f"  {len(items)} eval items after de-duplication ({collections.Counter(i.task for i in items)}), "
        f"{len(pool)} held out for near-topic text; {time.perf_counter() - t:.1f}s")

    order = list(range(len(items)))
    rng.shuffle(order)
    truth: dict[tuple[str, str], str] = {}
    plants: list[str] = []
    by_topic = collections.defaultdict(list)
    for it in pool:
        by_topic[it.meta.get("topic") or _topic(it)].append(it)
    cursor = 0
    for kind in KINDS:
        made = 0
        while made < args.leaks and cursor < len(order):
            it = items[order[cursor]]
            cursor += 1
            if kind == "verbatim":
                text = it.text
            elif kind == "edited":
                text = edit(it.text, vocab[:20000], rng)
            elif kind == "reordered":
                text = reorder(it.text, rng)
                if text is None:
                    continue
            else:
                sib = by_topic.get(it.meta.get("topic") or _topic(it))
                if sib and rng.random() < 0.5:
                    text = sib.pop().text
                else:
                    words = it.text.split()
                    rng.shuffle(words)
                    text = " ".join(words)
            truth[it.key] = kind
            plants.append(text)
            made += 1
    log(f"planted: {collections.Counter(truth.values())}")

    tmp = Path(tempfile.mkdtemp(prefix="harness-leaks-", dir=args.tmp))
    try:
        train = tmp / "train.jsonl"
        t = time.perf_counter()
        size = write_training(train, int(args.size_mb * 1e6), vocab, p, plants, args.seed)
        log(f"training data: {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s -> {train}")

        runs = [] if args.skip_ngram_only else [("n-gram rules only", LeakConfig(minhash=False))]
        runs.append(("n-gram rules + MinHash LSH", LeakConfig()))
        for title, cfg in runs:
            t = time.perf_counter()
            cpu0 = _cpu()
            report = scan(train, items, cfg, workers=args.workers)
            wall = time.perf_counter() - t
            cpu = _cpu() - cpu0
            st = report.summary["stats"]
            # CPU seconds (this process + the pool's workers) do not depend on what else
            # runs on the machine; wall time on a shared machine does.
            log(f"\n== {title}: {wall:.1f}s wall ({st['index_s']:.1f}s index), {size / 1e6 / wall:.1f} MB/s, "
                f"{args.workers} workers, {cpu:.1f} CPU-s ({size / 1e6 / cpu:.1f} MB per CPU-s); "
                f"{st['rows']} rows, {st['tokens'] / 1e6:.0f}M tokens, "
                f"prefilter candidates {st['prefilter_candidates']}, hits {st['prefilter_hits']}, "
                f"runs {st['ngram_runs']}, minhash segments {st['minhash_segments']}")
            log(f"   labels: {report.summary['totals']}")
            log(f"   {'detector':24} {'precision':>9} {'verbatim':>9} {'edited':>9} {'reordered':>9} "
                f"{'fp near':>8} {'fp other':>8}")
            for name, m in score(report.records, truth):
                if cfg.minhash is False and name == "minhash lsh":
                    continue
                log(f"   {name:24} {m['precision']:9.3f} {m['recall_verbatim']:9.3f} {m['recall_edited']:9.3f} "
                    f"{m['recall_reordered']:9.3f} {m['fp_near_topic']:8d} {m['fp_other']:8d}")
            shown = 0
            for r in report.records:
                if shown >= args.show_fp:
                    break
                if r["label"] != "clean" and truth.get((r["task"], r["item_id"]), "clean") in ("clean", "near_topic"):
                    shown += 1
                    log(f"   FP {r['task']}:{r['item_id']} {r['label']} {json.dumps(r['detectors'])}\n      item: "
                        f"{next(i.text for i in items if i.key == (r['task'], r['item_id']))[:300]!r}\n      evidence: "
                        f"{json.dumps(r['evidence'])[:600]}")
        if args.keep:
            log(f"\nkept {train}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
