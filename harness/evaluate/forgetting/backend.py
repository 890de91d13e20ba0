"""`harness` backend for lm-eval: lm-eval builds requests and computes metrics, we score.

It subclasses lm-eval's `HFLM` so tokenization (context/continuation split, BOS handling,
left truncation) is lm-eval's own code; only `_loglikelihood_tokens`, the part that runs
the model, is replaced by `harness.evaluate.forgetting.scorer`. Results are cached per request,
keyed by model variant and tokens, so base results are reused across runs and adapters.
"""

from __future__ import annotations

from typing import Callable

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from harness.evaluate.engines.cache import ResultCache, item_key
from harness.evaluate.forgetting import scorer
from harness.evaluate.forgetting.forwards import forward_for
from harness.hashing import sha256_json


@register_model("harness")
class HarnessLM(HFLM):
    """An lm-eval LM over an already-loaded (PEFT-wrapped) model.

    Set `model_key` to the active variant's key before each evaluation (base weights and
    the active adapter), so cached log-likelihoods never cross variants.
    """

    def __init__(self, pretrained, tokenizer, cache: ResultCache | None = None,
                 progress: Callable[[str, int], Callable[[int], None]] | None = None,
                 order_seed: int | None = None, **kwargs):
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, **kwargs)
        self.result_cache = cache or ResultCache(None)
        self.progress = progress
        self.order_seed = order_seed
        self.model_key = ""
        self.label = ""
        self.counts = {"computed": 0, "cached": 0}

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        # lm-eval passes `disable` to its tokenizing bar explicitly, so TQDM_DISABLE cannot
        # silence it; the harness shows its own progress bar per model instead.
        return super().loglikelihood(requests, disable_tqdm=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        pairs = [(list(ctx), list(cont)) for _, ctx, cont in requests]
        params = {"max_length": self.max_length}
        keys = [item_key("loglikelihood", self.model_key, sha256_json(p), params) for p in pairs]
        found = self.result_cache.get_many(keys)
        advance = self.progress(self.label, len(pairs)) if self.progress else None
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.counts["cached"] += len(pairs) - len(todo)
        self.counts["computed"] += len(todo)
        if advance:
            advance(len(pairs) - len(todo))
        chunk = 512  # commit to the cache regularly so an interrupted run resumes
        forward = forward_for(self.model) if todo else None  # adapters merged once per call, not per chunk
        for lo in range(0, len(todo), chunk):
            part = todo[lo:lo + chunk]
            got = scorer.score(self.model, [pairs[i] for i in part], self.max_length, progress=advance,
                               order_seed=self.order_seed, forward=forward)
            fresh = {keys[i]: {"ll": ll, "greedy": g} for i, (ll, g) in zip(part, got)}
            self.result_cache.put_many(fresh)
            found.update(fresh)
        return [(found[k]["ll"], found[k]["greedy"]) for k in keys]
