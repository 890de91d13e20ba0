"""Where a model runs: `--device`, the dtype default, `--device-map`, `--load-in`.

Everything knowable without a model is checked here, before any weights load: the device
string, whether that device exists, whether bitsandbytes and a GPU are there for a
quantized base. `Placement.record()` is what run.json stores, with the GPU name and, after
the run, its peak memory.
"""

from __future__ import annotations

import os
import re
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps (auto: cuda, then mps, then cpu)"
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}
LOAD_IN = ("4bit", "8bit")
_DEVICE_RE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass(frozen=True)
class Placement:
    """A resolved placement: one device (or a device map) and a dtype.

    Attributes:
        device: "cpu", "cuda:N" or "mps"; with a device map, the device inputs go to.
        dtype: "float32", "bfloat16" or "float16".
        device_map: "auto" (accelerate big-model inference) or None.
        load_in: "4bit" or "8bit" (bitsandbytes) or None.
    """

    device: str = "cpu"
    dtype: str = "float32"
    device_map: str | None = None
    load_in: str | None = None

    @property
    def on_cpu(self) -> bool:
        return self.device == "cpu" and self.device_map is None

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """What `AutoModelForCausalLM.from_pretrained` needs for this placement."""
        import torch

        kwargs: dict[str, Any] = {"dtype": getattr(torch, self.dtype)}
        if self.load_in:
            from transformers import BitsAndBytesConfig

            if self.load_in == "4bit":
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"])
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = self.device_map or {"": self.device}
        elif self.device_map:
            kwargs["device_map"] = self.device_map
        return kwargs

    def record(self) -> dict[str, Any]:
        """The run.json view: where it ran, on what hardware."""
        out: dict[str, Any] = {"device": self.device, "dtype": self.dtype, "device_map": self.device_map,
                               "load_in": self.load_in}
        if self.device.startswith("cuda"):
            import torch

            index = torch.device(self.device).index or 0
            out["gpu_name"] = torch.cuda.get_device_name(index)
            out["gpu_count"] = torch.cuda.device_count()
        return out


def check_syntax(device: str, dtype: str | None = None, device_map: str | None = None,
                 load_in: str | None = None) -> None:
    """Option checks that need no torch: run first, before any weights load."""
    if not _DEVICE_RE.fullmatch(device or ""):
        raise ConfigError(f"--device {device!r} is not a device", f"use {DEVICE_HELP}")
    if dtype not in (None, "auto") and dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}' (--dtype)", f"use auto or one of {', '.join(sorted(DTYPES))}")
    if device_map not in (None, "auto"):
        raise ConfigError(f"--device-map {device_map!r} is not supported", "use --device-map auto (accelerate), or omit it")
    if load_in not in (None, *LOAD_IN):
        raise ConfigError(f"--load-in {load_in!r} is not supported", "use --load-in 4bit or --load-in 8bit")


def device_field(value: str) -> str:
    """A pydantic validator body for a `device:` setting in a spec file (training, judges)."""
    try:
        check_syntax(value)
    except ConfigError:
        raise ValueError(f"unknown device '{value}'; use {DEVICE_HELP}") from None
    return value


def _mps_available(torch) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve(device: str = "auto", dtype: str | None = None, device_map: str | None = None,
            load_in: str | None = None) -> Placement:
    """Turn the options into a placement, or a one-line error when the hardware is not there.

    In a data-parallel launch (LOCAL_RANK set) `auto` and `cuda` mean this rank's own GPU.

    Raises:
        ConfigError: unknown names, a device that is not present, bitsandbytes or a GPU missing.
    """
    check_syntax(device, dtype, device_map, load_in)
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available(torch) else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ConfigError(f"--device {device}: no CUDA GPU is visible (torch {torch.__version__}, {build})",
                              "use --device cpu (or auto), or run on a machine with a GPU")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
        index = torch.device(device).index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible",
                              f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if device == "mps" and not _mps_available(torch):
        raise ConfigError("--device mps: Apple's Metal backend is not available here", "use --device cpu or auto")
    if load_in:
        if not device.startswith("cuda"):
            raise ConfigError(f"--load-in {load_in} needs a CUDA GPU (bitsandbytes), but the device is {device}",
                              "run on a GPU machine, or evaluate an unquantized base")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError(f"--load-in {load_in} needs bitsandbytes, which is not installed",
                              "pip install bitsandbytes") from None
    if dtype in (None, "auto"):
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return Placement(device=device, dtype=DTYPES[dtype], device_map=device_map, load_in=load_in)


def on_device(device: str):
    """Context in which tensor factories (torch.tensor, arange, zeros...) allocate on `device`.

    A no-op on the CPU, so the CPU paths pay nothing for it.
    """
    if device == "cpu":
        return nullcontext()
    import torch

    return torch.device(device)


def model_device(model) -> str:
    """Where a loaded model takes its inputs (the embedding's device under a device map)."""
    try:
        return str(model.get_input_embeddings().weight.device)
    except (AttributeError, NotImplementedError):
        return str(next(model.parameters()).device)


def peak_memory(device: str) -> dict[str, Any]:
    """Peak accelerator memory since the process started (run.json `placement.peak_gpu_memory_gb`)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    return {"peak_gpu_memory_gb": round(max(torch.cuda.max_memory_allocated(i)
                                            for i in range(torch.cuda.device_count())) / 2**30, 3)}
