"""Samples to tensors: encoding, the validation split, padded micro-batches, the loss."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from harness.errors import ConfigError
from harness.train.config import TrainConfig
from harness.train.data import Sample
from harness.train.encode import IGNORE, Encoded, encode_sample


def encode_all(tokenizer: Any, samples: list[Sample], cfg: TrainConfig) -> tuple[list[Encoded], list[str], int]:
    """(encoded samples with at least one labelled token, ids of dropped samples, truncated count)."""
    kept, dropped, truncated = [], [], 0
    for s in samples:
        enc = encode_sample(tokenizer, s, cfg.format, cfg.max_length, cfg.add_eos)
        truncated += enc.truncated
        if enc.n_labelled == 0:  # e.g. the completion was cut off entirely
            dropped.append(s.id)
        else:
            kept.append(enc)
    return kept, dropped, truncated


def split_val(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, val): a seeded share of the samples held out for validation loss."""
    import torch

    n_val = max(1, round(len(samples) * fraction))
    if n_val >= len(samples):
        raise ConfigError(f"val_fraction {fraction} leaves no training data ({len(samples)} records)",
                          "lower val_fraction or add data")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed + 7919)).tolist()
    val = set(order[:n_val])
    return [s for i, s in enumerate(samples) if i not in val], [s for i, s in enumerate(samples) if i in val]


class Batcher:
    """Pads micro-batches (right padding) and computes the completion-only loss."""

    def __init__(self, encoded: list[Encoded], pad_id: int, model: Any, autocast: Callable[[], Any]):
        self.encoded = encoded
        self.pad_id = pad_id
        self.model = model
        self.autocast = autocast
        base_forward = model.get_base_model().forward
        self.keep_logits = "logits_to_keep" in inspect.signature(base_forward).parameters and _takes_a_mask(model)

    def tensors(self, idx: list[int]) -> tuple[Any, Any, Any]:
        """(input ids, labels, attention mask) of the micro-batch `idx`, right-padded."""
        import torch

        rows = [self.encoded[i] for i in idx]
        width = max(len(r.input_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, r in enumerate(rows):
            n = len(r.input_ids)
            ids[j, :n] = torch.tensor(r.input_ids)
            labels[j, :n] = torch.tensor(r.labels)
            mask[j, :n] = 1
        return ids, labels, mask

    def labelled(self, idx: list[int]) -> int:
        """Completion tokens (those with a loss) in the micro-batch `idx`."""
        return sum(self.encoded[i].n_labelled for i in idx)

    def loss_sum(self, idx: list[int]) -> tuple[Any, int]:
        """(sum of token cross-entropies over the completion tokens, input tokens)."""
        import torch
        import torch.nn.functional as F

        from harness.evaluate.devices import model_device

        device = model_device(self.model)
        ids, labels, mask = (x.to(device) for x in self.tensors(idx))
        # position t predicts token t+1: keep logits where the next token is labelled
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != IGNORE
        targets = labels[:, 1:][keep[:, :-1]]
        with self.autocast():
            if self.keep_logits:
                logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits
                if logits.dim() != 2 or logits.shape[0] != targets.shape[0]:
                    self.keep_logits = False  # this architecture slices differently: take all logits
            if not self.keep_logits:
                logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits[keep]
        loss = F.cross_entropy(logits.float(), targets, reduction="sum")
        return loss, int(mask.sum())


def _takes_a_mask(model) -> bool:
    """Whether this transformers version accepts a per-row boolean `logits_to_keep` (older
    ones take an int or one index list for all rows). Asked once, on a two-token input,
    with the random state put back: dropout draws stay those of a run that never asked,
    so a resumed training still retraces an uninterrupted one."""
    import torch

    from harness.evaluate.devices import model_device

    device = model_device(model)
    keep = torch.tensor([[True, False]], device=device)
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model(input_ids=torch.zeros((1, 2), dtype=torch.long, device=device), logits_to_keep=keep, use_cache=False)
    except (IndexError, RuntimeError, TypeError):
        return False
    return True


def validation_loss(batcher: Batcher, n: int, batch_size: int) -> float:
    """Token-weighted mean completion loss over the validation samples (no dropout)."""
    import torch

    model = batcher.model
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            idx = list(range(i, min(n, i + batch_size)))
            loss, _ = batcher.loss_sum(idx)
            total += float(loss)
            count += batcher.labelled(idx)
    model.train()
    return total / max(1, count)
