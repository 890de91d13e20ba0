"""Log-likelihood scoring that spends FLOPs only where lm-eval's numbers need them.

Requests are (context tokens, continuation tokens) pairs, built by lm-eval itself. The
scorer feeds each distinct input sequence once (MMLU's four single-token choices share one
forward), computes a prefix shared by neighbouring sequences once (HellaSwag's context
before its four endings, the few-shot block before every question of an MMLU subject),
and applies the LM head only at the positions whose log-probabilities are asked for.
The model passes themselves live in `forwards`: a fused, padding-free pass for Llama-family
models and the model's own decoder for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

MIN_SHARED = 8  # shorter common prefixes are not worth a cache slot


@dataclass
class _Seq:
    tokens: tuple[int, ...]
    first_needed: int  # earliest position whose logits are read
    asks: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)  # (request, start, targets)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _head_of(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return _Head(inner.get_output_embeddings(), getattr(inner.config, "final_logit_softcapping", None))


def build_sequences(requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int) -> list[_Seq]:
    """Deduplicate inputs; lm-eval's left truncation rule is applied first."""
    by_tokens: dict[tuple[int, ...], _Seq] = {}
    for r, (ctx, cont) in enumerate(requests):
        whole = list(ctx) + list(cont)
        inp = tuple(whole[-(max_length + 1):][:-1])
        start = len(inp) - len(cont)
        seq = by_tokens.get(inp)
        if seq is None:
            seq = by_tokens[inp] = _Seq(inp, start)
        seq.first_needed = min(seq.first_needed, start)
        seq.asks.append((r, start, tuple(cont)))
    return sorted(by_tokens.values(), key=lambda s: s.tokens)


def group_sequences(seqs: list[_Seq]) -> list[tuple[int, list[_Seq]]]:
    """Sorted neighbours sharing a prefix form groups: [(prefix length, rows)].

    A run of neighbours is split where splitting saves more prefix tokens than it loses:
    every MMLU prompt starts with the same dozen tokens, but one subject's rows share its
    description (0-shot) or its whole few-shot block (5-shot), a far longer prefix.
    """
    if not seqs:
        return []
    lcp = [min(_lcp(a.tokens, b.tokens), a.first_needed, b.first_needed) for a, b in zip(seqs, seqs[1:])]
    out: list[tuple[int, list[_Seq]]] = []

    def split(lo: int, hi: int, depth: int = 0) -> tuple[int, list[tuple[int, int, int]]]:
        """Best (saved tokens, [(lo, hi, prefix)]) for rows lo..hi (inclusive) of one run."""
        if lo == hi:
            return 0, [(lo, hi, 0)]
        low = min(lcp[lo:hi])
        whole = (low * (hi - lo) if low >= MIN_SHARED else 0, [(lo, hi, low)])
        if depth > 100:  # pathological nesting: keep the run whole rather than recurse on
            return whole
        cuts = [i for i in range(lo, hi) if lcp[i] == low]
        parts, saved, start = [], 0, lo
        for c in cuts + [hi]:
            got, spans = split(start, c, depth + 1)
            saved += got
            parts += spans
            start = c + 1
        return max(whole, (saved, parts), key=lambda x: x[0])

    i = 0
    while i < len(seqs):
        j = i
        while j < len(lcp) and lcp[j] >= MIN_SHARED:
            j += 1
        for lo, hi, prefix in split(i, j)[1]:
            out.append((prefix if prefix >= MIN_SHARED else 0, seqs[lo:hi + 1]))
        i = j + 1
    return out


def score(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int,
          progress: Callable[[int], None] | None = None,
          token_budget: int | None = None, order_seed: int | None = None, forward=None) -> list[tuple[float, bool]]:
    """(sum of continuation log-probs, continuation is the greedy choice) per request.

    Two phases per chunk of groups, both in wide batches because thin matmuls never reach
    the machine's peak: first the shared prefixes of many groups together, then the rows'
    suffixes together, each row attending to its own group's prefix through the cache.
    `order_seed` shuffles rows across batches instead of sorting them by length (same
    results up to float rounding; `harness calibrate` measures exactly that rounding).
    `forward` (from `forwards.forward_for(model)`) can be passed in to reuse it across calls.
    `token_budget` bounds a batch's tokens: 4096 on the CPU (the size the CPU figures were measured with), 16384 on
    an accelerator, whose matmuls need wider batches to fill.
    """
    import torch

    from harness.evaluate.devices import model_device, on_device
    from harness.evaluate.forgetting.forwards import forward_for

    device = model_device(model)
    if token_budget is None:
        token_budget = 4096 if device == "cpu" else 16384
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    groups = group_sequences(build_sequences(requests, max_length))
    with torch.inference_mode(), on_device(device):
        fwd = forward or forward_for(model)
        head = _head_of(model)
        for chunk in _chunks(groups, 8 * token_budget):
            shared = [(g, prefix, rows[0]) for g, (prefix, rows) in enumerate(chunk) if prefix]
            kv = _prefix_kv(fwd, shared, len(chunk), token_budget) if shared else None
            rows = [(g, prefix, r) for g, (prefix, members) in enumerate(chunk) for r in members]
            # A packing forward spends nothing on padding outside attention, which it groups
            # by length itself: its batches are bounded by the token budget alone.
            waste = float("inf") if fwd.packed else 0.15
            for batch in _sub_batches(rows, token_budget, waste, order_seed):
                _score_rows(fwd, head, batch, kv, out)
                if progress:
                    progress(sum(len(r.asks) for _, _, r in batch))
    return out  # type: ignore[return-value]


def _chunks(groups, tokens: int):
    """Consecutive groups with about `tokens` suffix tokens and a prefix cache of at most
    `tokens` slots (groups x longest prefix): bounds the memory the caches take."""
    cur, n, longest = [], 0, 0
    for prefix, rows in groups:
        if cur and (len(cur) + 1) * max(longest, prefix) > tokens:
            yield cur
            cur, n, longest = [], 0, 0
        cur.append((prefix, rows))
        longest = max(longest, prefix)
        n += sum(len(r.tokens) - prefix for r in rows)
        if n >= tokens:
            yield cur
            cur, n, longest = [], 0, 0
    if cur:
        yield cur


def _prefix_kv(fwd, shared, n_groups: int, budget: int) -> list:
    """Per layer (keys, values) of shape [groups, heads, longest prefix, dim]; group g's own
    prefix fills slots [0, p_g), whatever follows is never attended to."""
    import torch

    shared = sorted(shared, key=lambda x: -x[1])
    longest = shared[0][1]
    layers: list = []
    i = 0
    while i < len(shared):
        width = shared[i][1]
        if fwd.packed:  # padding costs attention only: fill the budget with real tokens
            j, total = i, 0
            while j < len(shared) and (j == i or total + shared[j][1] <= budget):
                total += shared[j][1]
                j += 1
            part = shared[i:j]
        else:
            part = shared[i:i + max(1, min(len(shared) - i, budget // width))]
        where = torch.tensor([g for g, _, _ in part])
        for layer, (keys, values) in enumerate(fwd.prefix([list(row.tokens[:p]) for _, p, row in part])):
            if len(layers) <= layer:
                shape = (n_groups, keys.shape[1], longest, keys.shape[3])
                layers.append((keys.new_zeros(shape), values.new_zeros(shape)))
            layers[layer][0][where, :, :width] = keys
            layers[layer][1][where, :, :width] = values
        i += len(part)
    return layers


def _sub_batches(rows, budget: int, waste: float = 0.15, order_seed: int | None = None):
    """Rows of similar suffix length, so right padding stays under `waste` of the batch."""
    rows = sorted(rows, key=lambda x: -(len(x[2].tokens) - x[1]))
    if order_seed is not None:
        import random

        random.Random(order_seed).shuffle(rows)
        waste = float("inf")  # any mix of lengths; only the token budget bounds a batch
    batches, cur, width, real = [], [], 0, 0
    for item in rows:
        n = len(item[2].tokens) - item[1]
        if cur:
            wide = max(width, n) * (len(cur) + 1)
            if wide > (real + n) * (1 + waste) or wide > budget:
                batches.append(cur)
                cur, width, real = [], 0, 0
        cur.append(item)
        width, real = max(width, n), real + n
    if cur:
        batches.append(cur)
    return batches


def _score_rows(fwd, head, batch, kv, out, head_rows: int = 1024) -> None:
    import torch

    n = len(batch)
    front = max(p for _, p, _ in batch)  # cache slots in front of the suffixes
    past = keep = None
    if front:
        # Row i's own group prefix sits in cache slots [0, p_i), the rest of the front is
        # masked out; positions continue from p_i, so RoPE sees what a whole-sequence pass
        # sees. Right padding after the suffix needs no mask under causal attention.
        keep = torch.arange(front)[None, :] < torch.tensor([p for _, p, _ in batch])[:, None]
        groups = torch.tensor([g for g, _, _ in batch])
        past = [(k.index_select(0, groups)[:, :, :front], v.index_select(0, groups)[:, :, :front]) for k, v in kv]
    starts = [0]  # where each row's suffix begins in the packed tokens
    for _, p, r in batch:
        starts.append(starts[-1] + len(r.tokens) - p)
    # Only positions some request reads come back from the model (`read`, row after row).
    read = [starts[k] + q - p for k, (_, p, r) in enumerate(batch) for q in range(r.first_needed, len(r.tokens))]
    hidden = fwd.hidden([list(r.tokens[p:]) for _, p, r in batch], [p for _, p, _ in batch], past, keep, read)
    # The LM head runs many rows per matmul, in slices of about `head_rows` positions to
    # bound the float32 vocabulary-wide logits.
    i = lo = 0
    while i < n:
        j, count = i, 0
        while j < n and (count == 0 or count + _span(batch[j]) <= head_rows):
            count += _span(batch[j])
            j += 1
        logp, greedy = head(hidden[lo:lo + count])
        lo += count
        offset = 0
        for _, _, r in batch[i:j]:
            for req, first, targets in r.asks:
                rel = torch.arange(first - r.first_needed, first - r.first_needed + len(targets)) + offset
                tgt = torch.tensor(targets)
                out[req] = (float(logp[rel, tgt].sum()), bool((greedy[rel] == tgt).all()))
            offset += len(r.tokens) - r.first_needed
        i = j


def _span(item) -> int:
    return len(item[2].tokens) - item[2].first_needed


class _Head:
    """LM head, log-softmax and greedy token for a slice of hidden states.

    The vocabulary-wide float32 logits and log-probs (~200 MB each per 1024 positions) go
    into buffers kept across slices: fresh ones cost page faults on every slice, about a
    fifth of the head's time (HellaSwag reads every continuation token).
    """

    def __init__(self, head, softcap):
        import torch.nn as nn

        self.head, self.softcap = head, softcap
        # A plain bias-free head writes its logits straight into the buffer.
        self.weight = head.weight if type(head) is nn.Linear and head.bias is None else None
        self.logits = self.logp = None

    @staticmethod
    def _buffer(buf, rows: int, width: int):
        import torch

        if buf is None or buf.shape[0] < rows or buf.shape[1] != width:
            buf = torch.empty((rows, width), dtype=torch.float32)
        return buf

    def __call__(self, hidden):
        import torch

        if self.weight is not None and hidden.dtype == torch.float32 == self.weight.dtype:
            self.logits = self._buffer(self.logits, len(hidden), self.weight.shape[0])
            logits = torch.mm(hidden, self.weight.t(), out=self.logits[:len(hidden)])
        else:
            logits = self.head(hidden).float()
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        self.logp = self._buffer(self.logp, *logits.shape)
        logp = torch.log_softmax(logits, -1, out=self.logp[:len(logits)])
        return logp, logits.argmax(-1)
