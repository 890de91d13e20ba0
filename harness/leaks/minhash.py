"""MinHash LSH near-duplicates: lightly edited or reordered copies of an item.

n-gram rules break on word edits: three substituted words in a 25-token question leave
no 13-gram and few 8-grams intact. Sets of word trigrams move much less (each edit
changes at most three) and ignore order, so the Jaccard similarity between an item and
its copy stays high. Measured on MMLU / HellaSwag / ARC / SQuAD items with the
benchmark's edits (casing, punctuation, 1-3 word edits): 95% of edited copies keep
J >= 0.62, while the most similar other item on the same subject stays below 0.3 for
99.9% of items. Trigrams rather than bigrams because templated suites share bigrams:
with bigrams 52% of data2text items have a sibling at J > 0.5, with trigrams 5.5%.

Which training text? Computing a signature for every training row would cost
`num_perm` operations per token, and a row is often much longer than the item inside it.
So the detector only looks where the scan's prefilter already found exact 5-gram hits:
hits within `minhash_gap` tokens of each other in one row form a *segment* (slightly
widened), and each segment's MinHash is looked up in a datasketch MinHashLSH built over
the items. LSH candidates are then verified by their estimated Jaccard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.leaks.ngrams import ngram_hashes

_SCHEME = "affine64"  # our shingle hashes are already 64-bit mixed values
_EXTEND = 2  # tokens added on each side of a segment: edits at an item's edges break the anchors there


@dataclass
class MinHashIndex:
    """Item signatures and the LSH over them.

    Attributes:
        permutations: datasketch permutation parameters, shared by every signature.
        signatures: uint64 (n_items, num_perm); rows of unindexed items are unused.
        indexed: bool per item: long enough to be in the LSH.
        sizes: int32 per item: number of distinct shingles.
        lsh: datasketch MinHashLSH keyed by item index.
    """

    permutations: Any
    signatures: np.ndarray
    indexed: np.ndarray
    sizes: np.ndarray
    lsh: Any
    num_perm: int
    shingle: int
    threshold: float


def shingles(th: np.ndarray, size: int) -> np.ndarray:
    """Distinct token `size`-gram hashes of a token-hash array (the whole text if shorter)."""
    if len(th) == 0:
        return np.zeros(0, np.uint64)
    if len(th) < size:
        return ngram_hashes(th, len(th))
    return np.unique(ngram_hashes(th, size))


def _signature(sh: np.ndarray, permutations: Any, num_perm: int):
    from datasketch import MinHash

    m = MinHash(num_perm=num_perm, hashfunc=int, permutations=permutations, scheme=_SCHEME)
    if len(sh):
        m.update_batch(sh.tolist())
    return m


def build_minhash_index(all_th: np.ndarray, offsets: np.ndarray, cfg: Any) -> MinHashIndex:
    """Signatures and LSH for every item of at least `cfg.minhash_min_tokens` tokens."""
    from datasketch import MinHash, MinHashLSH

    n = len(offsets) - 1
    template = MinHash(num_perm=cfg.minhash_perm, seed=1, scheme=_SCHEME)
    perms = template.permutations
    sigs = np.zeros((n, cfg.minhash_perm), dtype=np.uint64)
    indexed = np.zeros(n, bool)
    sizes = np.zeros(n, np.int32)
    lsh = MinHashLSH(threshold=cfg.minhash_threshold, num_perm=cfg.minhash_perm)
    with lsh.insertion_session() as session:
        for i in range(n):
            th = all_th[offsets[i]:offsets[i + 1]]
            if len(th) < cfg.minhash_min_tokens:
                continue
            sh = shingles(th, cfg.minhash_shingle)
            m = _signature(sh, perms, cfg.minhash_perm)
            sigs[i] = m.hashvalues
            sizes[i] = len(sh)
            indexed[i] = True
            session.insert(i, m, check_duplication=False)
    return MinHashIndex(perms, sigs, indexed, sizes, lsh, cfg.minhash_perm, cfg.minhash_shingle, cfg.minhash_threshold)


@dataclass
class Segment:
    """A stretch of one training row that looks like some eval text."""

    row: int        # chunk-local row
    start: int      # chunk token index (inclusive)
    end: int        # chunk token index (exclusive)


def find_segments(anchors: np.ndarray, row: np.ndarray, row_start: np.ndarray, cfg: Any) -> list[Segment]:
    """Group anchor positions (sorted chunk token indices of prefilter hits) into segments.

    Args:
        anchors: Positions whose prefilter n-gram is an (informative) eval n-gram.
        row: Chunk-local row of every token.
        row_start: First token of every row (+ end).
        cfg: LeakConfig.
    """
    if len(anchors) < cfg.minhash_min_hits:
        return []
    rows = row[anchors]
    brk = np.ones(len(anchors), bool)
    brk[1:] = (rows[1:] != rows[:-1]) | (np.diff(anchors) > cfg.minhash_gap)
    starts = np.flatnonzero(brk)
    ends = np.append(starts[1:], len(anchors))
    keep = (ends - starts) >= cfg.minhash_min_hits
    out: list[Segment] = []
    win = max(cfg.minhash_max_segment // 2, 16)
    for s_i, e_i in zip(starts[keep], ends[keep]):
        r = int(rows[s_i])
        lo = max(int(anchors[s_i]) - _EXTEND, int(row_start[r]))
        hi = min(int(anchors[e_i - 1]) + cfg.prefilter_n + _EXTEND, int(row_start[r + 1]))
        if hi - lo <= cfg.minhash_max_segment:
            out.append(Segment(r, lo, hi))
        else:  # a dump of many items back to back: compare half-overlapping windows
            for w in range(lo, hi, win // 2):
                out.append(Segment(r, w, min(w + win, hi)))
                if w + win >= hi:
                    break
    return out


def match_segments(th: np.ndarray, segments: list[Segment], mh: MinHashIndex) -> list[tuple[int, float, Segment]]:
    """(item, estimated Jaccard, segment) for every segment/item pair at or above the threshold."""
    out: list[tuple[int, float, Segment]] = []
    for seg in segments:
        sh = shingles(th[seg.start:seg.end], mh.shingle)
        if not len(sh):
            continue
        m = _signature(sh, mh.permutations, mh.num_perm)
        cands = mh.lsh.query(m)
        if not cands:
            continue
        cand = np.fromiter(cands, dtype=np.int64, count=len(cands))
        jac = (mh.signatures[cand] == m.hashvalues[None, :]).mean(axis=1)
        for i, j in zip(cand[jac >= mh.threshold].tolist(), jac[jac >= mh.threshold].tolist()):
            out.append((i, float(j), seg))
    return out
