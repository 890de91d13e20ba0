"""The map step and its reduce: one block of training rows against the eval index.

* `scan_block(texts, index, source, seq) -> Partial`: the map step, pure;
* `Partial.merge`: associative, commutative reduce (set unions, maxima, top-k evidence);
* `Accumulator`: the local driver's dense per-item fold of partials.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from harness.leaks.contamination import answer_rows
from harness.leaks.exact import ITEM, KINDS, PAIR, find
from harness.leaks.index import EvalIndex
from harness.leaks.minhash import find_segments, match_segments
from harness.leaks.ngrams import token_stream
from harness.leaks.normalize import quote_span
from harness.leaks.overlap import Runs, best_runs, covered_tokens, ngram_runs, prefilter


@dataclass
class Evidence:
    """One quoted training location supporting a detection.

    `row` is chunk-local until the scan resolves it to the source's row id.
    """

    detector: str          # "ngram", "minhash" or "exact"
    score: float           # matched tokens (ngram), estimated Jaccard (minhash), coverage (exact)
    source: int
    seq: int
    row: int
    row_tokens: tuple[int, int]
    item_tokens: tuple[int, int] | None
    span: str
    match: str = ""        # exact: which key of the item matched (harness.leaks.exact.KINDS)

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
        exact: Item -> best coverage of an exact copy (harness.leaks.exact).
        answers: Item -> (source, seq, chunk-local row) of the first row holding the item's
            input with a gold answer (harness.leaks.contamination).
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
    exact: dict[int, float] = field(default_factory=dict)
    answers: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def merge(self, other: "Partial", per_item: int = 3) -> "Partial":
        """Union of two partials (order-independent)."""
        out = Partial(np.union1d(self.palm, other.palm), np.union1d(self.llama, other.llama),
                      dict(self.longest), dict(self.minhash), {k: list(v) for k, v in self.evidence.items()},
                      {**self.rows, **other.rows}, self.stats + other.stats, dict(self.exact), dict(self.answers))
        for k, v in other.answers.items():
            out.answers[k] = min(v, out.answers.get(k, v))  # the earliest row, whichever block came first
        for k, v in other.longest.items():
            out.longest[k] = max(v, out.longest.get(k, 0))
        for k, v in other.minhash.items():
            out.minhash[k] = max(v, out.minhash.get(k, 0.0))
        for k, v in other.exact.items():
            out.exact[k] = max(v, out.exact.get(k, 0.0))
        for k, v in other.evidence.items():
            out.evidence[k] = _top_evidence(out.evidence.get(k, []) + v, per_item)
        return out


def _top_evidence(evs: list[Evidence], per_item: int) -> list[Evidence]:
    out: list[Evidence] = []
    for det in ("ngram", "minhash", "exact"):
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
    texts = list(texts)
    ts = token_stream(texts)
    part = Partial()
    part.stats.update(rows=len(texts), tokens=len(ts.hashes))
    exact_pairs = _exact(part, texts, ts, index, source, seq) if index.exact is not None else []
    runs, near_dups = _ngram_and_minhash(part, texts, ts, index, source, seq)
    if index.gold is not None and (exact_pairs or len(runs.item) or near_dups):
        found = answer_rows(index.gold, index.offsets, index.config.llama_min_match, ts, runs, exact_pairs, near_dups)
        part.answers = {it: (source, seq, r) for it, r in found.items()}
    return part


def _ngram_and_minhash(part: Partial, texts: list[str], ts, index: EvalIndex, source: int,
                       seq: int) -> tuple[Runs, list[tuple[int, int]]]:
    """The n-gram rules and MinHash into `part`; returns the runs and (item, row) near-duplicates."""
    cfg = index.config
    if len(ts.hashes) < cfg.prefilter_n:
        return Runs.empty(), []
    hits = prefilter(ts, index)
    part.stats.update(prefilter_candidates=hits.candidates, prefilter_hits=len(hits.pos))
    runs = ngram_runs(ts, hits, index)
    near_dups: list[tuple[int, int]] = []
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
            near_dups.append((it, int(seg.row)))
            a, b = seg.start - int(ts.row_start[seg.row]), seg.end - int(ts.row_start[seg.row])
            part.evidence.setdefault(it, []).append(Evidence(
                "minhash", round(jac, 4), source, seq, seg.row, (a, b), None,
                quote_span(texts[seg.row], a, b, cfg.quote_chars)))
    return runs, near_dups


def _exact(part: Partial, texts: list[str], ts, index: EvalIndex, source: int, seq: int) -> list[tuple[int, int]]:
    """Exact copies of items, their inputs and short question/answer pairs (exact.py); returns
    (item, row) of every copy of a whole item or of an input with its answer."""
    cfg = index.config
    ex = index.exact
    hits = find(ts, ex)
    cov = ex.coverage[hits.post]
    # Below the Llama 2 "clean" share a copy cannot change the label (a bare question of
    # a long item); it is left out rather than quoted as evidence on a clean item.
    keep = np.flatnonzero(cov >= cfg.llama_clean)
    part.stats.update(exact_hits=len(keep))
    best: dict[tuple[int, int], int] = {}
    for k in keep[np.argsort(-cov[keep], kind="stable")].tolist():
        best.setdefault((int(ex.item[hits.post[k]]), int(hits.row[k])), k)
    # A whole-item copy holds the answer unless the model is shown it anyway (MMLU's options).
    shown = index.gold.shown if index.gold is not None else np.zeros(index.n_items, bool)
    with_answer = [(it, r) for (it, r), k in best.items()
                   if int(ex.kind[hits.post[k]]) == PAIR or (int(ex.kind[hits.post[k]]) == ITEM and not shown[it])]
    taken: collections.Counter = collections.Counter()
    for (it, r), k in best.items():
        c = float(cov[k])
        part.exact[it] = max(c, part.exact.get(it, 0.0))
        if taken[it] >= cfg.evidence_per_item:
            continue
        taken[it] += 1
        a, b = int(hits.start[k] - ts.row_start[r]), int(hits.end[k] - ts.row_start[r])
        part.evidence.setdefault(it, []).append(Evidence(
            "exact", round(c, 4), source, seq, r, (a, b), None, quote_span(texts[r], a, b, cfg.quote_chars),
            KINDS[int(ex.kind[hits.post[k]])]))
    return with_answer


class Accumulator:
    """Dense per-item state for the local driver (merging sparse partials into arrays is
    O(partial), where repeated set unions would be O(index) per block)."""

    def __init__(self, index: EvalIndex):
        n_flat = int(index.offsets[-1])
        self.per_item = index.config.evidence_per_item
        self.palm = np.zeros(n_flat, bool)
        self.llama = np.zeros(n_flat, bool)
        self.longest = np.zeros(index.n_items, np.int64)
        self.minhash = np.zeros(index.n_items, np.float64)
        self.exact = np.zeros(index.n_items, np.float64)
        self.evidence: dict[int, list[Evidence]] = {}
        self.answers: dict[int, tuple[int, int, int]] = {}
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
        for k, v in p.exact.items():
            self.exact[k] = max(self.exact[k], v)
        for k, v in p.evidence.items():
            self.evidence[k] = _top_evidence(self.evidence.get(k, []) + v, self.per_item)
        for k, v in p.answers.items():
            self.answers[k] = min(v, self.answers.get(k, v))
        self.rows.update(p.rows)
        self.stats.update(p.stats)
