"""Which kind of contamination a leaked item has: its input only, or its input with its answer.

A training copy of an item's input (the question, the passage) lets a model recognise the
item; a copy that also holds the gold answer lets it learn the answer. The two inflate a
score by different amounts, so every item labelled contaminated also gets
`contamination: input_only | input_answer`.

The decision is made per training row that matched the item, in the map step (the row's
text is only there), and an item is `input_answer` when any such row is:

* the row is an exact copy of the whole item (unless the answer is shown to the model,
  below), or of one of its inputs followed by a gold answer (harness.leaks.exact kinds
  "item" and "input+answer"); or
* the row holds a gold answer's tokens somewhere that is not aligned with the item's
  input. n-gram matches of at least `llama_min_match` tokens (or of the whole item, for
  shorter items) align row tokens with item tokens. An answer after "Answer:" in a copied
  prompt is not aligned with anything, and a copied answer span of the item text (a
  reference, the correct ending) is aligned with the answer, not the input: both count.
  A SQuAD answer inside a copied passage is aligned with the passage and does not count.
  For items whose answer is shown to the model (MMLU lists its options), the option text
  counts as input; only a further copy of it counts; or
* a MinHash near-duplicate row (edits left no long aligned match) holds a gold answer more
  often than the item's own input does.

Otherwise the item is `input_only`. Short answers are matched as whole normalised token
sequences, so a one-word answer that the matching row happens to contain elsewhere (a
long row, a common word such as "yes") reads as `input_answer`: the split errs towards
the answer having been seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from harness.leaks.ngrams import token_stream

KINDS = ("input_only", "input_answer")


@dataclass
class GoldIndex:
    """Every gold answer of every item, as item-local token ranges and token hashes.

    Answers of item i are answers `first[i]` to `first[i + 1] - 1`.
    """

    first: np.ndarray      # int64, len n_items + 1
    start: np.ndarray      # int64 item-local first token per answer
    end: np.ndarray        # int64 item-local end token per answer
    hashes: np.ndarray     # uint64, every answer's token hashes concatenated
    hash_first: np.ndarray  # int64, len answers + 1
    in_input: np.ndarray   # int32 per answer: occurrences in the item's input tokens
    shown: np.ndarray      # bool per item: answers count as input (EvalItem.answer_shown)

    def has(self, item: int) -> bool:
        return bool(self.first[item + 1] > self.first[item])

    def answers(self, item: int) -> range:
        return range(int(self.first[item]), int(self.first[item + 1]))

    def tokens_of(self, answer: int) -> np.ndarray:
        return self.hashes[self.hash_first[answer]:self.hash_first[answer + 1]]

    def answer_mask(self, item: int, n_tokens: int) -> np.ndarray:
        """Bool per item token: inside a gold answer that the model is not shown."""
        mask = np.zeros(n_tokens, bool)
        if not self.shown[item]:
            for a in self.answers(item):
                mask[self.start[a]:self.end[a]] = True
        return mask


def build_gold(items: Sequence, hashes: np.ndarray, offsets: np.ndarray) -> GoldIndex:
    """Index the gold answers of `items` (EvalItem) from their token hashes.

    Args:
        items: Eval items with `answers` character spans.
        hashes: Token hashes of every item, flat (the index's token stream).
        offsets: Flat offset of each item's first token, plus the end.
    """
    first, start, end, parts, in_input = [0], [], [], [], []
    shown = np.array([bool(getattr(it, "answer_shown", False)) for it in items], bool)
    # Token counts of every answer's prefix and of the answer, in one bulk tokenisation.
    pieces = [t for item in items for s, e in item.answers for t in (item.text[:s], item.text[s:e])]
    counts = np.diff(token_stream(pieces).row_start).tolist() if pieces else []
    k = 0
    for i, item in enumerate(items):
        lo, n = int(offsets[i]), int(offsets[i + 1] - offsets[i])
        spans = []
        for _ in item.answers:
            a = counts[k]
            b = min(a + counts[k + 1], n)
            k += 2
            if b > a:
                spans.append((a, b))
        own = hashes[lo:lo + n]
        answer_tokens = np.zeros(n, bool)
        if not shown[i]:
            for a, b in spans:
                answer_tokens[a:b] = True
        for a, b in spans:
            seq = own[a:b]
            hits = occurrences(own, seq)
            # occurrences inside a (hidden) answer are the answer itself, not the input
            in_input.append(int(sum(not answer_tokens[j:j + len(seq)].any() for j in hits.tolist())))
            start.append(a)
            end.append(b)
            parts.append(seq)
        first.append(len(start))
    lengths = [len(p) for p in parts]
    hash_first = np.zeros(len(parts) + 1, np.int64)
    np.cumsum(lengths, out=hash_first[1:])
    return GoldIndex(first=np.asarray(first, np.int64), start=np.asarray(start, np.int64),
                     end=np.asarray(end, np.int64),
                     hashes=np.concatenate(parts).astype(np.uint64) if parts else np.zeros(0, np.uint64),
                     hash_first=hash_first, in_input=np.asarray(in_input, np.int32), shown=shown)


def occurrences(row: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Start positions of `seq` as a contiguous run inside `row` (token hashes)."""
    m = len(seq)
    if not m or m > len(row):
        return np.zeros(0, np.int64)
    cand = np.flatnonzero(row[:len(row) - m + 1] == seq[0])
    for k in range(1, m):
        if not len(cand):
            break
        cand = cand[row[cand + k] == seq[k]]
    return cand


def answer_rows(gold: GoldIndex, offsets: np.ndarray, min_match: int, ts, runs, exact_pairs: Iterable[tuple[int, int]],
                near_dups: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Item -> first chunk row that holds the item's input with a gold answer (module doc).

    Args:
        gold: The index's gold answers.
        offsets: The index's flat item offsets.
        min_match: Aligned n-gram matches must be this long (llama_min_match), or span
            the whole item.
        ts: The chunk's TokenStream.
        runs: The chunk's n-gram runs (harness.leaks.overlap.Runs).
        exact_pairs: (item, row) of exact copies of an item or of an input with its answer.
        near_dups: (item, row) of MinHash near-duplicates.
    """
    found: dict[int, int] = {}

    def note(item: int, row: int) -> None:
        if row < found.get(item, row + 1):
            found[item] = row

    for it, r in exact_pairs:
        note(it, r)
    ntok = np.diff(offsets)
    pairs: dict[tuple[int, int], list[int]] = {}
    if len(runs.item):
        it_arr = runs.item
        long_enough = runs.length >= np.minimum(min_match, ntok[it_arr])
        with_answers = gold.first[it_arr + 1] > gold.first[it_arr]
        for k in np.flatnonzero(long_enough & with_answers).tolist():
            pairs.setdefault((int(it_arr[k]), int(ts.row[runs.pos[k]])), []).append(k)
    for (it, r), ks in sorted(pairs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if found.get(it, r + 1) <= r:
            continue
        rs, re_ = int(ts.row_start[r]), int(ts.row_start[r + 1])
        row = ts.hashes[rs:re_]
        lo = int(offsets[it])
        hidden = gold.answer_mask(it, int(ntok[it]))
        aligned = np.zeros(len(row), bool)
        for k in ks:
            p0, f0, ln = int(runs.pos[k]) - rs, int(runs.flat[k]) - lo, int(runs.length[k])
            aligned[p0:p0 + ln] |= ~hidden[f0:f0 + ln]
        covered = np.zeros(len(row) + 1, np.int64)
        np.cumsum(aligned, out=covered[1:])
        for a in gold.answers(it):
            seq = gold.tokens_of(a)
            hits = occurrences(row, seq)
            if len(hits) and ((covered[hits + len(seq)] - covered[hits]) < len(seq)).any():
                note(it, r)
                break
    for it, r in near_dups:
        if (it, r) in pairs or found.get(it, r + 1) <= r or not gold.has(it):
            continue
        row = ts.hashes[int(ts.row_start[r]):int(ts.row_start[r + 1])]
        if any(len(occurrences(row, gold.tokens_of(a))) > gold.in_input[a] for a in gold.answers(it)):
            note(it, r)
    return found
