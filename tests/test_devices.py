"""Where models run: --device/--dtype/--device-map/--load-in/--engine plumbing, checked on
this CPU; the CUDA tests run only where a GPU is visible (bench/gpu.sh runs them)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.errors import ConfigError
from harness.evaluate import devices, models
from tests.test_run import cli, make_suite

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_resolves_to_this_machine_and_its_dtype():
    p = devices.resolve("auto")
    want = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert p.device == want and p.dtype == ("bfloat16" if want != "cpu" else "float32")
    assert devices.resolve("cpu", "bf16").dtype == "bfloat16"


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "is not a device"),
    (["--dtype", "int3"], "unknown dtype"),
    (["--device-map", "balanced"], "--device-map auto"),
    (["--load-in", "3bit"], "--load-in 4bit"),
    (["--engine", "onnx"], "is not an engine"),
    (["--tensor-parallel", "2"], "--tensor-parallel needs --engine vllm"),
] + ([] if torch.cuda.is_available() else [
    (["--device", "cuda"], "no CUDA GPU is visible"),
    (["--device", "cuda:1"], "no CUDA GPU is visible"),
    (["--load-in", "4bit"], "--load-in 4bit needs a CUDA GPU"),
]))
def test_bad_placement_is_one_line_exit_2_before_any_model_loads(tmp_path, args, message):
    suite = make_suite(tmp_path / "arith", n=2)
    # a base that does not exist: reaching the model loader would say so instead
    proc = cli("run", tmp_path / "no-such-model", "--suite", suite, "--out", tmp_path / "o", *args, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_explicit_cpu_is_recorded_in_run_json(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=4, max_new_tokens=3)
    cli("compare", tiny_dir, f"ft={tiny_lora}", "--suite", suite, "--out", tmp_path / "run", "--device", "cpu")
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    placement = meta["provenance"]["placement"]
    assert placement["device"] == "cpu" and placement["dtype"] == "float32" and placement["engine"] == "transformers"
    assert placement["device_map"] is None and placement["load_in"] is None
    assert meta["spec"]["dtype"] == "float32"  # --dtype auto is recorded as what ran
    assert meta["provenance"]["distributed"] == {"world_size": 1}


def test_device_map_auto_switches_adapters_in_place_on_the_one_base(tiny_dir, tiny_lora, tiny_lora2):
    ids = torch.tensor([[1, 200, 300, 400, 500]])
    plain = models.load(str(tiny_dir), [f"a={tiny_lora}", f"b={tiny_lora2}"], probe=False)
    mapped = models.load(str(tiny_dir), [f"a={tiny_lora}", f"b={tiny_lora2}"], probe=False,
                         placement=devices.Placement(device="cpu", device_map="auto"))
    # on a CPU-only machine accelerate keeps every layer on the CPU; the GPU case is spread
    logits = {}
    for name in ("base", "a", "b", "base"):
        with plain.use(name) as m1, torch.no_grad():
            want = m1(input_ids=ids).logits
        with mapped.use(name) as m2, torch.no_grad():
            got = m2(input_ids=ids.to(devices.model_device(m2))).logits.cpu()
        assert torch.allclose(got, want, atol=1e-5), name
        logits[name] = got
    assert not torch.allclose(logits["a"], logits["base"]) and not torch.allclose(logits["a"], logits["b"])


def test_load_in_needs_a_gpu_and_bitsandbytes():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        devices.resolve("cpu", load_in="8bit")


@cuda
@pytest.mark.cuda
def test_cuda_generation_and_scores_match_the_cpu(tmp_path, tiny_dir, tiny_lora):
    suite = make_suite(tmp_path / "arith", n=6, max_new_tokens=4)
    common = ["--suite", suite, "--bench", "hellaswag", "--limit", 4, "--dtype", "float32", "--no-cache"]
    cli("compare", tiny_dir, f"ft={tiny_lora}", *common, "--device", "cpu", "--out", tmp_path / "cpu")
    cli("compare", tiny_dir, f"ft={tiny_lora}", *common, "--device", "cuda", "--out", tmp_path / "gpu")
    meta = json.loads((tmp_path / "gpu" / "run.json").read_text())
    assert meta["provenance"]["placement"]["gpu_name"] and meta["provenance"]["placement"]["peak_gpu_memory_gb"] > 0
    rows = [[json.loads(x) for x in (tmp_path / d / "items.jsonl").read_text().splitlines()] for d in ("cpu", "gpu")]
    for a, b in zip(*rows):
        assert a["item_id"] == b["item_id"] and a["prediction"] == b["prediction"]
        for x, y in zip(a.get("loglikelihoods", []), b.get("loglikelihoods", [])):
            assert abs(x - y) < 1e-3


@pytest.mark.parametrize("command", [
    ["calibrate", "{tiny}", "--suite", "{suite}", "--out", "{tmp}/noise.json"],
    ["train", "{tiny}", "--data", "{tmp}/d.jsonl", "--out", "{tmp}/adapter"],
    ["ab", "{tiny}", "--train", "{tmp}/d.jsonl", "--suite", "{suite}", "--out", "{tmp}/ab"],
])
def test_every_model_command_takes_device(tmp_path, tiny_dir, command):
    suite = make_suite(tmp_path / "arith", n=2)
    (tmp_path / "d.jsonl").write_text('{"prompt": "1+1=", "completion": "2"}\n')
    args = [a.format(tiny=tiny_dir, suite=suite, tmp=tmp_path) for a in command]
    proc = cli(*args, "--device", "tpu", check=False)
    assert proc.returncode == 2 and "tpu" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
