"""`harness` backend for lm-eval: lm-eval builds requests and computes metrics, we score.

It subclasses lm-eval's `HFLM` so tokenization (context/continuation split, BOS handling,
left truncation, chat templates) is lm-eval's own code; only the parts that run the model
are replaced by a harness engine (the transformers engine's scorer and decoder, or vLLM):
`_loglikelihood_tokens` for multiple-choice tasks, `generate_until` for generative ones
(GSM8K), which lm-eval then filters and scores itself. Results are cached per request,
keyed by model variant and tokens, so base results are reused across runs and adapters.
"""

from __future__ import annotations

from typing import Callable

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from harness.errors import ConfigError
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
        # (context, continuation) or (context,) for generation -> tokens cut on the left
        self.truncated: dict[tuple[str, ...], int] = {}

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

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy generations for lm-eval's generative requests, through the harness engine.

        Tokenization, the context window (the last `max_length - max_gen_toks` tokens) and
        the stop sequences (the task's `until` plus the EOS text) are lm-eval's `hf` rules,
        so the texts lm-eval filters (e.g. GSM8K's answer regex) are the ones `hf` would see.
        """
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

        from harness.types import GenerationParams

        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        groups: dict[GenerationParams, list[int]] = {}
        prompts: list[list[int]] = []
        for n, req in enumerate(requests):
            context, gen_kwargs = req.args
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            if kwargs.get("do_sample") or float(kwargs.get("temperature") or 0.0) > 0.0:
                raise ConfigError(f"benchmark task '{req.task_name}' samples its generations "
                                  f"(do_sample/temperature in its generation_kwargs); harness decodes greedily",
                                  "run a greedy variant of the task (e.g. gsm8k, gsm8k_cot), or use lm_eval directly")
            stops = tuple(handle_stop_sequences(kwargs.pop("until", None), eos=eos))
            max_new = int(kwargs.pop("max_gen_toks"))
            room = self.max_length - max_new
            ids = self.tok_batch_encode([context])[0][0].tolist()
            if len(ids) > room:
                self.truncated[(context,)] = len(ids) - room
                ids = ids[-room:]
            prompts.append(ids)
            groups.setdefault(GenerationParams(max_new_tokens=max_new, stop=stops), []).append(n)
        out: list[str] = [""] * len(requests)
        for params, members in groups.items():
            for n, text in zip(members, self._generate(params, [prompts[n] for n in members])):
                out[n] = text
        return out

    def _generate(self, params, prompts: list[list[int]]) -> list[str]:
        """Cached, resumable, data-parallel greedy decoding of one group of prompts."""
        from harness.evaluate.engines.generate import plan_batches

        keys = [item_key("generate", self.model_key, sha256_json(ids), params.key()) for ids in prompts]
        found = self.result_cache.get_many(keys)
        advance = self.progress(self.label, len(prompts)) if self.progress else None
        plan = plan_batches([len(p) for p in prompts], self.engine.batch_size)
        todo = self.dist.union([j for j, b in enumerate(plan) if not all(keys[i] in found for i in b.indices)])
        computed = sum(len(plan[j].indices) for j in todo)
        self.counts["computed"] += computed
        self.counts["cached"] += len(prompts) - computed
        if advance:
            advance(len(prompts) - computed)

        def decode(j: int) -> dict[str, dict]:
            part = plan[j].indices
            gens = self.engine.generate(self.variant, [prompts[i] for i in part], params)
            fresh = {keys[i]: g.__dict__ for i, g in zip(part, gens)}
            self.result_cache.put_many(fresh)  # each batch committed: an interrupted run resumes
            if advance:
                advance(len(part))
            return fresh

        for fresh in self.dist.map(decode, todo):
            found.update(fresh)
        return [found[k]["text"] for k in keys]
