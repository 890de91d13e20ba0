"""Exact n-gram overlap: the GPT-3, PaLM and Llama 2 contamination rules.

All three rules are computed from one lookup. For each training position whose 8-gram
(`palm_n`) equals an item 8-gram we get a pair (training position p, item flat position
f). Pairs on one diagonal (p - f constant) at consecutive p form a *run*: r consecutive
8-gram matches are exactly a common token substring of r + 7 tokens. Then, per item:

* GPT-3 (13-gram): dirty if some run spans >= 13 tokens;
* PaLM (8-gram coverage): the share of the item's 8-grams matched anywhere in training;
  contaminated if >= 70%;
* Llama 2 (token coverage): a token is contaminated if it lies inside a match of >= 10
  tokens; dirty if > 80% of tokens are, clean if < 20%.

Coverage unions over the whole training set (different rows may cover different parts of
an item), which is why partial results are sets that merge by union.

The scan never hashes every 8-gram against the table: the bitmap prefilter on 5-grams
(`prefilter_n`) rejects ~98% of positions with one byte gather, the surviving 5-grams are
verified exactly, and only there is the 8-gram hash computed and looked up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.leaks.index import EvalIndex
from harness.leaks.ngrams import TokenStream, ngram_hashes, ngram_hashes_at, within_rows


@dataclass
class PrefilterHits:
    """Training positions whose prefilter n-gram is an eval n-gram.

    Attributes:
        pos: Chunk token indices (sorted).
        common: Whether that n-gram is boilerplate (many items share it).
        candidates: Positions that passed the bitmap (before the exact check), for stats.
    """

    pos: np.ndarray
    common: np.ndarray
    candidates: int


def prefilter(ts: TokenStream, index: EvalIndex) -> PrefilterHits:
    """Bitmap, then exact membership of every training `prefilter_n`-gram."""
    n = index.config.prefilter_n
    h = ngram_hashes(ts.hashes, n)
    cand = index.bitmap.maybe(h)
    cand = cand[within_rows(ts.row, cand, n)]
    if not len(cand) or not len(index.pre_keys):
        return PrefilterHits(np.zeros(0, np.int64), np.zeros(0, bool), len(cand))
    hc = h[cand]
    k = np.searchsorted(index.pre_keys, hc)
    k[k == len(index.pre_keys)] = 0
    ok = index.pre_keys[k] == hc
    return PrefilterHits(cand[ok].astype(np.int64), index.pre_common[k[ok]], len(cand))


@dataclass
class Runs:
    """Maximal common substrings (>= palm_n tokens) between a chunk and the items.

    Attributes:
        item: Item index of each run.
        pos: Chunk token index where the run starts.
        flat: Item flat token id where it starts.
        length: Tokens in the common substring.
        pairs_flat: Flat ids of every matched palm_n-gram start (PaLM coverage).
    """

    item: np.ndarray
    pos: np.ndarray
    flat: np.ndarray
    length: np.ndarray
    pairs_flat: np.ndarray

    @staticmethod
    def empty() -> "Runs":
        z = np.zeros(0, np.int64)
        return Runs(z, z, z, z, z)


def ngram_runs(ts: TokenStream, hits: PrefilterHits, index: EvalIndex) -> Runs:
    """Look up the 8-grams at prefilter hits and chain the matches into runs."""
    n = index.config.palm_n
    p = hits.pos[within_rows(ts.row, hits.pos, n)]
    if not len(p) or not len(index.keys):
        return Runs.empty()
    h = ngram_hashes_at(ts.hashes, p, n)
    j = np.searchsorted(index.keys, h)
    j[j == len(index.keys)] = 0
    ok = index.keys[j] == h
    p, j = p[ok], j[ok]
    if not len(p):
        return Runs.empty()
    # Expand postings: every (training position, item position) pair with equal 8-grams.
    start = index.post_start[j]
    cnt = index.post_start[j + 1] - start
    total = int(cnt.sum())
    step = np.repeat(start - (np.cumsum(cnt) - cnt), cnt)
    flat = index.post_flat[step + np.arange(total, dtype=np.int64)]
    pos = np.repeat(p, cnt)
    # Chain along diagonals. Item flat ranges are >= palm_n - 1 apart, so a diagonal
    # never continues from one item into the next.
    diag = pos - flat
    order = np.lexsort((pos, diag))
    pos, flat, diag = pos[order], flat[order], diag[order]
    brk = np.ones(total, bool)
    brk[1:] = (diag[1:] != diag[:-1]) | (pos[1:] != pos[:-1] + 1)
    first = np.flatnonzero(brk)
    r = np.diff(np.append(first, total))
    f0 = flat[first]
    return Runs(item=index.item_of[f0].astype(np.int64), pos=pos[first], flat=f0,
                length=(r + n - 1).astype(np.int64), pairs_flat=np.unique(flat))


def covered_tokens(runs: Runs, min_len: int) -> np.ndarray:
    """Sorted unique flat token ids inside runs of at least `min_len` tokens (Llama 2)."""
    keep = runs.length >= min_len
    if not keep.any():
        return np.zeros(0, np.int64)
    f0, ln = runs.flat[keep], runs.length[keep]
    total = int(ln.sum())
    ids = np.repeat(f0 - (np.cumsum(ln) - ln), ln) + np.arange(total, dtype=np.int64)
    return np.unique(ids)


def best_runs(runs: Runs, row: np.ndarray, per_item: int) -> list[int]:
    """Indices of the longest runs per item, at most `per_item` per item, one per row."""
    if not len(runs.item):
        return []
    rows = row[runs.pos]
    order = np.lexsort((runs.pos, -runs.length, runs.item))
    out: list[int] = []
    last_item, taken, seen = -1, 0, set()
    for k in order.tolist():
        it = int(runs.item[k])
        if it != last_item:
            last_item, taken, seen = it, 0, set()
        if taken >= per_item or int(rows[k]) in seen:
            continue
        seen.add(int(rows[k]))
        out.append(k)
        taken += 1
    return out
