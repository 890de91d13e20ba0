"""Open the engine a run asks for: the base loaded once, its adapters attached."""

from __future__ import annotations

from typing import Callable

from harness.errors import ConfigError


def check_engine(cfg, placement) -> None:
    """Engine options that can be refused before any model loads."""
    from harness.evaluate.engines.base import ENGINES

    if cfg.engine not in ENGINES:
        raise ConfigError(f"--engine {cfg.engine!r} is not an engine", f"use one of: {', '.join(ENGINES)}")
    if cfg.tensor_parallel < 1:
        raise ConfigError(f"--tensor-parallel must be at least 1, got {cfg.tensor_parallel}", "pass a positive number")
    if cfg.engine == "transformers" and cfg.tensor_parallel > 1:
        raise ConfigError("--tensor-parallel needs --engine vllm",
                          "add --engine vllm, or use --device-map auto to spread a large base with transformers")
    if cfg.engine == "vllm":
        from harness.evaluate.engines.vllm_open import check_vllm

        check_vllm(cfg, placement)


def open_engine(cfg, placement, warn: Callable[[str], None]):
    """The `Engine` for a `RunConfig` (`cfg.engine`: transformers or vllm) on `placement`."""
    if cfg.engine == "vllm":
        from harness.evaluate.engines.vllm_open import open_vllm

        return open_vllm(cfg, placement, warn)
    from harness.evaluate import models
    from harness.evaluate.engines.hf import TransformersEngine

    bundle = models.load(cfg.base, cfg.adapters, placement=placement, allow_pickle=cfg.allow_pickle,
                         trust_remote_code=cfg.trust_remote_code, warn=warn)
    return TransformersEngine(bundle, batch_size=cfg.batch_size, order_seed=cfg.order_seed)
