"""`harness` backend for lm-eval: lm-eval builds requests and computes metrics, we score.

It subclasses lm-eval's `HFLM` so tokenization (context/continuation split, BOS handling,
left truncation) is lm-eval's own code; only `_loglikelihood_tokens`, the part that runs
the model, is replaced by a harness engine (the transformers engine's scorer, or vLLM).
Results are cached per request, keyed by model variant and tokens, so base results are
reused across runs and adapters.
"""

from __future__ import annotations

from typing import Callable

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from harness.evaluate.distributed import Dist
from harness.evaluate.engines.cache import ResultCache, item_key
from harness.hashing import sha256_json

CHUNK = 512  # requests per unit: committed to the cache as one (resume), computed on one rank


@register_model("harness")
class HarnessLM(HFLM):
    """An lm-eval LM whose scoring goes through a harness `Engine`.

    `pretrained` is a transformers model for lm-eval's tokenization and settings only (with
    the vLLM engine its weights are never materialised). Set `variant` and `model_key`
    before each evaluation, so cached log-likelihoods never cross variants.
    """

    def __init__(self, pretrained, tokenizer, engine=None, cache: ResultCache | None = None,
                 progress: Callable[[str, int], Callable[[int], None]] | None = None,
                 dist: Dist | None = None, **kwargs):
        super().__init__(pretrained=pretrained, tokenizer=tokenizer, **kwargs)
        if engine is None:
            from harness.evaluate.engines.hf import TransformersEngine

            engine = TransformersEngine.for_model(pretrained, tokenizer)
        self.engine = engine
        self.result_cache = cache or ResultCache(None)
        self.progress = progress
        self.dist = dist or Dist()
        self.variant = "base"
        self.model_key = ""
        self.label = ""
        self.counts = {"computed": 0, "cached": 0}
        self.truncated: dict[tuple[str, str], int] = {}  # (context, continuation) -> tokens cut on the left

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        # lm-eval passes `disable` to its tokenizing bar explicitly, so TQDM_DISABLE cannot
        # silence it; the harness shows its own progress bar per model instead.
        return super().loglikelihood(requests, disable_tqdm=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        pairs = [(list(ctx), list(cont)) for _, ctx, cont in requests]
        for (key, ctx, cont) in requests:  # lm-eval's window: the last max_length + 1 tokens are scored
            over = len(ctx) + len(cont) - self.max_length - 1
            if over > 0:
                self.truncated[tuple(key)] = over
        params = {"max_length": self.max_length}
        keys = [item_key("loglikelihood", self.model_key, sha256_json(p), params) for p in pairs]
        found = self.result_cache.get_many(keys)
        advance = self.progress(self.label, len(pairs)) if self.progress else None
        todo = self.dist.union([i for i, k in enumerate(keys) if k not in found])
        self.counts["cached"] += len(pairs) - len(todo)
        self.counts["computed"] += len(todo)
        if advance:
            advance(len(pairs) - len(todo))
        units = [todo[lo:lo + CHUNK] for lo in range(0, len(todo), CHUNK)]

        def compute(part: list[int]) -> dict[str, dict]:
            got = self.engine.loglikelihood(self.variant, [pairs[i] for i in part], max_length=self.max_length,
                                            progress=advance)
            fresh = {keys[i]: {"ll": ll, "greedy": g} for i, (ll, g) in zip(part, got)}
            self.result_cache.put_many(fresh)  # each unit committed: an interrupted run resumes
            return fresh

        for fresh in self.dist.map(compute, units):
            found.update(fresh)
        return [(found[k]["ll"], found[k]["greedy"]) for k in keys]
