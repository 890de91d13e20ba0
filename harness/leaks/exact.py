"""Exact copies after normalisation: the detector for items too short for the n-gram rules.

An item of fewer than `palm_n` (8) tokens has no 8-gram, so "Capital of France?" +
"Paris" copied into training is invisible to the coverage rules. This detector compares
whole token sequences instead, after the shared normalisation (`harness.leaks.normalize`),
so casing, punctuation and whitespace edits do not hide a copy.

Keys of an item (`build_exact`), each with the share of the item it accounts for:

* "item": its whole text (coverage 1);
* "input+answer": an input followed by a gold answer, a question/answer training pair
  (coverage 1; an MMLU question with its correct option is not most of the item, whose
  text holds every option, so the n-gram coverage rules can miss it at any length);
* "input": an input on its own (`EvalItem.inputs`: rendered prompt, question, context);
  coverage is its token count, capped at the item's non-answer tokens, over the item's
  tokens, so a bare question leaves the answer out as the Llama 2 coverage rule would.

Matching (`find`): a training row (or a text, for `harness train`'s prompts) whose whole
normalised token sequence equals a key; and, for "item" and "input+answer" keys of
`min_tokens` to `palm_n - 1` tokens, such a key anywhere inside a row. Bare inputs are not
searched inside rows: a short generic question ("Which of these is true?") would match
everywhere. A key is the polynomial hash of its whole token sequence (`SpanHashes`; the
n-gram hash before mixing), so rows and windows of any length are hashed from one pass
over a chunk's token hashes, and a byte table on the top bits rejects almost every window
with one gather.

Both `harness leaks` (harness.leaks.blocks) and `harness train`'s overlap refusal
(harness.train.overlap) use this module, so they agree on what a copy is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from harness.leaks.items import EvalItem
from harness.leaks.ngrams import SpanHashes, TokenStream, token_stream, within_rows

KINDS = ("item", "input+answer", "input")
ITEM, PAIR, INPUT = range(3)


@dataclass
class ExactIndex:
    """Key hashes with postings (item, kind, coverage, length), sorted by hash."""

    keys: np.ndarray          # uint64 sorted unique key hashes (unmixed polynomials)
    post_start: np.ndarray    # int64, len keys + 1
    item: np.ndarray          # int32 per posting
    kind: np.ndarray          # int8 per posting, index into KINDS
    coverage: np.ndarray      # float64 per posting (compared with the label thresholds)
    length: np.ndarray        # int32 tokens per posting
    lengths: np.ndarray       # sorted unique key lengths (rows of other lengths cannot match whole)
    contain_lens: tuple[int, ...]  # window lengths searched inside rows
    table: np.ndarray         # bool per value of a hash's top `64 - shift` bits: may be a key
    shift: np.uint64

    def maybe(self, h: np.ndarray) -> np.ndarray:
        """Positions of `h` that may be keys (no false negatives)."""
        return np.flatnonzero(self.table[(h >> self.shift).view(np.int64)])  # < 2**24: a view, no cast


@dataclass
class ExactHits:
    """Matches in a token stream: posting, row, and the chunk token span [start, end)."""

    post: np.ndarray
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray


def _inputs(item: EvalItem) -> tuple[str, ...]:
    if item.inputs:
        return item.inputs
    return (item.text[:item.answers[0][0]],) if item.answers else ()


def build_exact(items: Sequence[EvalItem], palm_n: int = 8, min_tokens: int = 4) -> ExactIndex:
    """Index every item's keys (see module doc).

    Args:
        items: Eval items.
        palm_n: The n-gram window; shorter item / input+answer keys are searched inside rows.
        min_tokens: Shorter keys only match a whole row or text (a 2-token item occurs
            inside almost any text).
    """
    # One bulk tokenisation of item texts, inputs and answers; pairs are hashed from
    # their parts, so long inputs are never copied or tokenised twice.
    texts: list[str] = []
    groups: list[tuple[int, int, int]] = []  # per item: its text's row, inputs end, answers end
    for it in items:
        first = len(texts)
        texts.append(it.text)
        texts += [t for t in _inputs(it) if t]
        mid = len(texts)
        texts += [it.text[s:e] for s, e in it.answers if e > s]
        groups.append((first, mid, len(texts)))
    ts = token_stream(texts)
    rs = ts.row_start
    lens = np.diff(rs)
    single: list[tuple[int, int, int, float]] = []  # (text row, item, kind, coverage)
    pairs: list[tuple[int, int, int]] = []  # (input row, answer row, item)
    for i, (first, mid, end) in enumerate(groups):
        n_item = int(lens[first])
        if not n_item:
            continue
        single.append((first, i, ITEM, 1.0))
        n_input = max(n_item - int(lens[mid:end].sum()), 0)
        for r in range(first + 1, mid):
            if lens[r]:
                single.append((r, i, INPUT, min(int(lens[r]), n_input) / n_item))
                pairs += [(r, a, i) for a in range(mid, end) if lens[a]]
    sh = SpanHashes(ts.hashes)
    row, item, kind, cov = (np.array(c) for c in zip(*single)) if single else (np.zeros(0, np.int64),) * 4
    row = row.astype(np.int64)
    h, ln = [sh(rs[row], rs[row + 1])], [lens[row]]
    item, kind, cov = [item.astype(np.int32)], [kind.astype(np.int8)], [cov.astype(np.float64)]
    if pairs:
        a, b, owner = (np.array(c, np.int64) for c in zip(*pairs))
        h.append(sh.joined((rs[a], rs[a + 1]), (rs[b], rs[b + 1])))
        ln.append(lens[a] + lens[b])
        item.append(owner.astype(np.int32))
        kind.append(np.full(len(pairs), PAIR, np.int8))
        cov.append(np.ones(len(pairs), np.float64))
    return _index(np.concatenate(h), np.concatenate(ln).astype(np.int32), np.concatenate(item),
                  np.concatenate(kind), np.concatenate(cov), palm_n, min_tokens)


def _index(h, ln, item, kind, cov, palm_n: int, min_tokens: int) -> ExactIndex:
    # One posting per (key, item): the strongest kind wins (item, then pair, then input).
    order = np.lexsort((-cov, kind, item, h))
    h, ln, item, kind, cov = h[order], ln[order], item[order], kind[order], cov[order]
    first = np.ones(len(h), bool)
    first[1:] = (h[1:] != h[:-1]) | (item[1:] != item[:-1])
    h, ln, item, kind, cov = h[first], ln[first], item[first], kind[first], cov[first]
    keys, counts = np.unique(h, return_counts=True)
    post_start = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(counts, out=post_start[1:])
    whole = (kind != INPUT) & (ln >= min_tokens) & (ln < palm_n)
    # A byte per slot (not a bit as in ngrams.Bitmap): one gather and no bit arithmetic
    # per window, for at most 16 MiB; ~1.5% of slots set.
    bits = int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 64)), 16, 24))
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, bool)
    table[keys >> shift] = True
    return ExactIndex(keys=keys, post_start=post_start, item=item, kind=kind, coverage=cov, length=ln,
                      lengths=np.unique(ln), contain_lens=tuple(np.unique(ln[whole]).tolist()), table=table,
                      shift=shift)


def find(ts: TokenStream, ex: ExactIndex, contain: bool = True) -> ExactHits:
    """Every key matching a whole row of `ts`, and (with `contain`) every short item or
    input+answer key inside a row."""
    n = len(ts.hashes)
    hits: list[tuple[np.ndarray, ...]] = []
    if not n or not len(ex.keys):
        return _hits(hits)
    sh = SpanHashes(ts.hashes)
    rs, re_ = ts.row_start[:-1], ts.row_start[1:]
    full = np.flatnonzero((re_ > rs) & np.isin(re_ - rs, ex.lengths))
    hits.append(_lookup(sh(rs[full], re_[full]), rs[full], re_[full], ex, whole=True))
    for length in ex.contain_lens if contain else ():
        h = sh.windows(length)
        # Windows across a row boundary are hashed too (slices are cheaper than masking
        # every position); the few that pass the table are dropped here.
        p = ex.maybe(h)
        p = p[within_rows(ts.row, p, length)]
        hits.append(_lookup(h[p], p, p + length, ex, whole=False))
    out = _hits(hits)
    out.row = ts.row[out.start].astype(np.int64) if len(out.start) else out.row
    return out


def _lookup(h: np.ndarray, s: np.ndarray, e: np.ndarray, ex: ExactIndex, whole: bool) -> tuple[np.ndarray, ...]:
    """Postings of the spans [s, e) whose hashes `h` are keys of the right length."""
    cand = ex.maybe(h)
    hc = h[cand]
    k = np.searchsorted(ex.keys, hc)
    k[k == len(ex.keys)] = 0
    ok = ex.keys[k] == hc
    cand, k = cand[ok], k[ok]
    cnt = ex.post_start[k + 1] - ex.post_start[k]
    post = np.repeat(ex.post_start[k] - (np.cumsum(cnt) - cnt), cnt) + np.arange(int(cnt.sum()), dtype=np.int64)
    at = np.repeat(cand, cnt)
    keep = ex.length[post] == (e[at] - s[at])
    if not whole:
        keep &= ex.kind[post] != INPUT  # a bare input counts only as a whole row (module doc)
    return post[keep], s[at][keep], e[at][keep]


def _hits(parts: list[tuple[np.ndarray, ...]]) -> ExactHits:
    z = np.zeros(0, np.int64)
    if not parts:
        return ExactHits(z, z, z, z)
    post, start, end = (np.concatenate([p[j] for p in parts]).astype(np.int64) for j in range(3))
    return ExactHits(post, np.zeros(len(post), np.int64), start, end)


def match_texts(texts: Sequence[str], ex: ExactIndex) -> list[tuple[int, int]]:
    """(text index, item index) for every text that is, as a whole, a key of an item."""
    hits = find(token_stream(list(texts)), ex, contain=False)
    return sorted(set(zip(hits.row.tolist(), ex.item[hits.post].tolist())))
