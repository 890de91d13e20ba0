"""The eval-side index every training chunk is matched against (the "broadcast" value).

Built once from the eval items, read-only afterwards, and small next to the training data:
for 20k items of ~60 tokens it is a few tens of MB of numpy arrays plus the MinHash LSH
tables, so it can be shipped to every worker (fork shares it copy-on-write; Spark/Dask/Ray
broadcast it, see docs/leaks-at-scale.md).

Layout. Item tokens live in one flat space: item i's token q has flat id `offsets[i] + q`.

* prefilter: every `prefilter_n`-gram hash of every item (sorted, unique) and a Bitmap
  over them. A training position survives the scan's first step only if its
  prefilter_n-gram may be in this set.
* base table: the `palm_n`-gram (8-gram) hashes with postings (the flat id of every item
  position where that 8-gram starts). All three n-gram rules are derived from runs of
  consecutive 8-gram matches, so no separate 10- or 13-gram tables are needed.
* MinHash signatures of every item and a datasketch MinHashLSH over them.
* exact keys (harness.leaks.exact): whole-text hashes of each item, its inputs and short
  input+answer pairs, for items too short to have the n-grams above.
* gold answers (harness.leaks.contamination): each answer's token hashes and place in its
  item, to tell copies of an item's input from copies that hold its answer too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.leaks.contamination import build_gold
from harness.leaks.exact import build_exact
from harness.leaks.items import EvalItem
from harness.leaks.ngrams import Bitmap, ngram_hashes, token_stream, within_rows
from harness.leaks.normalize import tokens


@dataclass(frozen=True)
class LeakConfig:
    """Detector settings; every field is recorded in the run log.

    Attributes:
        gpt3_n: GPT-3 rule: an item is dirty if any `gpt3_n`-gram of it occurs in training.
        palm_n: PaLM rule n-gram size.
        palm_threshold: PaLM rule: contaminated if this share of the item's n-grams occur.
        llama_min_match: Llama 2 rule: a token is contaminated if it is inside a match of
            at least this many tokens.
        llama_dirty: Llama 2 "dirty" when more than this share of tokens is contaminated.
        llama_clean: Llama 2 "clean" when less than this share is.
        prefilter_n: n-gram size of the bitmap prefilter and of MinHash segment anchors.
        max_ngram_items: Eval 8-grams occurring in more item positions than this are
            boilerplate (MMLU moral_scenarios repeats a 30-token preamble in 895 items);
            they are left out of the base table and of the PaLM denominator, so one common
            phrase in training cannot fan out to hundreds of items. A passage shared by
            more items than this would be ignored the same way; raise it for such suites.
        minhash: Run the MinHash LSH near-duplicate detector.
        minhash_perm: MinHash permutations.
        minhash_shingle: Token n-gram size of MinHash shingles (3: survives word edits
            in short items, yet templated items rarely look alike; see minhash.py).
        minhash_threshold: Estimated Jaccard at or above which a training segment is a
            near-duplicate of an item (also the LSH threshold).
        minhash_min_tokens: Items shorter than this are not MinHash-indexed (too few
            shingles for a stable estimate); n-gram rules still apply.
        minhash_min_hits: Prefilter n-gram hits a training segment needs to be compared.
        minhash_gap: Hits at most this many tokens apart form one segment.
        minhash_max_segment: Longer segments are compared as overlapping windows.
        exact_min_tokens: Exact copies of a short item (or of an input with its answer)
            count inside a training row from this many tokens; shorter ones only when they
            are the whole row (see exact.py).
        evidence_per_item: Training rows quoted per item and detector.
        chunk_bytes: Training bytes per task.
        quote_chars: Maximum length of a quoted span.
        membership_k: Min-K% share of lowest token log-probs.
        membership_z: Robust z-score of the adapter-minus-base shift that flags an item.
    """

    gpt3_n: int = 13
    palm_n: int = 8
    palm_threshold: float = 0.70
    llama_min_match: int = 10
    llama_dirty: float = 0.80
    llama_clean: float = 0.20
    prefilter_n: int = 5
    max_ngram_items: int = 100
    minhash: bool = True
    minhash_perm: int = 128
    minhash_shingle: int = 3
    minhash_threshold: float = 0.5
    minhash_min_tokens: int = 8
    minhash_min_hits: int = 3
    minhash_gap: int = 12
    minhash_max_segment: int = 512
    exact_min_tokens: int = 4
    evidence_per_item: int = 3
    chunk_bytes: int = 8 << 20
    quote_chars: int = 400
    membership_k: float = 0.2
    membership_z: float = 3.5

    def __post_init__(self) -> None:
        if not (2 <= self.prefilter_n <= self.palm_n <= self.llama_min_match <= self.gpt3_n):
            raise ConfigError(
                f"leak n-gram sizes must satisfy 2 <= prefilter_n ({self.prefilter_n}) <= palm_n ({self.palm_n}) "
                f"<= llama_min_match ({self.llama_min_match}) <= gpt3_n ({self.gpt3_n})",
                "keep the defaults 5 <= 8 <= 10 <= 13 or order your values that way")
        for name in ("palm_threshold", "llama_dirty", "llama_clean", "minhash_threshold", "membership_k"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ConfigError(f"leak setting {name}={v} is outside (0, 1]", f"pass a share between 0 and 1 for {name}")
        if self.exact_min_tokens < 1:
            raise ConfigError(f"exact_min_tokens={self.exact_min_tokens} must be >= 1", "use the default 4")
        if self.chunk_bytes < 1024:
            raise ConfigError(f"chunk_bytes={self.chunk_bytes} is too small", "use at least 1024 (default 8 MiB)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalIndex:
    """Read-only lookup structures over the eval items (see module doc)."""

    items: list[EvalItem]
    config: LeakConfig
    offsets: np.ndarray            # int64, len n_items + 1: flat token offsets
    item_of: np.ndarray            # int32, len total tokens: item of each flat token id
    pre_keys: np.ndarray           # uint64 sorted unique prefilter_n-gram hashes
    pre_common: np.ndarray         # bool per pre_keys: boilerplate (ignored as a segment anchor)
    bitmap: Bitmap
    keys: np.ndarray               # uint64 sorted unique palm_n-gram hashes (boilerplate removed)
    post_start: np.ndarray         # int64, len keys + 1
    post_flat: np.ndarray          # int64 flat id where each posting's n-gram starts
    informative: np.ndarray        # int32 per item: palm_n-gram positions kept in the table
    ans_item: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # answers long enough to
    ans_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # judge (>= llama_min_match
    ans_end: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))    # tokens), as flat token ranges
    minhash: Any = None            # harness.leaks.minhash.MinHashIndex or None
    exact: Any = None              # harness.leaks.exact.ExactIndex or None
    gold: Any = None               # harness.leaks.contamination.GoldIndex or None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def ntok(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])


def _table(hashes: np.ndarray, flat: np.ndarray, max_df: int):
    """Sorted unique keys with postings; keys with more than max_df postings dropped."""
    if len(hashes) == 0:
        return np.zeros(0, np.uint64), np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    order = np.argsort(hashes, kind="stable")
    keys, counts = np.unique(hashes[order], return_counts=True)
    common = counts > max_df
    keep_post = np.repeat(~common, counts)
    post_flat = flat[order][keep_post].astype(np.int64)
    kept_counts = counts[~common]
    post_start = np.zeros(len(kept_counts) + 1, np.int64)
    np.cumsum(kept_counts, out=post_start[1:])
    return keys[~common], post_start, post_flat, common


def build_index(items: Sequence[EvalItem], config: LeakConfig | None = None) -> EvalIndex:
    """Tokenise and hash the eval items into an EvalIndex.

    Args:
        items: Eval items; (task, item_id) should be unique (duplicates are kept, each
            gets its own record).
        config: Detector settings.
    """
    cfg = config or LeakConfig()
    items = list(items)
    # One bulk pass; a row of the token stream is an item (same tokens as text_hashes).
    ts = token_stream([it.text for it in items])
    offsets = ts.row_start
    item_of = ts.row
    all_th = ts.hashes

    def grams(n: int) -> tuple[np.ndarray, np.ndarray]:
        # All items at once, as one token stream whose "rows" are the items.
        h = ngram_hashes(all_th, n)
        flat = np.flatnonzero(within_rows(item_of, np.arange(len(h), dtype=np.int64), n))
        return h[flat], flat.astype(np.int64)

    pre_h, _ = grams(cfg.prefilter_n)
    # The prefilter keeps boilerplate n-grams too (they may start a rare 8-gram); they
    # are only ignored as MinHash segment anchors.
    pre_keys, pre_counts = np.unique(pre_h, return_counts=True)
    pre_common = pre_counts > cfg.max_ngram_items
    base_h, base_f = grams(cfg.palm_n)
    keys, post_start, post_flat, _ = _table(base_h, base_f, cfg.max_ngram_items)
    informative = np.bincount(item_of[post_flat], minlength=len(items)).astype(np.int32) if len(post_flat) \
        else np.zeros(len(items), np.int32)
    index = EvalIndex(items=items, config=cfg, offsets=offsets, item_of=item_of, pre_keys=pre_keys,
                      pre_common=pre_common, bitmap=Bitmap(pre_keys), keys=keys, post_start=post_start,
                      post_flat=post_flat, informative=informative)
    index.ans_item, index.ans_start, index.ans_end = _answer_ranges(items, offsets, cfg.llama_min_match)
    index.exact = build_exact(items, cfg.palm_n, cfg.exact_min_tokens)
    index.gold = build_gold(items, all_th, offsets)
    if cfg.minhash:
        from harness.leaks.minhash import build_minhash_index

        index.minhash = build_minhash_index(all_th, offsets, cfg)
    return index


def _answer_ranges(items: list[EvalItem], offsets: np.ndarray, min_tokens: int):
    """Flat token ranges of every gold answer with at least `min_tokens` tokens."""
    it_, st_, en_ = [], [], []
    for i, item in enumerate(items):
        for s, e in item.answers:
            if e - s < 2 * min_tokens - 1:  # cannot hold min_tokens tokens: skip tokenising
                continue
            a = len(tokens(item.text[:s]))
            b = a + len(tokens(item.text[s:e]))
            if b - a >= min_tokens and offsets[i] + b <= offsets[i + 1]:
                it_.append(i)
                st_.append(offsets[i] + a)
                en_.append(offsets[i] + b)
    return np.asarray(it_, np.int64), np.asarray(st_, np.int64), np.asarray(en_, np.int64)
