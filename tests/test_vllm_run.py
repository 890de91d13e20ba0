"""`harness compare --engine vllm` against the transformers engine on SmolLM2 with two adapters:
the same run log (predictions, scores, probe verdicts), base rows never adapted."""

from __future__ import annotations

import json

import pytest

from tests.conftest import build_lora, smollm2_dir
from tests.test_run import cli

pytest.importorskip("vllm", reason="vLLM is not installed (ci/install-vllm.sh .venv installs it)")
pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_vllm_engine_writes_the_transformers_engines_run(tmp_path):
    base = smollm2_dir()
    a = build_lora(base, tmp_path / "A", seed=1, r=8)
    b = build_lora(base, tmp_path / "B", seed=2, r=8)
    common = ["compare", "smollm2-135m", f"A={a}", f"B={b}", "--suite", "squad-qa", "--bench", "hellaswag",
              "--limit", 6, "--no-cache"]
    cli(*common, "--out", tmp_path / "hf")
    cli(*common, "--engine", "vllm", "--out", tmp_path / "vllm")
    rows = {d: [json.loads(x) for x in (tmp_path / d / "items.jsonl").read_text().splitlines()] for d in ("hf", "vllm")}
    assert len(rows["hf"]) == len(rows["vllm"]) == 3 * (6 + 6)
    worst: dict[str, float] = {}
    relative = 0.0
    for x, y in zip(rows["hf"], rows["vllm"]):
        assert (x["model"], x["task"], x["item_id"]) == (y["model"], y["task"], y["item_id"])
        assert x["prediction"] == y["prediction"] and x["scores"] == y["scores"]
        for p, q in zip(x.get("loglikelihoods", []), y.get("loglikelihoods", [])):
            worst[x["model"]] = max(worst.get(x["model"], 0.0), abs(p - q))
            relative = max(relative, abs(p - q) / max(1.0, abs(p)))
    assert set(worst) == {"base", "A", "B"} and worst["base"] <= 1e-4
    # Both engines apply LoRA unmerged (x·Aᵀ·Bᵀ), in different kernels and summation orders.
    # These strong random adapters drive 20-token ending sums to -50..-230 nats, where the
    # two fp32 paths part by up to 2.1e-6 of the sum (2.8e-4 absolute, measured).
    assert relative <= 4e-6
    base_ll = [r["loglikelihoods"] for r in rows["vllm"] if r["model"] == "base" and r["task"] == "hellaswag"]
    for name in ("A", "B"):  # base rows are never scored with an adapter (and adapters are applied)
        adapted = [r["loglikelihoods"] for r in rows["vllm"] if r["model"] == name and r["task"] == "hellaswag"]
        assert all(max(abs(p - q) for p, q in zip(u, v)) > 1e-2 for u, v in zip(adapted, base_ll))
    meta = json.loads((tmp_path / "vllm" / "run.json").read_text())
    assert meta["provenance"]["placement"]["engine"] == "vllm"
    assert all(ad["has_effect"] for ad in meta["provenance"]["adapters"].values())
