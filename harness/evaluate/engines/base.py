"""The engine seam: what to ask a model variant, apart from how it runs.

Suites, lm-eval benchmarks and the no-effect probe talk to an `Engine`, never to a torch
model: the transformers engine (CPU, GPU, device map, quantized base; `engines/hf.py`) and
the vLLM engine (one `LoRARequest` per adapter; `engines/vllm.py`) both satisfy it, and
data-parallel launches split the work units an engine is given (`evaluate/distributed.py`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from harness.types import Generation, GenerationParams

ENGINES = ("transformers", "vllm")


class Engine(Protocol):
    """One base model with its adapters ("variants": "base" and each adapter's name).

    Attributes:
        kind: "transformers" or "vllm" (part of every cache key).
        tokenizer: The base's Hugging Face tokenizer (chat template; lm-eval tokenizes with it).
        max_length: Context length used for truncation.
        context_length: Tokens a prompt plus its generation may hold (None: no limit known);
            longer suite prompts lose tokens on the left (see `suite_eval.fit_prompts`).
        batch_size: Prompts per generation unit: a unit is the grain of caching, resuming
            and data-parallel splitting.
    """

    kind: str
    tokenizer: Any
    max_length: int
    batch_size: int

    def model_key(self, variant: str) -> str:
        """Content identity of a variant (weights, adapter, dtype, engine), for cache keys."""
        ...

    def generate(self, variant: str, prompts: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
        """Greedy-decode token-id prompts as `variant`; one result per prompt, in order."""
        ...

    def loglikelihood(self, variant: str, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                      max_length: int | None = None, progress: Callable[[int], None] | None = None
                      ) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, continuation is greedy) per (context, continuation);
        contexts longer than `max_length` lose tokens on the left, as lm-eval's `hf` does."""
        ...

    def close(self) -> None:
        ...
