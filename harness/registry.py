"""One typed registry for plugins: metrics, suites, judges, backends.

Built-in plugins register themselves with decorators when `harness.builtins` is imported;
third-party packages plug in through the `harness` entry-point group, whose modules are
imported once on first lookup. `HARNESS_PLUGINS=builtin` (comma list) restricts which
entry points load, so a broken plugin can be switched off without uninstalling it.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Callable, Generic, Iterator, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")

KINDS = ("metric", "suite", "judge", "backend")


class Registry(Generic[T]):
    """Name -> object for one plugin kind, with did-you-mean on unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T, *, replace: bool = False) -> T:
        if name in self._items and not replace and self._items[name] is not obj:
            raise HarnessError(
                f"{self.kind} '{name}' is registered twice",
                "give the plugin another name or pass replace=True",
            )
        self._items[name] = obj
        return obj

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise HarnessError(unknown_name_message(self.kind, name, self._items)) from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, known) -> str:
    """'unknown metric 'f11'; did you mean 'f1'? available: ...'."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    guess = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {kind} '{name}'{guess} available: {', '.join(known) or 'none'}"


REGISTRIES: dict[str, Registry[Any]] = {k: Registry(k) for k in KINDS}
metrics: Registry[Any] = REGISTRIES["metric"]
suites: Registry[Any] = REGISTRIES["suite"]
judges: Registry[Any] = REGISTRIES["judge"]
backends: Registry[Any] = REGISTRIES["backend"]


def register(kind: str, name: str, **attrs: Any) -> Callable[[T], T]:
    """Decorator: `@register("judge", "openai")` puts the object in that kind's registry."""
    if kind not in REGISTRIES:
        raise HarnessError(unknown_name_message("plugin kind", kind, REGISTRIES))

    def deco(obj: T) -> T:
        for key, value in attrs.items():
            setattr(obj, key, value)
        return REGISTRIES[kind].add(name, obj)

    return deco


_loaded = False


def load_plugins() -> None:
    """Import built-ins and entry-point plugins once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    import harness.builtins  # noqa: F401  registers the built-in plugins

    allowed = os.environ.get("HARNESS_PLUGINS")
    allow = {a.strip() for a in allowed.split(",")} if allowed else None
    for ep in entry_points(group="harness"):
        if ep.value == "harness.builtins" or (allow is not None and ep.name not in allow):
            continue
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the tool
            raise HarnessError(
                f"plugin '{ep.name}' ({ep.value}) failed to import: {exc}",
                f"fix or uninstall it, or set HARNESS_PLUGINS to a list without '{ep.name}'",
            ) from exc
