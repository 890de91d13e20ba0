"""`--engine vllm` for a run: the same checks, hashes, probe and cache identity as the
transformers engine, with vLLM doing the work.

The transformers side is a model built on the meta device from the base's config: no
weights are read, but adapters are checked against its module shapes exactly as with the
transformers engine, and lm-eval takes its tokenization and settings from it.
"""

from __future__ import annotations

from typing import Callable, Sequence

from harness.errors import ConfigError
from harness.hashing import sha256_bytes
from harness.types import Generation, GenerationParams

GENERATION_UNIT = 256  # prompts per vLLM call: vLLM schedules within it; the unit of caching and resuming


def check_vllm(cfg, placement) -> None:
    """Refuse what the vLLM engine cannot do before any model loads."""
    from harness.evaluate.engines.vllm import _import_vllm
    from harness.evaluate.models import resolve_base

    if placement.device_map or placement.load_in:
        raise ConfigError("--engine vllm does not take --device-map or --load-in",
                          "use --tensor-parallel N for a base larger than one GPU (or the transformers engine)")
    kind, _, _ = resolve_base(cfg.base)
    if kind != "folder":
        raise ConfigError(f"--engine vllm needs a transformers model folder, {cfg.base} is a {kind}",
                          "convert it (harness assets path smollm2-135m is one), or use --engine transformers")
    if placement.device == "mps":
        raise ConfigError("--engine vllm does not run on mps", "use --engine transformers")
    _import_vllm()  # not installed, or broken by CUDA-linked extras: one line now, not after minutes


class VLLMRunEngine:
    """A harness `Engine` over `VLLMEngine`, with the run's provenance (base, adapters, probe)."""

    kind = "vllm"
    batch_size = GENERATION_UNIT

    def __init__(self, inner, model, base, adapters):
        self.inner = inner
        self.model = model  # meta-device transformers model: lm-eval's tokenization and settings
        self.tokenizer = inner.tokenizer
        self.base = base
        self.adapters = adapters

    @property
    def context_length(self) -> int:
        """Tokens a prompt and its generation may hold together."""
        return self.inner.max_model_len

    def model_key(self, variant: str) -> str:
        # vLLM's kernels round differently from transformers': results never share cache entries
        adapter = self.adapters[variant].sha256 if variant != "base" else "none"
        return sha256_bytes(f"{self.base.sha256}|{adapter}|{self.base.dtype}|vllm".encode())

    def generate(self, variant: str, prompts: Sequence[Sequence[int]], params: GenerationParams) -> list[Generation]:
        return self.inner.generate(variant, [list(p) for p in prompts], params)

    def loglikelihood(self, variant: str, requests, *, max_length: int | None = None,
                      progress: Callable[[int], None] | None = None) -> list[tuple[float, bool]]:
        if max_length is not None:  # lm-eval's window: the last max_length + 1 tokens of context + continuation
            requests = [(list(ctx)[max(0, len(ctx) + len(cont) - max_length - 1):], list(cont))
                        for ctx, cont in requests]
        out = self.inner.loglikelihood(variant, [(list(c), list(t)) for c, t in requests])
        if progress:
            progress(len(out))
        return out

    def probe(self) -> None:
        """The no-effect probe through vLLM: per-token log-probs of a fixed text, adapter vs base."""
        from harness.evaluate.models import PROBE_TEXT

        ids = self.tokenizer(PROBE_TEXT)["input_ids"]
        steps = [(ids[:k], [ids[k]]) for k in range(1, len(ids))]
        ref = [ll for ll, _ in self.inner.loglikelihood("base", steps)]
        for name, info in self.adapters.items():
            got = [ll for ll, _ in self.inner.loglikelihood(name, steps)]
            info.probe_max_abs_logit_delta = max(abs(a - b) for a, b in zip(got, ref))
            info.probe_quantity = "token log-prob"

    def close(self) -> None:
        self.inner.close()


def open_vllm(cfg, placement, warn: Callable[[str], None]) -> VLLMRunEngine:
    """Hash and check base and adapters, start vLLM with every adapter as a LoRA, probe."""
    import os

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # its INFO lines would bury harness's own output
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from harness.evaluate import models
    from harness.evaluate.engines.vllm import VLLMEngine

    parsed = models.parse_adapters(cfg.adapters)
    kind, location, _, digest, _ = models.locate_base(cfg.base, allow_pickle=cfg.allow_pickle,
                                                      trust_remote_code=cfg.trust_remote_code)
    config = AutoConfig.from_pretrained(location, trust_remote_code=cfg.trust_remote_code)
    with torch.device("meta"):
        shell = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code)
    base = models.BaseInfo(spec=cfg.base, kind=kind, location=str(location), sha256=digest,
                           name_or_path=str(getattr(config, "_name_or_path", "") or cfg.base), dtype=placement.dtype)
    infos = {name: models.check_adapter(name, path, shell, base, cfg.allow_pickle) for name, path in parsed}
    inner = VLLMEngine(location, {n: i.path for n, i in infos.items()}, dtype=placement.dtype, seed=cfg.seed,
                       tensor_parallel=cfg.tensor_parallel)
    if inner.tokenizer.pad_token_id is None:
        inner.tokenizer.pad_token = inner.tokenizer.eos_token
    engine = VLLMRunEngine(inner, shell, base, infos)
    engine.probe()
    models.warn_adapters(infos, warn)
    return engine
