"""The transformers engine: one loaded base (CPU, GPU, device map or quantized) with its
PEFT adapters switched in place; harness's own decode loop and benchmark scorer."""

from __future__ import annotations

from typing import Callable, Sequence

from harness.types import Generation, GenerationParams


class TransformersEngine:
    """An `Engine` over a `models.ModelBundle`.

    Args:
        bundle: The loaded base and adapters.
        batch_size: Prompts decoded together.
        order_seed: Shuffle the scorer's batch composition (noise calibration); None sorts by length.
    """

    kind = "transformers"

    def __init__(self, bundle, batch_size: int = 16, order_seed: int | None = None):
        self.bundle = bundle
        self.tokenizer = bundle.tokenizer
        self.batch_size = batch_size
        self.order_seed = order_seed
        self._forward: tuple[str, object] | None = None  # (variant, fused forward with its adapter merged)

    @classmethod
    def for_model(cls, model, tokenizer, **kwargs) -> "TransformersEngine":
        """An engine over a model already in memory (no adapters switched, no files hashed)."""
        from harness.evaluate.models import BaseInfo, ModelBundle

        info = BaseInfo(spec="in-memory", kind="memory", location="", sha256="",
                        name_or_path=str(getattr(model.config, "_name_or_path", "")),
                        dtype=str(model.dtype).removeprefix("torch."))
        return cls(ModelBundle(model, tokenizer, info, {}), **kwargs)

    @property
    def model(self):
        return self.bundle.model

    @property
    def base(self):
        return self.bundle.base

    @property
    def adapters(self):
        return self.bundle.adapters

    @property
    def context_length(self) -> int | None:
        """Tokens a prompt and its generation may hold together (None: the model sets no limit)."""
        cfg = self.model.config
        n = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        return int(n) if n else None

    def model_key(self, variant: str) -> str:
        return self.bundle.model_key(variant)

    def generate(self, variant: str, prompts: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
        from harness.evaluate.engines.generate import generate_batch

        with self.bundle.use(variant) as model:
            return generate_batch(model, self.tokenizer, prompts, params)

    def loglikelihood(self, variant: str, requests: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                      max_length: int | None = None, progress: Callable[[int], None] | None = None
                      ) -> list[tuple[float, bool]]:
        from harness.evaluate.forgetting import scorer
        from harness.evaluate.forgetting.forwards import forward_for

        with self.bundle.use(variant) as model:
            # the forward merges the variant's LoRA weights once and is kept while the variant is
            if self._forward is None or self._forward[0] != variant:
                self._forward = (variant, forward_for(model))
            return scorer.score(model, requests, max_length or 2048, progress=progress,
                                order_seed=self.order_seed, forward=self._forward[1])

    def close(self) -> None:
        self._forward = None
