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
    for x, y in zip(rows["hf"], rows["vllm"]):
        assert (x["model"], x["task"], x["item_id"]) == (y["model"], y["task"], y["item_id"])
        assert x["prediction"] == y["prediction"] and x["scores"] == y["scores"]
        for p, q in zip(x.get("loglikelihoods", []), y.get("loglikelihoods", [])):
            worst[x["model"]] = max(worst.get(x["model"], 0.0), abs(p - q))
    assert worst["base"] <= 1e-4
    # the CPU transformers engine merges LoRA into the weights, vLLM adds x·A·B: with these
    # strong random adapters their fp32 sums over ~20-token endings part by up to ~3e-4
    assert max(worst["A"], worst["B"]) <= 5e-4
    base_ll = [r["loglikelihoods"] for r in rows["vllm"] if r["model"] == "base" and r["task"] == "hellaswag"]
    for name in ("A", "B"):  # base rows are never scored with an adapter (and adapters are applied)
        adapted = [r["loglikelihoods"] for r in rows["vllm"] if r["model"] == name and r["task"] == "hellaswag"]
        assert all(max(abs(p - q) for p, q in zip(u, v)) > 1e-2 for u, v in zip(adapted, base_ll))
    meta = json.loads((tmp_path / "vllm" / "run.json").read_text())
    assert meta["provenance"]["placement"]["engine"] == "vllm"
    assert all(ad["has_effect"] for ad in meta["provenance"]["adapters"].values())
