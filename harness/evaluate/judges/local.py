"""A judge that runs in-process: any local transformers folder, .gguf file or asset name.

The model is loaded through `harness.evaluate.models.load` (so the same pickle/remote-code checks
apply) only when some call is not already cached, and decoded greedily in batches by the
harness engine. Greedy decoding makes `temperature` irrelevant; it is not part of the key.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import ConfigError, HarnessError
from harness.evaluate.judges.base import (
    Budget,
    BudgetExhausted,
    CallStats,
    ChatRequest,
    Completion,
    Log,
    PingResult,
    redact,
    register_judge,
)
from harness.evaluate.judges.spec import JudgeSpec


@register_judge("local")
class LocalBackend:
    """Greedy generation with a local causal LM as the judge."""

    def __init__(self, spec: JudgeSpec, stats: CallStats | None = None, budget: Budget | None = None,
                 log: Log | None = None):
        self.spec = spec
        self.stats = stats or CallStats()
        self.budget = budget or Budget(stats=self.stats)
        self.log = log or (lambda msg: None)
        self._bundle: Any = None
        self._identity: dict[str, Any] | None = None

    # ----------------------------------------------------------------- identity

    def _location(self) -> tuple[str, Path | str, str | None]:
        from harness.evaluate.models import resolve_base

        try:
            return resolve_base(self.spec.model)
        except HarnessError as exc:
            raise ConfigError(f"judge.model: {exc.message}", exc.hint) from None

    def identity(self) -> dict[str, Any]:
        """The model's content hash, so a changed folder never reuses stale verdicts."""
        if self._identity is None:
            from harness.hashing import hash_files

            kind, location, gguf_file = self._location()
            digest = None
            if kind == "folder":
                weights = sorted(Path(location).glob("*.safetensors"))
                digest = hash_files(weights) if weights else None
            elif kind == "gguf":
                digest = hash_files([Path(location) / str(gguf_file)])
            if digest is None:  # pickle weights or a hub id: ask the loader
                digest = self._load().base.sha256
            self._identity = {"backend": "local", "weights": digest}
        return self._identity

    def params(self) -> dict[str, Any]:
        return {"greedy": True, "max_tokens": self.spec.max_tokens}

    def close(self) -> None:
        self._bundle = None

    def ping(self, timeout: float = 3.0) -> PingResult:
        """Checks the model resolves to something loadable, without loading it."""
        kind, location, gguf_file = self._location()
        where = str(Path(location) / gguf_file) if gguf_file else str(location)
        if kind == "folder" and not (Path(location) / "config.json").is_file():
            raise ConfigError(f"judge.model: no config.json in {where}",
                              "point judge.model at a transformers model folder or an asset name")
        return PingResult(url=where, status=None, latency_s=0.0, note=f"local {kind} judge (loaded on first use)")

    # ----------------------------------------------------------------- calls

    def _load(self) -> Any:
        if self._bundle is None:
            import os

            from harness.evaluate.devices import resolve
            from harness.evaluate.models import load

            started = time.monotonic()
            placement = resolve(os.environ.get("HARNESS_JUDGE_DEVICE") or self.spec.device)
            self._bundle = load(self.spec.model, placement=placement, probe=False, warn=self.log)
            self.log(f"judge model {self.spec.model} loaded in {time.monotonic() - started:.1f}s")
        return self._bundle

    def _encode(self, tokenizer: Any, request: ChatRequest) -> list[int]:
        messages = request.as_dicts()
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        # A base model without a chat template gets a plain transcript to continue.
        text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages) + "\n\nAssistant:"
        return tokenizer(text)["input_ids"]

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_done: Callable[[ChatRequest, Completion], None]) -> None:
        """Decode every request greedily, `batch_size` at a time, longest prompts first."""
        if not requests:
            return
        from harness.evaluate.engines.generate import generate_batch
        from harness.types import GenerationParams

        bundle = self._load()
        model, tok = bundle.model, bundle.tokenizer
        limit = getattr(model.config, "max_position_embeddings", None)
        params = GenerationParams(max_new_tokens=self.spec.max_tokens)
        encoded: list[tuple[ChatRequest, list[int]]] = []
        for request in requests:
            ids = self._encode(tok, request)
            if limit and len(ids) + self.spec.max_tokens > limit:
                self.stats.add(failures=1)
                self.stats.error("too long")
                on_done(request, Completion(None, error=f"judge prompt of {len(ids)} tokens plus max_tokens "
                                                         f"{self.spec.max_tokens} exceeds the model's {limit}"))
                continue
            encoded.append((request, ids))
        encoded.sort(key=lambda pair: -len(pair[1]))
        size = self.spec.batch_size
        for start in range(0, len(encoded), size):
            batch: list[tuple[ChatRequest, list[int]]] = []
            for request, ids in encoded[start:start + size]:
                try:
                    self.budget.acquire()
                except BudgetExhausted as exc:
                    self.stats.add(failures=1)
                    on_done(request, Completion(None, error=f"budget exhausted: {exc}"))
                    continue
                batch.append((request, ids))
            if not batch:
                continue
            with bundle.use("base") as m:
                gens = generate_batch(m, tok, [ids for _, ids in batch], params)
            for (request, ids), gen in zip(batch, gens):
                self.stats.add(prompt_tokens=len(ids), completion_tokens=gen.new_tokens)
                on_done(request, Completion(redact(gen.text), prompt_tokens=len(ids),
                                            completion_tokens=gen.new_tokens, attempts=1))
