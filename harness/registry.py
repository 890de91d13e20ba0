"""Plugin registries: one typed `Registry` per kind, and the plugin loader.

Each kind keeps its registry next to its own types and has its own decorator:

    harness.evaluate.metrics.base.METRICS          Registry[Metric]          @register_metric(NAME)
    harness.evaluate.judges.base.JUDGE_BACKENDS    Registry[type[JudgeBackend]]  @register_judge(NAME)

Built-in plugins are an ordinary plugin, `harness.builtins`, reached like any third-party
package through the `harness` entry-point group; every lookup imports the group's modules
once. `HARNESS_PLUGINS=name,...` restricts which third-party entry points load (the
built-ins always do), so a broken plugin can be switched off without uninstalling it; an
entry that names no entry point is imported as a module, and one that cannot be imported
is skipped with a warning line on stderr.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Generic, Iterator, TypeVar

from harness.errors import HarnessError
from harness.suggest import unknown_name_message

T = TypeVar("T")

ENTRY_POINT_GROUP = "harness"
BUILTIN_PLUGINS = "harness.builtins"  # by name: the registry does not depend on what it holds
ENV_PLUGINS = "HARNESS_PLUGINS"  # name,...: the third-party plugins to load (entry points or modules)


class Registry(Generic[T]):
    """Name -> object for one plugin kind, with did-you-mean on unknown names.

    Args:
        kind: What the names are, for messages ("metric", "judge backend").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register `obj` under `name`.

        Raises:
            HarnessError: the name is taken by another object and `replace` is False.
        """
        if name in self._items and not replace and self._items[name] is not obj:
            raise HarnessError(
                f"{self.kind} '{name}' is registered twice",
                "give the plugin another name or pass replace=True",
            )
        self._items[name] = obj
        return obj

    def remove(self, name: str) -> None:
        """Forget `name` (tests register and unregister fakes)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as `name`.

        Raises:
            HarnessError: unknown name, with a did-you-mean and the available names.
        """
        load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise HarnessError(unknown_name_message(self.kind, name, self._items)) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


_loaded = False


def _warn(message: str) -> None:
    """One "warning: ..." line on stderr (the CLI's style for problems that do not stop the run)."""
    print(f"warning: {message}", file=sys.stderr)


def load_plugins() -> None:
    """Import the built-in plugins and the entry-point plugins, once per process.

    With `HARNESS_PLUGINS` set, only the entry points it names load; an entry that names no
    entry point is imported as a module (`mypkg.harness_plugin`), and one that cannot be
    imported is skipped with one warning line on stderr.

    Raises:
        HarnessError: a third-party plugin fails to import (names it and how to switch it off).
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    # Imported by name even when harness is not installed (no entry-point metadata).
    importlib.import_module(BUILTIN_PLUGINS)
    allowed = os.environ.get(ENV_PLUGINS)
    allow = {a.strip() for a in allowed.split(",") if a.strip()} if allowed else None
    found: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.add(ep.name)
        if ep.value == BUILTIN_PLUGINS or (allow is not None and ep.name not in allow):
            continue
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the tool
            raise HarnessError(
                f"plugin '{ep.name}' ({ep.value}) failed to import: {exc}",
                f"fix or uninstall it, or set {ENV_PLUGINS} to a list without '{ep.name}'",
            ) from exc
    for name in sorted((allow or set()) - found):
        _import_listed_module(name, sorted(found))


def _import_listed_module(name: str, installed: list[str]) -> None:
    """Import a `HARNESS_PLUGINS` entry that is no entry point; warn (once) if it cannot be."""
    try:
        importlib.import_module(name)
    except Exception as exc:  # a typo or a missing package must not stop the run
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        known = f" (installed plugins: {', '.join(installed)})" if installed else ""
        _warn(f"{ENV_PLUGINS} entry '{name}' cannot be imported: {reason}; "
              f"fix: install the package that provides it, or remove '{name}' from {ENV_PLUGINS}{known}")
