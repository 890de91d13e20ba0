"""A suite's `python:` hook: trusted code that may reshape records and render prompts.

Bundled suites are trusted; any other suite runs its hook only when its folder is inside
one of the trusted folders (`--trust-code DIR`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Sequence

from harness.errors import ConfigError, HarnessError
from harness.evaluate.suites.lookup import BUNDLED_DIR
from harness.hashing import sha256_bytes
from harness.io import display_path


def load_hook(suite_dir: Path, rel: str, suite_name: str, where: str,
              trusted_dirs: Sequence[str | os.PathLike[str]]) -> tuple[ModuleType, str]:
    """Import a suite's hook module once per process; returns it and its file's sha256.

    Raises:
        ConfigError: the file is outside the suite folder, missing, untrusted or fails to import.
    """
    folder = suite_dir.resolve()
    file = (suite_dir / rel).resolve()
    if not file.is_relative_to(folder):
        raise ConfigError(f"{where}: python: '{rel}' is outside the suite folder",
                          "put the hook module inside the suite folder and name it relative to it")
    if not file.is_file():
        raise ConfigError(f"{where}: python: {display_path(file)} does not exist",
                          f"create it or remove `python: {rel}`")
    if not is_trusted(folder, trusted_dirs):
        raise ConfigError(
            f"{where}: python: this suite would run code from {display_path(file)}, "
            f"but {display_path(folder)} is not a trusted folder",
            f"read that file, then allow it with `--trust-code {display_path(folder)}` "
            "(or remove `python:` from the suite)",
        )
    sha = sha256_bytes(file.read_bytes())
    tag = sha256_bytes(str(file).encode())[:8]
    # The name carries the file's path and content hashes: an edited hook is a new module.
    modname = f"_harness_suite_hook_{suite_name.replace('-', '_').replace('.', '_')}_{tag}_{sha[:12]}"
    module = sys.modules.get(modname)
    if module is None:
        module = _import(modname, file, where)
    return module, sha


def _import(modname: str, file: Path, where: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(modname, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except HarnessError as exc:
        del sys.modules[modname]
        raise ConfigError(f"{where}: python: {display_path(file)}: {exc.message}", exc.hint) from exc
    except Exception as exc:
        del sys.modules[modname]
        raise ConfigError(
            f"{where}: python: importing {display_path(file)} failed: {type(exc).__name__}: {exc}",
            "fix the hook module",
        ) from exc
    return module


def hook_callable(hook: ModuleType | None, attr: str, where: str, hook_file: Path | None) -> Callable[..., Any] | None:
    """The hook's function `attr`, or None when there is no hook or no such name.

    Raises:
        ConfigError: the name exists but is not callable.
    """
    if hook is None or not hasattr(hook, attr):
        return None
    fn = getattr(hook, attr)
    if not callable(fn):
        raise ConfigError(f"{where}: python: `{attr}` in {display_path(hook_file or '')} is not a function",
                          f"define `def {attr}(...)` or remove the name")
    return fn


def call_hook(fn: Callable[[Any], Any], arg: Any, name: str, subject: str, where: str, hook_file: Path | None) -> Any:
    """`fn(arg)`, with any failure reported as the hook's, naming what it was called on.

    Raises:
        ConfigError: "<suite>: python: <name>() failed on <subject>: <error>".
    """
    try:
        return fn(arg)
    except Exception as exc:
        raise ConfigError(f"{where}: python: {name}() failed on {subject}: {type(exc).__name__}: {exc}",
                          f"fix {name}() in {display_path(hook_file or '')}") from exc


def is_trusted(folder: Path, trusted_dirs: Sequence[str | os.PathLike[str]]) -> bool:
    """Whether `folder` is the bundled suites folder, a trusted folder, or inside one."""
    folder = folder.resolve()
    for d in (BUNDLED_DIR, *trusted_dirs):
        root = Path(d).expanduser().resolve()
        if folder == root or folder.is_relative_to(root):
            return True
    return False
