"""Shared fixtures: tiny random models built from config (fast), SmolLM2 (slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_HOME = Path(os.environ.get("HARNESS_HOME") or Path.home() / ".cache" / "harness")


def smollm2_dir() -> Path:
    """The real model folder from the shared asset cache (pulled by `make setup`)."""
    path = REAL_HOME / "assets" / "smollm2-135m"
    if not (path / ".harness-asset.json").is_file():
        pytest.fail("SmolLM2 asset missing: run `make setup` (harness assets pull)")
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Each test gets its own cache, but sees the real assets through a symlink."""
    home = tmp_path / "harness-home"
    home.mkdir()
    if (REAL_HOME / "assets").is_dir():
        (home / "assets").symlink_to(REAL_HOME / "assets")
    monkeypatch.setenv("HARNESS_HOME", str(home))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def build_tiny_model(dest: Path, hidden: int = 64, seed: int = 0, init: float | None = None) -> Path:
    """`init`: a larger weight scale (e.g. 0.1) makes greedy text depend on the prompt
    instead of repeating one token, which generation tests need to mean anything."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **({"initializer_range": init} if init else {}))
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def build_lora(base_dir: Path, dest: Path, seed: int = 1, effect: bool = True, r: int = 4) -> Path:
    """A LoRA adapter; with effect=False it is PEFT's fresh init (B = 0), which changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "down_proj"],
                     init_lora_weights=not effect)
    peft_model = get_peft_model(base, cfg)
    if effect:  # random A and B of a size that visibly moves logits
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    peft_model.save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_lora(tmp_path_factory, tiny_dir) -> Path:
    return build_lora(tiny_dir, tmp_path_factory.mktemp("lora") / "good")


@pytest.fixture(scope="session")
def tiny_lora2(tmp_path_factory, tiny_dir) -> Path:
    return build_lora(tiny_dir, tmp_path_factory.mktemp("lora") / "second", seed=7)


@pytest.fixture(scope="session")
def tiny_lora_inert(tmp_path_factory, tiny_dir) -> Path:
    return build_lora(tiny_dir, tmp_path_factory.mktemp("lora") / "inert", effect=False)
