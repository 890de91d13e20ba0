"""Models for the GPU check, built from config with random weights.

The GPU machine has no network and takes at most 64 MiB along with the working tree, while
SmolLM2-135M is 540 MB in fp32 (98 MB even as the Q4_1 GGUF). So the check builds models
from config on the device: SmolLM2's own config.json and tokenizer (carried, ~4 MB), and a
~1B Llama (Llama-3.2-1B layer shapes, SmolLM2's vocabulary so the same tokenizer serves).
Random weights make accuracy meaningless; agreement between two scorers of the same weights,
|delta log-likelihood| and speed are still what they measure.

    python bench/gpu_models.py --random-smollm2-asset   # only on the GPU machine, see gpu.sh

fills the carried `smollm2-135m` asset folder (config and tokenizer only) with random
weights, so that tests which load the asset by name run there; it refuses to touch a folder
that already has weights.
"""

from __future__ import annotations

import argparse

SHAPES = {
    "smollm2": "SmolLM2-135M config.json (30 layers, d 576, GQA 9/3)",
    "llama-1b": "Llama-3.2-1B shapes (16 layers, d 2048, ffn 8192, GQA 32/8), SmolLM2 vocabulary",
    "tiny": "2 layers, d 64 (smoke runs only)",
}


def tokenizer():
    """SmolLM2's tokenizer, padded on the left as the harness loader sets it."""
    from transformers import AutoTokenizer

    from harness.assets import asset_path

    tok = AutoTokenizer.from_pretrained(asset_path("smollm2-135m"))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def config(name: str, tok):
    """The transformers config of one of SHAPES."""
    from transformers import AutoConfig, LlamaConfig

    from harness.assets import asset_path

    if name == "smollm2":
        return AutoConfig.from_pretrained(asset_path("smollm2-135m"))
    common = dict(vocab_size=len(tok), tie_word_embeddings=True, max_position_embeddings=8192,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if name == "llama-1b":
        return LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                           num_key_value_heads=8, rope_theta=500000.0, **common)
    if name == "tiny":
        return LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, **common)
    raise ValueError(f"unknown model shape '{name}' (known: {', '.join(SHAPES)})")


def build(name: str, tok, device: str, seed: int = 0):
    """A fp32 causal LM of shape `name` with seeded random weights, created on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):  # initialise where it will run: no host-to-device copy of a 4 GB model
        model = AutoModelForCausalLM.from_config(config(name, tok))
    return model.float().eval()


def parameters(model) -> int:
    """Distinct parameters (a tied LM head counted once)."""
    return sum(p.numel() for p in model.parameters())


def random_smollm2_asset() -> None:
    """Write random fp32 weights into the carried smollm2-135m asset folder (GPU machine only)."""
    from harness.assets import asset_path

    folder = asset_path("smollm2-135m")
    if any(folder.glob("*.safetensors")):
        raise SystemExit(f"{folder} already has weights: refusing to overwrite them")
    tok = tokenizer()
    build("smollm2", tok, "cpu").save_pretrained(folder)
    print(f"smollm2-135m asset at {folder}: SmolLM2 config and tokenizer with RANDOM weights (seed 0); "
          "tests that assert the trained model's answers are not meaningful on this machine")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--random-smollm2-asset", action="store_true", required=True)
    ap.parse_args()
    random_smollm2_asset()
