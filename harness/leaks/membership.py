"""Membership signal: Min-K% log-probability of each eval item, adapter vs base.

Min-K% (Shi et al., 2023, "Detecting Pretraining Data from Large Language Models"): score
a text by the mean of its k% lowest token log-probabilities. A text seen in training
has fewer surprising tokens, so its score is higher. Absolute scores mostly measure how
predictable a text is; the base model is the natural reference, so the signal here is the
*shift* `score(adapter) - score(base)` per item. Fine-tuning moves every in-domain item a
little; an item the adapter was trained on moves much more than its peers, so items are
flagged by a robust z-score of the shift within their task:

    z = 0.6745 * (shift - median(shift)) / MAD(shift)          (Iglewicz-Hoaglin)

flagged when z >= `z_threshold` (default 3.5) and the shift is positive. Tasks with fewer
than `MIN_GROUP` items are pooled. The signal is statistical, so on its own it only ever
makes an item "suspect".

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from harness.errors import ConfigError
from harness.leaks.items import EvalItem

MIN_GROUP = 20


@dataclass
class MembershipResult:
    """Per-item Min-K% scores and flags.

    Attributes:
        per_item: One dict per input item, in order: base, adapter, shift, z, flagged.
        summary: adapter, k, z_threshold, and per task: n, median and MAD of the shift,
            flagged count.
    """

    items: list[EvalItem]
    per_item: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def scores(self) -> dict[tuple[str, str], dict[str, Any]]:
        """{(task, item_id): scores}; for keys shared by several items, the last one."""
        return {it.key: s for it, s in zip(self.items, self.per_item)}


def min_k_scores(model: Any, tokenizer: Any, texts: Sequence[str], k: float = 0.2, *, max_tokens: int = 512,
                 batch_tokens: int = 1024, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Min-K% score of each text under one model.

    Args:
        model: A causal LM (already in eval mode).
        tokenizer: Its tokenizer.
        texts: Texts to score.
        k: Share of lowest-probability tokens averaged.
        max_tokens: Texts are cut to this many tokens.
        batch_tokens: Padded tokens per forward pass (bounds the logits' memory).
        progress: Called with the number of texts finished after each batch.

    Returns:
        float64 array; NaN for texts with fewer than two tokens.
    """
    import torch

    enc = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    out = np.full(len(enc), np.nan)
    i = 0
    with torch.inference_mode():
        while i < len(order):
            j = i + 1
            while j < len(order) and (j - i + 1) * max(len(enc[order[j]]), 1) <= batch_tokens:
                j += 1
            idx = order[i:j]
            width = max(max(len(enc[t]) for t in idx), 1)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, t in enumerate(idx):
                # Right padding: real tokens keep positions 0..n-1, as in an unpadded pass.
                ids[r, :len(enc[t])] = torch.tensor(enc[t], dtype=torch.long)
                mask[r, :len(enc[t])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device)).squeeze(-1)
            valid = mask[:, 1:].bool()
            for r, t in enumerate(idx):
                lp = logp[r][valid[r].to(device)]
                if lp.numel() == 0:
                    continue
                m = max(1, math.ceil(k * lp.numel()))
                out[t] = float(torch.sort(lp).values[:m].mean())
            if progress is not None:
                progress(len(idx))
            i = j
    return out


def robust_z(values: np.ndarray) -> np.ndarray:
    """Modified z-scores (0.6745 (x - median) / MAD); 0 where the spread is zero or NaN."""
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    z = np.zeros(len(v))
    if ok.sum() < 2:
        return z
    med = np.median(v[ok])
    mad = np.median(np.abs(v[ok] - med))
    if mad > 0:
        z[ok] = 0.6745 * (v[ok] - med) / mad
    else:  # more than half the shifts equal: fall back to the mean absolute deviation
        mean_ad = np.mean(np.abs(v[ok] - med))
        if mean_ad > 0:
            z[ok] = (v[ok] - med) / (1.253314 * mean_ad)
    return z


def membership(bundle: Any, items: Sequence[EvalItem], adapter: str | None = None, *, k: float = 0.2,
               z_threshold: float = 3.5, max_tokens: int = 512, batch_tokens: int = 1024,
               progress: Callable[[str, int, int], None] | None = None) -> MembershipResult:
    """Min-K% shift (adapter minus base) for each item, with robust-z outliers flagged.

    Args:
        bundle: A `harness.evaluate.models.ModelBundle` holding the base and the adapter.
        items: Eval items.
        adapter: Adapter name in the bundle; may be omitted when it holds exactly one.
        k: Min-K% share.
        z_threshold: Robust z at or above which a positive shift is flagged.
        max_tokens: Items are cut to this many tokens.
        batch_tokens: Padded tokens per forward pass.
        progress: Called as progress(model_name, done, total).

    Raises:
        ConfigError: no adapter, or an ambiguous one.
    """
    names = list(getattr(bundle, "adapters", {}) or {})
    if adapter is None:
        if len(names) != 1:
            raise ConfigError(f"membership needs one adapter to compare with the base, the model has {len(names)}",
                              "pass --adapter PATH (exactly one)")
        adapter = names[0]
    items = list(items)
    texts = [it.text for it in items]
    scores = {}
    for name in ("base", adapter):
        done = 0

        def tick(n: int, name: str = name) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(name, done, len(texts))

        with bundle.use(name) as model:
            scores[name] = min_k_scores(model, bundle.tokenizer, texts, k, max_tokens=max_tokens,
                                        batch_tokens=batch_tokens, progress=tick)
    shift = scores[adapter] - scores["base"]
    z = np.zeros(len(items))
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.task, []).append(i)
    small = [i for g in groups.values() if len(g) < MIN_GROUP for i in g]
    per_task: dict[str, Any] = {}
    for task, idx in groups.items():
        if len(idx) >= MIN_GROUP:
            z[idx] = robust_z(shift[idx])
    if small:
        z[small] = robust_z(shift[small])
    flagged = (z >= z_threshold) & (shift > 0) & ~np.isnan(shift)
    for task, idx in groups.items():
        s = shift[idx][~np.isnan(shift[idx])]
        med = float(np.median(s)) if len(s) else float("nan")
        per_task[task] = {"n": len(idx), "median_shift": round(med, 4),
                          "mad_shift": round(float(np.median(np.abs(s - med))), 4) if len(s) else None,
                          "flagged": int(flagged[idx].sum()), "pooled": len(idx) < MIN_GROUP}

    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(float(x), 4)

    per_item = [{"base": num(scores["base"][i]), "adapter": num(scores[adapter][i]), "shift": num(shift[i]),
                 "z": round(float(z[i]), 3), "flagged": bool(flagged[i])} for i in range(len(items))]
    summary = {"adapter": adapter, "k": k, "z_threshold": z_threshold, "max_tokens": max_tokens,
               "flagged": int(flagged.sum()), "per_task": per_task}
    return MembershipResult(items, per_item, summary)
