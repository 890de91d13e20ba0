"""Orchestration: stream training files through the detectors, label every eval item.

The work splits into three pure pieces, which is what lets the same scan run on a
cluster engine (docs/leaks-at-scale.md):

* `build_index(items, config)`: the eval-side index, built once, broadcast;
* `scan_block(texts, index, source, seq) -> Partial`: the map step, one block of training
  rows against the index;
* `Partial.merge`: associative, commutative reduce (set unions, maxima, top-k evidence).

`scan()` runs the map step over local files on a process pool (both cores by default),
folds the partials into dense per-item arrays, and turns them into per-item records with
a label. Labels combine the detectors as follows (LABEL_RULE, also written to the log):

* contaminated: PaLM 8-gram coverage >= 70%, or Llama 2 token coverage > 80% (dirty),
  or > 80% Llama 2 coverage of a gold answer of >= 10 tokens on its own (a reference
  summary or the correct ending copied as a training target), or a MinHash
  near-duplicate (estimated Jaccard >= 0.5) of the item in training;
* suspect: not contaminated, but a 13-gram match (GPT-3 rule), or Llama 2 token coverage
  >= 20% (not clean), or a Min-K% membership outlier (adapter vs base);
* clean: none of these.

"contaminated" needs most of the item to be in training (copied, lightly edited or
reordered); "suspect" is partial or statistical evidence worth a look, and the clean
subset used for deltas excludes both.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.hashing import sha256_files
from harness.leaks.fields import FieldMap
from harness.leaks.index import EvalIndex, LeakConfig, build_index
from harness.leaks.io import Source, open_source
from harness.leaks.tasks import BadRecord, Task, line_of_offset, plan_tasks, read_task
from harness.leaks.items import EvalItem
from harness.leaks.minhash import find_segments, match_segments
from harness.leaks.ngrams import token_stream
from harness.leaks.normalize import quote_span
from harness.leaks.overlap import best_runs, covered_tokens, ngram_runs, prefilter

SCHEMA_VERSION = 1
LABELS = ("clean", "suspect", "contaminated")
LABEL_RULE = (
    "contaminated: PaLM {palm_n}-gram coverage >= {palm_threshold:.0%} or Llama-2 token coverage "
    "(matches >= {llama_min_match} tokens) > {llama_dirty:.0%} of the item or of a gold answer of >= "
    "{llama_min_match} tokens, or MinHash near-duplicate (estimated Jaccard >= {minhash_threshold}); "
    "suspect: otherwise a {gpt3_n}-gram match (GPT-3), Llama-2 coverage >= {llama_clean:.0%}, or a Min-K% "
    "membership outlier (robust z >= {membership_z}); clean: none"
)

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- map / reduce


@dataclass
class Evidence:
    """One quoted training location supporting a detection.

    `row` is chunk-local until the scan resolves it to the source's row id.
    """

    detector: str          # "ngram" or "minhash"
    score: float           # matched tokens (ngram) or estimated Jaccard (minhash)
    source: int
    seq: int
    row: int
    row_tokens: tuple[int, int]
    item_tokens: tuple[int, int] | None
    span: str

    def sort_key(self) -> tuple:
        return (-self.score, self.source, self.seq, self.row, self.row_tokens[0])


@dataclass
class Partial:
    """What one or more blocks of training rows contribute. Merge with `merge`.

    Attributes:
        palm: Sorted flat ids of item 8-gram starts matched somewhere.
        llama: Sorted flat token ids inside matches of >= llama_min_match tokens.
        longest: Item -> longest common substring in tokens.
        minhash: Item -> best estimated Jaccard of a near-duplicate segment.
        evidence: Item -> best locations (top `evidence_per_item` per detector).
        rows: (source, seq) -> (first row id or -1 if unknown yet, rows in the block).
        stats: Counters (rows, bytes, tokens, prefilter candidates, ...).
    """

    palm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    llama: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    longest: dict[int, int] = field(default_factory=dict)
    minhash: dict[int, float] = field(default_factory=dict)
    evidence: dict[int, list[Evidence]] = field(default_factory=dict)
    rows: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    stats: collections.Counter = field(default_factory=collections.Counter)

    def merge(self, other: "Partial", per_item: int = 3) -> "Partial":
        """Union of two partials (order-independent)."""
        out = Partial(np.union1d(self.palm, other.palm), np.union1d(self.llama, other.llama),
                      dict(self.longest), dict(self.minhash), {k: list(v) for k, v in self.evidence.items()},
                      {**self.rows, **other.rows}, self.stats + other.stats)
        for k, v in other.longest.items():
            out.longest[k] = max(v, out.longest.get(k, 0))
        for k, v in other.minhash.items():
            out.minhash[k] = max(v, out.minhash.get(k, 0.0))
        for k, v in other.evidence.items():
            out.evidence[k] = _top_evidence(out.evidence.get(k, []) + v, per_item)
        return out


def _top_evidence(evs: list[Evidence], per_item: int) -> list[Evidence]:
    out: list[Evidence] = []
    for det in ("ngram", "minhash"):
        seen: set[tuple[int, int, int]] = set()
        taken = 0
        for e in sorted((e for e in evs if e.detector == det), key=Evidence.sort_key):
            where = (e.source, e.seq, e.row)
            if where in seen or taken >= per_item:
                continue
            seen.add(where)
            out.append(e)
            taken += 1
    return out


def scan_block(texts: Sequence[str], index: EvalIndex, source: int = 0, seq: int = 0) -> Partial:
    """The map step: match one block of training rows against the eval index.

    Pure (no I/O, no global state): given the same texts and index it returns the same
    partial, whichever machine runs it.

    Args:
        texts: Row texts, in row order (block-local row ids are their positions).
        index: The broadcast eval index.
        source: Index of the training source these rows come from (for evidence).
        seq: Block number within the source (for evidence; rows are resolved later).

    Returns:
        The block's Partial (its `rows` entry is filled in by the caller, who knows the
        block's first row id).
    """
    cfg = index.config
    texts = list(texts)
    ts = token_stream(texts)
    part = Partial()
    part.stats.update(rows=len(texts), tokens=len(ts.hashes))
    if len(ts.hashes) < cfg.prefilter_n:
        return part
    hits = prefilter(ts, index)
    part.stats.update(prefilter_candidates=hits.candidates, prefilter_hits=len(hits.pos))
    runs = ngram_runs(ts, hits, index)
    part.stats.update(ngram_runs=len(runs.item))
    if len(runs.item):
        part.palm = runs.pairs_flat
        part.llama = covered_tokens(runs, cfg.llama_min_match)
        order = np.argsort(runs.length, kind="stable")
        # max per item: later (longer) assignments win
        part.longest = dict(zip(runs.item[order].tolist(), runs.length[order].tolist()))
        for k in best_runs(runs, ts.row, cfg.evidence_per_item):
            it, r = int(runs.item[k]), int(ts.row[runs.pos[k]])
            a = int(runs.pos[k] - ts.row_start[r])
            ln = int(runs.length[k])
            q = int(runs.flat[k] - index.offsets[it])
            part.evidence.setdefault(it, []).append(Evidence(
                "ngram", float(ln), source, seq, r, (a, a + ln), (q, q + ln),
                quote_span(texts[r], a, a + ln, cfg.quote_chars)))
    if index.minhash is not None and len(hits.pos):
        segs = find_segments(hits.pos[~hits.common], ts.row, ts.row_start, cfg)
        part.stats.update(minhash_segments=len(segs))
        best: dict[int, tuple[float, Any]] = {}
        for it, jac, seg in match_segments(ts.hashes, segs, index.minhash):
            if it not in best or jac > best[it][0]:
                best[it] = (jac, seg)
        for it, (jac, seg) in best.items():
            part.minhash[it] = jac
            a, b = seg.start - int(ts.row_start[seg.row]), seg.end - int(ts.row_start[seg.row])
            part.evidence.setdefault(it, []).append(Evidence(
                "minhash", round(jac, 4), source, seq, seg.row, (a, b), None,
                quote_span(texts[seg.row], a, b, cfg.quote_chars)))
    return part


class _Accumulator:
    """Dense per-item state for the local driver (merging sparse partials into arrays is
    O(partial), where repeated set unions would be O(index) per block)."""

    def __init__(self, index: EvalIndex):
        n_flat = int(index.offsets[-1])
        self.per_item = index.config.evidence_per_item
        self.palm = np.zeros(n_flat, bool)
        self.llama = np.zeros(n_flat, bool)
        self.longest = np.zeros(index.n_items, np.int64)
        self.minhash = np.zeros(index.n_items, np.float64)
        self.evidence: dict[int, list[Evidence]] = {}
        self.rows: dict[tuple[int, int], tuple[int, int]] = {}
        self.stats: collections.Counter = collections.Counter()

    def add(self, p: Partial) -> None:
        self.palm[p.palm] = True
        self.llama[p.llama] = True
        if p.longest:
            k = np.fromiter(p.longest.keys(), np.int64, len(p.longest))
            v = np.fromiter(p.longest.values(), np.int64, len(p.longest))
            np.maximum.at(self.longest, k, v)
        for k, v in p.minhash.items():
            self.minhash[k] = max(self.minhash[k], v)
        for k, v in p.evidence.items():
            self.evidence[k] = _top_evidence(self.evidence.get(k, []) + v, self.per_item)
        self.rows.update(p.rows)
        self.stats.update(p.stats)


# --------------------------------------------------------------------------- workers

_WORKER_INDEX: EvalIndex | None = None


def _init_worker(index: EvalIndex) -> None:
    import signal

    global _WORKER_INDEX
    _WORKER_INDEX = index
    # Ctrl-C is the parent's to handle (it cancels the pool); workers would only print
    # one traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_task(task: Task, index: EvalIndex | None = None) -> Partial:
    index = index if index is not None else _WORKER_INDEX
    assert index is not None, "worker started without an index"
    block = read_task(task)
    part = scan_block(block.texts, index, task.source.index, task.seq)
    part.rows[(task.source.index, task.seq)] = (-1 if task.row_start is None else task.row_start, block.n_rows)
    part.stats.update(bytes=task.size, empty_rows=block.empty_rows)
    return part


def _pool(workers: int, index: EvalIndex):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    methods = mp.get_all_start_methods()
    # fork shares the index copy-on-write at no cost; once torch is loaded its thread
    # pools make fork unsafe, so a model-holding caller gets forkserver (index pickled once per worker).
    if "fork" in methods and "torch" not in sys.modules:
        ctx = mp.get_context("fork")
    elif "forkserver" in methods:
        ctx = mp.get_context("forkserver")
    else:
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(index,))


def _bad_record(exc: BadRecord) -> HarnessError:
    where = exc.path
    if exc.byte_offset >= 0:
        try:
            where = f"{exc.path}:{line_of_offset(exc.path, exc.byte_offset)}"
        except OSError:
            where = f"{exc.path} (byte {exc.byte_offset})"
    return HarnessError(f"training data {where}: {exc.reason}", "fix or remove that line")


# --------------------------------------------------------------------------- report


@dataclass
class LeakReport:
    """Result of a scan.

    Attributes:
        records: One dict per eval item, in item order: task, item_id, kind, label,
            detectors, evidence (see `write_leaks` for the schema).
        summary: Counts per task and label, detector stats, training hashes (sha256 of
            each file's bytes; `training.sha256` is the file's own for one file, else the
            sha256 of their `sha256sum`-style lines), config; meant for run.json under `leaks`.
    """

    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def label_map(self) -> dict[tuple[str, str], str]:
        return label_map(self)


def label_map(report: LeakReport) -> dict[tuple[str, str], str]:
    """{(task, item_id): label}. Items sharing a key (HellaSwag's duplicate `ind`) get the
    worse of their labels, so a clean subset never keeps a possibly leaked item."""
    rank = {lab: i for i, lab in enumerate(LABELS)}
    out: dict[tuple[str, str], str] = {}
    for r in report.records:
        key = (r["task"], r["item_id"])
        if key not in out or rank[r["label"]] > rank[out[key]]:
            out[key] = r["label"]
    return out


def label_of(det: dict[str, Any]) -> str:
    """The label for one item's detector verdicts (the rule in the module doc)."""
    if (det["palm"]["hit"] or det["llama2"]["category"] == "dirty" or det.get("minhash", {}).get("hit")
            or det.get("answer", {}).get("hit")):
        return "contaminated"
    if det["gpt3"]["hit"] or det["llama2"]["category"] == "not-clean" or det.get("min_k", {}).get("flagged"):
        return "suspect"
    return "clean"


def _segment_counts(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    cs = np.zeros(len(mask) + 1, np.int64)
    np.cumsum(mask, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def _resolve_rows(acc_rows: dict[tuple[int, int], tuple[int, int]]) -> dict[tuple[int, int], int]:
    """(source, seq) -> first row id; byte-range blocks get it from the blocks before them."""
    out: dict[tuple[int, int], int] = {}
    running: dict[int, int] = {}
    for (src, seq) in sorted(acc_rows):
        start, n = acc_rows[(src, seq)]
        if start < 0:
            start = running.get(src, 0)
        out[(src, seq)] = start
        running[src] = start + n
    return out


def _records(acc: _Accumulator, index: EvalIndex, sources: list[Source]) -> list[dict[str, Any]]:
    cfg = index.config
    ntok = np.diff(index.offsets)
    palm_hits = _segment_counts(acc.palm, index.offsets)
    llama_hits = _segment_counts(acc.llama, index.offsets)
    row0 = _resolve_rows(acc.rows)
    # Gold answers (references, correct option/ending) on their own: Llama-2-style coverage.
    answers: dict[int, list[float]] = {}
    if len(index.ans_item):
        cs = np.zeros(len(acc.llama) + 1, np.int64)
        np.cumsum(acc.llama, out=cs[1:])
        cov = (cs[index.ans_end] - cs[index.ans_start]) / (index.ans_end - index.ans_start)
        for it, c in zip(index.ans_item.tolist(), cov.tolist()):
            answers.setdefault(it, []).append(c)
    records = []
    for i, item in enumerate(index.items):
        informative = int(index.informative[i])
        palm_cov = float(palm_hits[i]) / informative if informative else 0.0
        llama_cov = float(llama_hits[i]) / int(ntok[i]) if ntok[i] else 0.0
        category = "dirty" if llama_cov > cfg.llama_dirty else ("clean" if llama_cov < cfg.llama_clean else "not-clean")
        longest = int(acc.longest[i])
        det: dict[str, Any] = {
            "gpt3": {"n": cfg.gpt3_n, "longest_match": longest, "hit": longest >= cfg.gpt3_n},
            "palm": {"n": cfg.palm_n, "coverage": round(palm_cov, 4),
                     "hit": informative > 0 and palm_cov >= cfg.palm_threshold},
            "llama2": {"min_match": cfg.llama_min_match, "coverage": round(llama_cov, 4), "category": category},
        }
        if i in answers:
            cov = max(answers[i])
            det["answer"] = {"min_match": cfg.llama_min_match, "coverage": round(cov, 4), "hit": cov > cfg.llama_dirty}
        if index.minhash is not None:
            jac = float(acc.minhash[i])
            det["minhash"] = {"jaccard": round(jac, 4),
                              "hit": bool(index.minhash.indexed[i]) and jac >= cfg.minhash_threshold}
        evidence = []
        for e in acc.evidence.get(i, []):
            src = sources[e.source]
            row = row0.get((e.source, e.seq), 0) + e.row
            ev: dict[str, Any] = {"detector": e.detector, "source": src.path, "row": row}
            if src.format in ("jsonl", "text"):
                ev["line"] = row + 1  # what an editor shows
            if e.detector == "ngram":
                ev["match_tokens"] = int(e.score)
                ev["item_tokens"] = list(e.item_tokens or ())
            else:
                ev["jaccard"] = e.score
            ev["span"] = e.span
            evidence.append(ev)
        rec = {"task": item.task, "item_id": item.item_id, "kind": item.kind, "label": label_of(det),
               "tokens": int(ntok[i]), "detectors": det, "evidence": evidence}
        if item.meta:
            rec["meta"] = dict(item.meta)
        records.append(rec)
    return records


def _summary(records: list[dict[str, Any]], cfg: LeakConfig, sources: list[Source], hashes: dict[int, str],
             acc: _Accumulator, wall: float, workers: int, index_s: float) -> dict[str, Any]:
    counts: dict[str, dict[str, Any]] = {}
    totals = collections.Counter()
    det_stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        c = counts.setdefault(r["task"], {"kind": r["kind"], "n": 0, **{lab: 0 for lab in LABELS}})
        c["n"] += 1
        c[r["label"]] += 1
        totals[r["label"]] += 1
        d = r["detectors"]
        det_stats["gpt3"]["hit"] += d["gpt3"]["hit"]
        det_stats["palm"]["hit"] += d["palm"]["hit"]
        det_stats["llama2"][d["llama2"]["category"]] += 1
        if "answer" in d:
            det_stats["answer"]["hit"] += d["answer"]["hit"]
        if "minhash" in d:
            det_stats["minhash"]["hit"] += d["minhash"]["hit"]
        if "min_k" in d:
            det_stats["min_k"]["flagged"] += bool(d["min_k"].get("flagged"))
    size = sum(s.size for s in sources)
    files = []
    row_counts = collections.Counter()
    for (src, _seq), (_start, n) in acc.rows.items():
        row_counts[src] += n
    for s in sources:
        files.append({**s.describe(), "sha256": hashes.get(s.index), "rows": row_counts.get(s.index, 0)})
    # One file: its sha256. Several: sha256 of their `sha256sum`-style lines, in order.
    combined = hashes.get(0) if len(sources) == 1 else hashlib.sha256(
        "".join(f"{hashes.get(s.index)}  {s.path}\n" for s in sources).encode()).hexdigest()
    st = acc.stats
    return {
        "schema_version": SCHEMA_VERSION,
        "label_rule": LABEL_RULE.format(**cfg.as_dict()),
        "config": cfg.as_dict(),
        "training": {"sha256": combined, "files": files},
        "counts": counts,
        "totals": {"n": len(records), **{lab: totals[lab] for lab in LABELS}},
        "detectors": {k: dict(v) for k, v in det_stats.items()},
        "stats": {"rows": st["rows"], "empty_rows": st["empty_rows"], "bytes": size, "tokens": st["tokens"],
                  "prefilter_candidates": st["prefilter_candidates"], "prefilter_hits": st["prefilter_hits"],
                  "ngram_runs": st["ngram_runs"], "minhash_segments": st["minhash_segments"],
                  "index_s": round(index_s, 3), "wall_s": round(wall, 3),
                  "mb_per_s": round(size / 1e6 / wall, 2) if wall > 0 else None, "workers": workers},
    }


def scan(train: str | os.PathLike | Sequence[str | os.PathLike], items: Iterable[EvalItem],
         config: LeakConfig | None = None, *, fields: FieldMap | None = None, workers: int = 2,
         progress: ProgressFn | None = None, index: EvalIndex | None = None) -> LeakReport:
    """Scan training files for every eval item and label each one.

    Args:
        train: One or more training files or `save_to_disk` folders (see harness.leaks.io).
        items: Eval items (`suite_items`, `bench_items`).
        config: Detector settings (defaults: the published rules, MinHash on).
        fields: Field mapping for every file; None to detect it per file.
        workers: Processes for the map step; 1 runs in this process.
        progress: Called as progress(done_bytes, total_bytes) after every block.
        index: A prebuilt index over `items` (its config wins), to scan several
            training sets against the same items.

    Returns:
        LeakReport with one record per item, in item order.

    Raises:
        HarnessError: unreadable training data, unknown field, malformed record.
    """
    t0 = time.perf_counter()
    paths = [train] if isinstance(train, (str, os.PathLike)) else list(train)
    if not paths:
        raise HarnessError("no training data given", "pass --train FILE (repeatable)")
    sources = [open_source(p, fields, i) for i, p in enumerate(paths)]
    if index is None:
        index = build_index(list(items), config)
    cfg = index.config
    index_s = time.perf_counter() - t0
    acc = _Accumulator(index)
    total = sum(s.size for s in sources)
    done = 0

    hashes: dict[int, str] = {}
    hash_err: list[BaseException] = []

    def _hash_all() -> None:
        try:
            for s in sources:
                hashes[s.index] = sha256_files(s.files)
        except BaseException as exc:  # reported after the scan
            hash_err.append(exc)

    def tasks() -> Iterable[Task]:
        for s in sources:
            yield from plan_tasks(s, cfg.chunk_bytes)

    def step(part: Partial, size: int) -> None:
        nonlocal done
        acc.add(part)
        done = min(done + size, total)
        if progress is not None:
            progress(done, total)

    workers = max(1, int(workers))
    try:
        if workers == 1:
            hasher = threading.Thread(target=_hash_all, daemon=True)
            hasher.start()
            for task in tasks():
                step(_run_task(task, index), task.size)
        else:
            pool = _pool(workers, index)
            # The hashing thread starts after the pool: forking a process with live
            # threads is unsafe. hashlib releases the GIL, so it overlaps the scan.
            hasher = threading.Thread(target=_hash_all, daemon=True)
            try:
                pending: collections.deque = collections.deque()
                started = False
                for task in tasks():
                    pending.append((pool.submit(_run_task, task), task.size))
                    if not started:
                        hasher.start()
                        started = True
                    # Bounded read-ahead: parents that ship batches must not buffer a file.
                    while len(pending) >= 2 * workers:
                        fut, size = pending.popleft()
                        step(fut.result(), size)
                while pending:
                    fut, size = pending.popleft()
                    step(fut.result(), size)
                if not started:
                    hasher.start()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        hasher.join()
    except BadRecord as exc:
        raise _bad_record(exc) from None
    if hash_err:
        raise HarnessError(f"training data could not be hashed: {hash_err[0]}", "check the file is readable")
    records = _records(acc, index, sources)
    summary = _summary(records, cfg, sources, hashes, acc, time.perf_counter() - t0, workers, index_s)
    return LeakReport(records, summary)


def finish(partials: Iterable[Partial], index: EvalIndex, sources: Sequence[str | Source],
           hashes: dict[int, str] | None = None, wall_s: float = 0.0, workers: int = 0) -> LeakReport:
    """Fold map-step partials into a LeakReport (the driver side of a distributed scan).

    Args:
        partials: Results of `scan_block` (or already merged ones), in any order.
        index: The index the partials were computed against.
        sources: Training source names (or Sources) by the `source` number given to
            `scan_block`.
        hashes: Optional sha256 per source number.
        wall_s: Scan time, for the stats.
        workers: Parallelism, for the stats.
    """
    srcs = [s if isinstance(s, Source) else Source(str(s), "external", FieldMap(), (), 0, False, i)
            for i, s in enumerate(sources)]
    acc = _Accumulator(index)
    for p in partials:
        acc.add(p)
    records = _records(acc, index, srcs)
    return LeakReport(records, _summary(records, index.config, srcs, hashes or {}, acc, wall_s, workers, 0.0))


# --------------------------------------------------------------------------- membership


def add_membership(report: LeakReport, result: Any) -> LeakReport:
    """Fold Min-K% membership results into the records and relabel.

    Args:
        report: A scan's report (changed in place and returned).
        result: `harness.leaks.membership.MembershipResult`.
    """
    # Positional when the result was computed over the report's own items (duplicate
    # keys stay apart), by (task, item_id) otherwise.
    aligned = len(result.per_item) == len(report.records) and all(
        (r["task"], r["item_id"]) == it.key for r, it in zip(report.records, result.items))
    lookup = result.scores
    for pos, r in enumerate(report.records):
        m = result.per_item[pos] if aligned else lookup.get((r["task"], r["item_id"]))
        if m is None:
            continue
        r["detectors"]["min_k"] = dict(m)
        if m.get("flagged"):
            r["evidence"].append({"detector": "min_k", **{k: m[k] for k in ("base", "adapter", "shift", "z")}})
        r["label"] = label_of(r["detectors"])
    counts = report.summary["counts"]
    for c in counts.values():
        for lab in LABELS:
            c[lab] = 0
    totals = collections.Counter()
    flagged = 0
    for r in report.records:
        counts[r["task"]][r["label"]] += 1
        totals[r["label"]] += 1
        flagged += bool(r["detectors"].get("min_k", {}).get("flagged"))
    report.summary["totals"].update({lab: totals[lab] for lab in LABELS})
    report.summary["detectors"]["min_k"] = {"flagged": flagged}
    report.summary["membership"] = result.summary
    return report


# --------------------------------------------------------------------------- files


def write_leaks(out_dir: str | os.PathLike, report: LeakReport) -> tuple[Path, Path]:
    """Write DIR/leaks.jsonl (one record per item) and DIR/leaks.json (the summary).

    Each leaks.jsonl line: `task`, `item_id`, `kind`, `label` (clean/suspect/contaminated),
    `tokens`, `detectors` (per detector: gpt3 {longest_match, hit}, palm {coverage, hit},
    llama2 {coverage, category}, answer {coverage, hit} for items with a gold answer of
    >= 10 tokens, minhash {jaccard, hit}, min_k {base, adapter, shift, z, flagged} when
    run) and `evidence` (list of {detector, source, row (0-based; `line`, 1-based, for
    JSONL/text), match_tokens + item_tokens | jaccard, span} and, for min_k, the scores).

    Returns:
        (path of leaks.jsonl, path of leaks.json).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = out / "leaks.jsonl"
    summ = out / "leaks.json"
    tmp = lines.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in report.records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, lines)
    tmp = summ.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, summ)
    return lines, summ


def load_leaks(out_dir: str | os.PathLike) -> LeakReport:
    """Read what `write_leaks` wrote.

    Raises:
        HarnessError: missing or corrupt files.
    """
    out = Path(out_dir)
    try:
        summary = json.loads((out / "leaks.json").read_text(encoding="utf-8"))
        with open(out / "leaks.jsonl", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError as exc:
        raise HarnessError(f"{out}: no leak scan results ({Path(exc.filename).name} missing)",
                           "run `harness leaks --train FILE ... --out DIR` first") from None
    except ValueError as exc:
        raise HarnessError(f"{out}: leak scan results are corrupt ({exc})", "re-run `harness leaks`") from None
    return LeakReport(records, summary)
