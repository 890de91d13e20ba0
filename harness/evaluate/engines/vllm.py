"""vLLM engine: the base loaded once, every adapter served as a `LoRARequest`.

`VLLMEngine` implements the engine seam (`kind`, `tokenizer`, `variants`, `max_length`,
`generate`, `loglikelihood`, `close`) with the semantics of the transformers engine:

- `generate`: greedy decoding, `max_new_tokens`, stop strings. vLLM stops early on the stop
  strings and on the EOS ids (the tokenizer's and the generation config's, as the
  transformers engine collects them), but the reported text is rebuilt from the generated
  token ids with the base's HF tokenizer (`skip_special_tokens=True`) and cut at the first
  stop string (excluded), so text, `new_tokens` (EOS counted, stop-string tokens counted up
  to the one that completed the stop) and `stopped_by` ("stop", "eos", "length") are the
  transformers engine's. `latency_s` is the wall time of the variant's whole call (vLLM
  batches every prompt together; the transformers engine reports each row's own finish).
- `loglikelihood`: (context, continuation) token pairs, left-truncated by the transformers
  scorer's rule (the last `max_length + 1` tokens of context + continuation; the first is
  only conditioned on). Each distinct sequence goes through vLLM once with
  `prompt_logprobs=0` and `max_tokens=1`: vLLM then returns the log-prob and the rank of
  every prompt token; the sum over the continuation is the log-likelihood and "greedy"
  means every continuation token has rank 1.
- Variants: "base" runs without a LoRA request, an adapter name with its `LoRARequest`.
  Every vLLM call carries exactly one variant, and `max_loras=1` keeps vLLM's scheduler
  from batching two adapters together: on CPU, vLLM 0.32's LoRA ops apply an adapter to base
  rows of a mixed batch (measured: 9/16 base rows), one variant per call is exact.

Context length: vLLM needs at least one token of room after a prompt, so a prompt may have
at most `max_model_len - 1` tokens; a scored window is `max_length + 1` tokens, hence
`max_length = max_model_len - 2` (8190 for SmolLM2).

LoRA settings come from the adapters' `adapter_config.json`: `max_lora_rank` is the largest
rank (including `rank_pattern`) rounded up to a rank vLLM supports, `lora_target_modules`
the union of the target modules (vLLM 0.32 on CPU crashes on `prompt_logprobs` with LoRA
unless they are given). On CPU the KV cache is sized by bytes (`kv_cache_bytes`, default
1 GiB; vLLM's default sizing refuses to start on a 24 GB machine); on CUDA vLLM's own
`gpu_memory_utilization` sizing applies unless `kv_cache_bytes` is given.

Processes: vLLM runs the model in an engine-core process and on CPU always starts it with
the `spawn` method, so the child re-imports the parent's `__main__`. A script that builds a
`VLLMEngine` must do it under `if __name__ == "__main__":`. Inside pytest it works as is
(pytest's own entry points are guarded; tests/test_vllm_engine.py builds one engine in a
module-scoped fixture). `VLLM_ENABLE_V1_MULTIPROCESSING=0` keeps everything in-process and
starts faster, but measured ~8x slower generation on this CPU, so it is not used.

vLLM is imported only when an engine is built: harness imports without it. Install it with
`ci/install-vllm.sh VENV` (it pins transformers/numpy to versions both accept and removes
the CUDA-linked torchvision/torchaudio/torchcodec and triton that vLLM's CPU wheel pulls in).
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.errors import ConfigError, ModelError
from harness.types import Generation, GenerationParams

INSTALL = "ci/install-vllm.sh .venv"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
CPU_KV_CACHE_BYTES = 1 << 30
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks (0.32)
SCORE_CHUNK = 256  # distinct sequences per log-likelihood call: bounds the prompt-logprob objects held


def _import_vllm():
    try:
        import vllm  # noqa: F401
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != "vllm":
            raise ConfigError(f"--engine vllm: vLLM is installed but cannot be imported (missing {exc.name})",
                              f"install it with: {INSTALL}") from exc
        raise ConfigError("--engine vllm needs vLLM, which is not installed", f"install it with: {INSTALL}") from exc
    except (ImportError, OSError, RuntimeError) as exc:  # CUDA-linked torchvision & co. break the import
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--engine vllm: vLLM is installed but cannot be imported ({first})",
                          f"install it with: {INSTALL} (it removes the CUDA-linked torchvision/torchaudio/"
                          "torchcodec that break it)") from exc
    return LLM, SamplingParams, TokensPrompt, LoRARequest


def supported_ranks() -> tuple[int, ...]:
    """The LoRA ranks this vLLM accepts for `max_lora_rank`."""
    try:
        from typing import get_args

        from vllm.config.lora import MaxLoRARanks

        return tuple(sorted(int(r) for r in get_args(MaxLoRARanks))) or VLLM_RANKS
    except Exception:  # older/newer layout: the 0.32 list
        return VLLM_RANKS


def _weight_modules(folder: Path) -> set[str]:
    """Module suffixes that carry LoRA weights (for regex `target_modules`)."""
    from safetensors import safe_open

    found: set[str] = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                parts = key.split(".")
                for marker in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
                    if marker in parts:
                        found.add(parts[parts.index(marker) - 1])
    return found


def lora_settings(adapters: dict[str, Path], ranks: Sequence[int] = VLLM_RANKS,
                  max_lora_rank: int | None = None) -> tuple[int, list[str]]:
    """(max_lora_rank, lora_target_modules) covering every adapter."""
    biggest, modules = 0, set()
    for name, folder in adapters.items():
        path = Path(folder) / "adapter_config.json"
        if not path.is_file():
            raise ModelError(f"adapter '{name}': no adapter_config.json in {folder}", "pass a PEFT LoRA adapter folder")
        cfg = json.loads(path.read_text())
        if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
            raise ModelError(f"adapter '{name}' is {cfg.get('peft_type')}, vLLM serves LoRA adapters only",
                             "use the transformers engine for this adapter")
        if cfg.get("use_dora"):
            raise ModelError(f"adapter '{name}' is a DoRA adapter, which vLLM does not serve",
                             "use the transformers engine for this adapter")
        biggest = max([biggest, int(cfg.get("r") or 8), *(int(v) for v in (cfg.get("rank_pattern") or {}).values())])
        targets = cfg.get("target_modules")
        if isinstance(targets, str) or not targets:  # a regex or "all-linear": read the weights instead
            got = _weight_modules(Path(folder))
            if not got:
                raise ModelError(f"adapter '{name}': cannot tell its target modules from {folder}",
                                 "save it with PEFT (safetensors weights, target_modules as a list)")
            modules |= got
        else:
            modules |= {str(t).split(".")[-1] for t in targets}
    if max_lora_rank is not None:
        if max_lora_rank < biggest:
            raise ConfigError(f"max_lora_rank {max_lora_rank} is below the adapters' rank {biggest}",
                              f"pass at least {biggest}, or leave it unset")
        biggest = max_lora_rank
    fit = [r for r in sorted(ranks) if r >= biggest]
    if not fit:
        raise ModelError(f"LoRA rank {biggest} is above vLLM's largest supported rank {max(ranks)}",
                         "use the transformers engine for this adapter")
    return fit[0], sorted(modules)


def _eos_ids(folder: Path, tokenizer) -> set[int]:
    """EOS ids as the transformers engine collects them: generation config + tokenizer."""
    ids: set[int] = set()
    try:
        from transformers import GenerationConfig

        sources: list[Any] = [GenerationConfig.from_pretrained(str(folder))]
    except Exception:  # no generation_config.json
        sources = []
    for src in (*sources, tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if eos is None:
            continue
        ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return ids


def _first_stop(text: str, stops: Sequence[str]) -> int:
    return min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)


class VLLMEngine:
    """The base in vLLM, adapters as LoRA requests; see the module docstring.

    Args:
        base_folder: A transformers model folder (config, safetensors weights, tokenizer).
        adapters: name -> PEFT LoRA folder. "base" is reserved for the base model.
        dtype: "float32" (default, the parity mode), "bfloat16" or "float16".
        seed: vLLM's seed (greedy decoding does not sample; kept for provenance).
        tensor_parallel: vLLM `tensor_parallel_size`.
        max_model_len: vLLM context length; default the model's own.
        max_lora_rank: default the adapters' largest rank, rounded up to a supported one.
        kv_cache_bytes: KV cache size; default 1 GiB on CPU, vLLM's own sizing on CUDA.
        llm_kwargs: Anything else for `vllm.LLM` (overrides the settings above).
    """

    kind = "vllm"

    def __init__(self, base_folder: str | Path, adapters: dict[str, Path] | None = None, *, dtype: str = "float32",
                 seed: int = 0, tensor_parallel: int = 1, max_model_len: int | None = None,
                 max_lora_rank: int | None = None, kv_cache_bytes: int | None = None, **llm_kwargs: Any):
        self.base_folder = Path(base_folder)
        self.adapters = {str(n): Path(p) for n, p in (adapters or {}).items()}
        if "base" in self.adapters:
            raise ConfigError("an adapter is named 'base', which names the base model", "rename it with NAME=PATH")
        if dtype not in DTYPES:
            raise ConfigError(f"unknown dtype '{dtype}'", f"use one of {', '.join(sorted(DTYPES))}")
        if max_model_len is not None and max_model_len < 3:
            raise ConfigError(f"max_model_len {max_model_len} is too small", "pass at least 3 (or leave it unset)")
        LLM, self._SamplingParams, self._TokensPrompt, LoRARequest = _import_vllm()
        from transformers import AutoTokenizer

        from vllm.platforms import current_platform

        self.variants = ["base", *self.adapters]
        self.dtype = DTYPES[dtype]
        self.seed = seed
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.base_folder))
        self._eos = _eos_ids(self.base_folder, self.tokenizer)
        args: dict[str, Any] = dict(model=str(self.base_folder), tokenizer=str(self.base_folder), dtype=self.dtype,
                                    seed=seed, tensor_parallel_size=tensor_parallel)
        if max_model_len is not None:
            args["max_model_len"] = max_model_len
        self.on_cpu = bool(current_platform.is_cpu())
        if kv_cache_bytes is not None or self.on_cpu:
            args["kv_cache_memory_bytes"] = int(kv_cache_bytes or CPU_KV_CACHE_BYTES)
        self._lora: dict[str, Any] = {"base": None}
        if self.adapters:
            self.max_lora_rank, self.lora_target_modules = lora_settings(self.adapters, supported_ranks(), max_lora_rank)
            # One adapter per batch (see the module docstring); all stay loaded in host memory.
            args.update(enable_lora=True, max_lora_rank=self.max_lora_rank, max_loras=1,
                        max_cpu_loras=len(self.adapters), lora_target_modules=self.lora_target_modules)
            for i, (name, folder) in enumerate(self.adapters.items(), start=1):
                self._lora[name] = LoRARequest(lora_name=name, lora_int_id=i, lora_path=str(folder.resolve()))
        else:
            self.max_lora_rank, self.lora_target_modules = None, []
        args.update(llm_kwargs)
        self.llm_args = args
        self._llm = LLM(**args)
        self.max_model_len = int(self._llm.llm_engine.model_config.max_model_len)
        self.max_length = self.max_model_len - 2

    # -- the engine seam ------------------------------------------------------------------

    def generate(self, variant: str, prompts: list[list[int]], params: GenerationParams) -> list[Generation]:
        """Greedy-decode token prompts with one variant, in one vLLM call."""
        lora = self._request(variant)
        if not prompts:
            return []
        if params.max_new_tokens <= 0:
            return [Generation("", len(p), 0, 0.0, "length") for p in prompts]
        for p in prompts:
            if not p or len(p) >= self.max_model_len:
                raise ConfigError(f"a prompt of {len(p)} tokens does not fit vLLM's context of {self.max_model_len}",
                                  "shorten the prompt or raise max_model_len")
        stops = tuple(s for s in params.stop if s)
        sp = self._SamplingParams(temperature=0.0, max_tokens=params.max_new_tokens, stop=list(stops) or None,
                                  stop_token_ids=sorted(self._eos), include_stop_str_in_output=False,
                                  skip_special_tokens=True, detokenize=bool(stops))
        start = time.perf_counter()
        outs = self._call(prompts, sp, lora)
        latency = time.perf_counter() - start
        return [self._generation(p, o.outputs[0], stops, params.max_new_tokens, latency) for p, o in zip(prompts, outs)]

    def loglikelihood(self, variant: str, requests: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, every continuation token is the argmax) per pair."""
        lora = self._request(variant)
        window = self.max_length + 1
        seqs: dict[tuple[int, ...], int] = {}
        where: list[tuple[int, int]] = []  # (sequence, first continuation position)
        for ctx, cont in requests:
            if not cont:
                raise ValueError("loglikelihood: empty continuation")
            inp = tuple((list(ctx) + list(cont))[-window:])
            first = len(inp) - len(cont)
            if first < 1:
                raise ValueError("loglikelihood: needs at least one context token before the continuation")
            where.append((seqs.setdefault(inp, len(seqs)), first))
        order = list(seqs)
        sp = self._SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0, detokenize=False)
        per_seq: list[Any] = []
        for lo in range(0, len(order), SCORE_CHUNK):
            part = order[lo:lo + SCORE_CHUNK]
            for seq, out in zip(part, self._call([list(s) for s in part], sp, lora)):
                # position i holds {token: Logprob(logprob, rank)} for token seq[i], given seq[:i]
                per_seq.append([(e[t].logprob, e[t].rank) if e else (0.0, 1) for t, e in zip(seq, out.prompt_logprobs)])
        result = []
        for s, first in where:
            got = per_seq[s][first:]
            result.append((float(sum(lp for lp, _ in got)), all(rank == 1 for _, rank in got)))
        return result

    def close(self) -> None:
        """Stop vLLM's engine process and free the model."""
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        finally:
            del llm, core
            gc.collect()

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------

    def _request(self, variant: str):
        if variant not in self._lora:
            raise ConfigError(f"unknown model variant '{variant}'", f"use one of {', '.join(self.variants)}")
        if self._llm is None:
            raise RuntimeError("VLLMEngine is closed")
        return self._lora[variant]

    def _call(self, prompts: Iterable[Sequence[int]], sp, lora):
        """One vLLM call, one variant: never base and adapter rows together."""
        batch = [self._TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        return self._llm.generate(batch, sp, lora_request=lora, use_tqdm=False)

    def _generation(self, prompt: Sequence[int], out, stops: tuple[str, ...], max_new: int,
                    latency: float) -> Generation:
        tokens = list(out.token_ids)
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        eos = bool(tokens) and tokens[-1] in self._eos and not isinstance(out.stop_reason, str)
        body = tokens[:-1] if eos else tokens
        if stops:
            text = decode(body)
            if _first_stop(text, stops) >= 0:
                # The transformers engine stops at the first token whose decoded prefix holds a
                # stop string; vLLM normally stopped right there, so check that first.
                k = len(body)
                if len(body) > 1 and _first_stop(decode(body[:-1]), stops) >= 0:
                    k = next(j for j in range(1, len(body) + 1) if _first_stop(decode(body[:j]), stops) >= 0)
                text = decode(body[:k])
                return Generation(text=text[:_first_stop(text, stops)], prompt_tokens=len(prompt), new_tokens=k,
                                  latency_s=latency, stopped_by="stop")
            if isinstance(out.stop_reason, str):  # vLLM's incremental detokenizer saw a stop we do not
                return Generation(text=out.text, prompt_tokens=len(prompt), new_tokens=len(body),
                                  latency_s=latency, stopped_by="stop")
        else:
            text = decode(body)
        if eos:
            return Generation(text=text, prompt_tokens=len(prompt), new_tokens=len(body) + 1, latency_s=latency,
                              stopped_by="eos")
        return Generation(text=text, prompt_tokens=len(prompt), new_tokens=len(body), latency_s=latency,
                          stopped_by="length")


def vllm_available() -> bool:
    """Whether `import vllm` works here (without building anything)."""
    try:
        _import_vllm()
    except ConfigError:
        return False
    return True


__all__ = ["VLLMEngine", "lora_settings", "supported_ranks", "vllm_available"]
