"""Load a base model once and attach any number of LoRA adapters to switch between.

Everything that can be checked before spending minutes on a model is checked first:
missing or corrupt files, pickle checkpoints, remote code, and adapters whose tensors do
not fit the base's modules.
"""

from __future__ import annotations

import json
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from harness.errors import ModelError
from harness.evaluate.devices import DTYPES, Placement, model_device
from harness.hashing import hash_files, sha256_bytes

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
PROBE_TEXT = "The quick brown fox jumps over the lazy dog. The capital of France is"


@dataclass
class BaseInfo:
    spec: str
    kind: str  # folder | gguf | hub
    location: str
    sha256: str
    name_or_path: str
    dtype: str


@dataclass
class AdapterInfo:
    name: str
    path: Path
    sha256: str
    config: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    probe_max_abs_logit_delta: float | None = None  # the probe's largest change, in `probe_quantity`
    probe_quantity: str = "logit"  # "logit" (transformers) or "token log-prob" (vLLM returns no logits)

    @property
    def has_effect(self) -> bool | None:
        if self.probe_max_abs_logit_delta is None:
            return None
        return self.probe_max_abs_logit_delta > 0.0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _offline() -> bool:
    return os.environ.get("HARNESS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def resolve_base(spec: str) -> tuple[str, Path | str, str | None]:
    """Return (kind, location, gguf_file) for a folder, .gguf file, asset name or hub id."""
    from harness.assets import ASSETS, asset_path

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return "gguf", path.parent, path.name
    if path.is_dir():
        return "folder", path, None
    if spec in ASSETS:
        return "folder", asset_path(spec), None
    looks_like_path = spec.startswith((".", "/", "~")) or spec.endswith(".gguf") or os.sep in spec.strip("/").split("/", 1)[-1]
    if path.exists():
        raise ModelError(f"{spec} is a file but not a .gguf", "point at a model folder, a .gguf file, an asset name or a hub id")
    if looks_like_path or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", spec):
        raise ModelError(f"base model '{spec}' not found: no such folder or file",
                         "check the path, or run `harness assets list` for bundled models")
    if _offline():
        raise ModelError(f"'{spec}' looks like a hub id but offline mode is on (HARNESS_OFFLINE/HF_HUB_OFFLINE)",
                         "use a local model folder, a .gguf file, or an asset name such as smollm2-135m")
    return "hub", spec, None


def _weights_in(folder: Path, allow_pickle: bool, what: str) -> list[Path]:
    safe = sorted(folder.glob("*.safetensors"))
    if safe:
        return safe
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise ModelError(
            f"{what} {folder} has only pickle weights ({pickles[0].name}), which can run code when loaded",
            "convert them to safetensors, or pass --allow-pickle if you trust the source",
        )
    if not pickles:
        raise ModelError(f"{what} {folder} has no weight files (*.safetensors)",
                         "point at a complete model folder")
    return pickles


def _check_remote_code(folder: Path, trust_remote_code: bool) -> dict:
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ModelError(f"no config.json in {folder}",
                         "point at a transformers model folder, a .gguf file, or an asset name")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise ModelError(f"{cfg_path} is not valid JSON: {_short(exc)}", "restore the file") from None
    if cfg.get("auto_map") and not trust_remote_code:
        raise ModelError(f"model at {folder} ships its own Python code (auto_map in config.json)",
                         "pass --trust-remote-code only if you trust its source")
    return cfg


def _placement(dtype: str, placement: Placement | None) -> Placement:
    if placement is not None:
        return placement
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}'", f"use one of {', '.join(sorted(DTYPES))}")
    return Placement(dtype=DTYPES[dtype])


def locate_base(spec: str, *, allow_pickle: bool = False, trust_remote_code: bool = False,
                revision: str | None = None) -> tuple[str, Path | str, str | None, str, dict[str, Any]]:
    """Find and hash a base without loading it: (kind, location, gguf file, sha256, from_pretrained kwargs).

    A hub model's digest is "" here; `load_base` fills it from the commit it loaded.
    """
    kind, location, gguf_file = resolve_base(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if kind == "folder":
        _check_remote_code(location, trust_remote_code)
        weights = _weights_in(location, allow_pickle, "model folder")
        digest = hash_files(weights)
        kwargs["use_safetensors"] = weights[0].suffix == ".safetensors"
    elif kind == "gguf":
        kwargs["gguf_file"] = gguf_file
        digest = hash_files([location / gguf_file])
    else:
        kwargs["revision"] = revision
        digest = ""
    return kind, location, gguf_file, digest, kwargs


def load_base(spec: str, *, dtype: str = "float32", placement: Placement | None = None, allow_pickle: bool = False,
              trust_remote_code: bool = False, revision: str | None = None):
    """Load tokenizer and causal LM where `placement` says (default: the CPU in `dtype`).

    Returns:
        (model, tokenizer, BaseInfo).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    placement = _placement(dtype, placement)
    kind, location, gguf_file, digest, kwargs = locate_base(spec, allow_pickle=allow_pickle,
                                                            trust_remote_code=trust_remote_code, revision=revision)
    try:
        tok = AutoTokenizer.from_pretrained(location, **{k: v for k, v in kwargs.items() if k != "use_safetensors"})
        model = AutoModelForCausalLM.from_pretrained(location, **placement.from_pretrained_kwargs(), **kwargs)
        if not placement.on_cpu and placement.device_map is None and not placement.load_in:
            model.to(placement.device)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not load base model from {location}: {_short(exc)}",
                         "check the folder is a complete causal-LM checkpoint (re-download or re-save it)") from exc
    if kind == "hub":
        digest = sha256_bytes(f"hub:{spec}@{getattr(model.config, '_commit_hash', revision)}".encode())
    model.eval()
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    info = BaseInfo(spec=spec, kind=kind, location=str(location if not gguf_file else Path(location) / gguf_file),
                    sha256=digest, name_or_path=str(getattr(model.config, "_name_or_path", spec)),
                    dtype=placement.dtype)
    return model, tok, info


def parse_adapter_arg(arg: str) -> tuple[str, Path]:
    """'NAME=PATH' or 'PATH' (name from the folder)."""
    name, sep, path = arg.partition("=")
    if not sep or ("/" in name or os.sep in name):
        name, path = "", arg
    p = Path(path).expanduser()
    name = name or p.resolve().name
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "adapter"
    if name == "base":
        raise ModelError("adapter name 'base' is reserved for the model without adapter",
                         "name it explicitly: --adapter myname=PATH")
    return name, p


_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?(?:\.weight)?$")


def _adapter_config_path(name: str, path: Path) -> Path:
    """The adapter folder's adapter_config.json; a missing folder or file is the user's to fix."""
    if not path.is_dir():
        raise ModelError(f"adapter '{name}': {path} is not a folder", "pass a PEFT adapter folder (with adapter_config.json)")
    cfg_path = path / "adapter_config.json"
    if not cfg_path.is_file():
        raise ModelError(f"adapter '{name}': no adapter_config.json in {path}", "pass a folder saved by peft's save_pretrained")
    return cfg_path


def check_adapter(name: str, path: Path, base_model, base_info: BaseInfo, allow_pickle: bool) -> AdapterInfo:
    """Validate a PEFT LoRA folder against the loaded base before attaching it."""
    cfg_path = _adapter_config_path(name, path)
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise ModelError(f"adapter '{name}': {cfg_path} is not valid JSON: {_short(exc)}", "restore the file") from None
    if cfg.get("peft_type") != "LORA":
        raise ModelError(f"adapter '{name}': peft_type is {cfg.get('peft_type')!r}, harness evaluates LoRA adapters",
                         "pass a LoRA adapter folder")
    weights = [p for p in (path / "adapter_model.safetensors",) if p.is_file()]
    if not weights:
        pickles = [p for p in path.glob("adapter_model.*") if p.suffix in PICKLE_SUFFIXES]
        if not pickles:
            raise ModelError(f"adapter '{name}': no adapter_model.safetensors in {path}", "re-save the adapter with peft")
        if not allow_pickle:
            raise ModelError(f"adapter '{name}': {pickles[0]} is a pickle checkpoint, which can run code when loaded",
                             "re-save with safe_serialization, or pass --allow-pickle if you trust it")
        weights = pickles
    info = AdapterInfo(name=name, path=path, sha256=hash_files(weights + [cfg_path]), config=cfg)
    if weights[0].suffix == ".safetensors":
        _check_shapes(info, weights[0], base_model)
    want = cfg.get("base_model_name_or_path")
    if want and Path(str(want)).name != Path(base_info.name_or_path).name and Path(str(want)).name != Path(base_info.spec).name:
        info.warnings.append(f"adapter '{name}' was made for base '{want}', evaluating on '{base_info.spec}' "
                             "(tensor shapes fit)")
    return info


def _check_shapes(info: AdapterInfo, weights: Path, base_model) -> None:
    from safetensors import safe_open

    modules = dict(base_model.named_modules())
    params = dict(base_model.named_parameters())
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except Exception as exc:
        raise ModelError(f"adapter '{info.name}': {weights} is unreadable: {_short(exc)}",
                         "re-save or re-download the adapter") from None
    for key, shape in shapes.items():
        m = _LORA_KEY.match(key)
        if not m:
            target = key.removeprefix("base_model.model.")
            base_key = target.replace(".modules_to_save.default", "").replace(".modules_to_save", "")
            if base_key in params and tuple(params[base_key].shape) != shape:
                raise ModelError(
                    f"adapter '{info.name}': {key} has shape {list(shape)} but the base's {base_key} is "
                    f"{list(params[base_key].shape)} (different vocabulary or model size)",
                    "use the base model this adapter was trained on")
            continue
        mod_name, part = m.group(1), m.group(2)
        module = modules.get(mod_name)
        if module is None:
            raise ModelError(f"adapter '{info.name}' targets module '{mod_name}', which the base model does not have",
                             "use the base model this adapter was trained on")
        if part == "lora_A" and hasattr(module, "in_features") and shape[-1] != module.in_features:
            raise ModelError(f"adapter '{info.name}': {mod_name} expects {shape[-1]} input features, the base has "
                             f"{module.in_features}", "use the base model this adapter was trained on")
        if part == "lora_B" and hasattr(module, "out_features") and shape[0] != module.out_features:
            raise ModelError(f"adapter '{info.name}': {mod_name} outputs {shape[0]} features, the base has "
                             f"{module.out_features}", "use the base model this adapter was trained on")
        if part == "lora_embedding_A" and hasattr(module, "num_embeddings") and shape[-1] != module.num_embeddings:
            raise ModelError(f"adapter '{info.name}': vocabulary of {shape[-1]} tokens, the base has "
                             f"{module.num_embeddings}", "use the base model this adapter was trained on")


class ModelBundle:
    """One base model in memory, with adapters switched on and off in place."""

    def __init__(self, model, tokenizer, base: BaseInfo, adapters: dict[str, AdapterInfo],
                 placement: Placement | None = None):
        self.model = model
        self.placement = placement or Placement(dtype=base.dtype)
        self.tokenizer = tokenizer
        self.base = base
        self.adapters = adapters
        self._active = "base"

    @property
    def names(self) -> list[str]:
        return ["base", *self.adapters]

    @contextmanager
    def use(self, name: str) -> Iterator[Any]:
        """Run the model as `name`: 'base' (adapters off) or an adapter's name."""
        if name != "base" and name not in self.adapters:
            raise ModelError(f"no adapter named '{name}' is loaded", f"loaded: {', '.join(self.names)}")
        if not self.adapters:
            yield self.model
            return
        if name == "base":
            with self.model.disable_adapter():
                yield self.model
        else:
            self.model.set_adapter(name)
            yield self.model

    def model_key(self, name: str) -> str:
        """Content identity of a model variant, for cache keys."""
        adapter = self.adapters[name].sha256 if name != "base" else "none"
        return sha256_bytes(f"{self.base.sha256}|{adapter}|{self.base.dtype}".encode())


def parse_adapters(adapters) -> list[tuple[str, Path]]:
    """(name, folder) per 'PATH' or 'NAME=PATH', with the checks that need no model."""
    parsed = [parse_adapter_arg(a) for a in adapters]
    names = [n for n, _ in parsed]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ModelError(f"two adapters are named '{sorted(dup)[0]}'", "name them: --adapter a=PATH --adapter b=PATH")
    for name, path in parsed:  # cheap checks before the expensive base load
        if not (path / "adapter_config.json").is_file():
            raise ModelError(f"adapter '{name}': no adapter_config.json in {path}",
                             "pass a folder saved by peft's save_pretrained")
    return parsed


def probe_adapters(bundle: ModelBundle) -> None:
    """Record how far each adapter moves logits on a fixed text; 0 means it does nothing."""
    import torch

    if not bundle.adapters:
        return
    ids = bundle.tokenizer(PROBE_TEXT, return_tensors="pt").to(model_device(bundle.model))
    with torch.inference_mode():
        with bundle.use("base") as m:
            ref = m(**ids).logits.float()
        for name, info in bundle.adapters.items():
            with bundle.use(name) as m:
                out = m(**ids).logits.float()
            info.probe_max_abs_logit_delta = float((out - ref).abs().max())


def check_files(base: str, adapters: list[str] | tuple[str, ...] = (), *, allow_pickle: bool = False,
                trust_remote_code: bool = False) -> None:
    """The checks on base and adapter files that need no model: a missing folder, a missing
    config or weights, pickle or remote code not allowed, a bad adapter argument. Commands call
    it before anything slow, so a typo costs a second."""
    kind, location, _ = resolve_base(base)
    if kind == "folder":
        _check_remote_code(location, trust_remote_code)
        _weights_in(location, allow_pickle, "model folder")
    for name, path in parse_adapters(adapters):
        _adapter_config_path(name, path)


def load(base: str, adapters: list[str] | tuple[str, ...] = (), *, dtype: str = "float32",
         placement: Placement | None = None, allow_pickle: bool = False, trust_remote_code: bool = False, revision: str | None = None,
         probe: bool = True, warn: Callable[[str], None] | None = None) -> ModelBundle:
    """Load `base` once and attach each adapter ('PATH' or 'NAME=PATH').

    Raises:
        ModelError: anything about the files that the user must fix.
    """
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    parsed = parse_adapters(adapters)
    placement = _placement(dtype, placement)
    model, tok, info = load_base(base, placement=placement, allow_pickle=allow_pickle,
                                 trust_remote_code=trust_remote_code, revision=revision)
    infos: dict[str, AdapterInfo] = {}
    for name, path in parsed:
        infos[name] = check_adapter(name, path, model, info, allow_pickle)
    if infos:
        from peft import PeftModel

        try:
            first = True
            for name, ainfo in infos.items():
                if first:
                    model = PeftModel.from_pretrained(model, str(ainfo.path), adapter_name=name, is_trainable=False)
                    first = False
                else:
                    model.load_adapter(str(ainfo.path), adapter_name=name, is_trainable=False)
        except Exception as exc:
            raise ModelError(f"adapter '{name}' failed to load: {_short(exc)}",
                             "check it was trained for this base model") from exc
        model.eval()
    bundle = ModelBundle(model, tok, info, infos, placement)
    if probe:
        probe_adapters(bundle)
    warn_adapters(infos, warn)
    return bundle


def warn_adapters(infos: dict[str, AdapterInfo], warn: Callable[[str], None]) -> None:
    """Say what the checks and the no-effect probe found, whichever engine ran them."""
    for ainfo in infos.values():
        for w in ainfo.warnings:
            warn(w)
        if ainfo.has_effect is False:
            warn(f"ADAPTER HAS NO EFFECT: '{ainfo.name}' leaves every {ainfo.probe_quantity} unchanged "
                 "(untrained LoRA B=0, or wrong target modules); its scores will equal the base's")
