"""The one translator from a pydantic ValidationError to a one-line "what, where, how to fix".

Every spec (suite, judge, gate policy, training config) reports its first problem as

    <file>: <field path>: <what is wrong> (and N more problems); fix: <how>

with the field path in the file's own spelling (`rules[0].max_drop`, `judge.criteria[1]`),
a did-you-mean for unknown keys, and a pointer to the spec's documentation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError
from harness.suggest import did_you_mean

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def spec_error(exc: ValidationError, where: str, model: type[BaseModel], *, docs: str,
               prefix: str = "", key_word: str = "key") -> ConfigError:
    """The first validation problem as a one-line ConfigError.

    Args:
        exc: The pydantic error.
        where: The file (or "training config"), first in the message.
        model: The validated model, to list the allowed keys where an unknown one appears.
        docs: Where the format is documented, e.g. "the suite format in harness/evaluate/suite_config.py".
        prefix: Field path prefix for a spec nested in a larger file (e.g. "judge").
        key_word: What the file calls its keys ("key", "setting").

    Returns:
        The error to raise (`raise spec_error(...) from None`).
    """
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    field = ".".join(p for p in (prefix, field_path(loc)) if p).replace(".[", "[")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    msg, hint = _explain(err, loc, field, model, docs, key_word)
    head = f"{where}: {field}: " if field else f"{where}: "
    return ConfigError(f"{head}{msg}{more}", hint)


def _explain(err: dict[str, Any], loc: tuple[Any, ...], field: str, model: type[BaseModel], docs: str,
             key_word: str) -> tuple[str, str]:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "extra_forbidden":
        allowed = allowed_keys(model, loc[:-1])
        key = str(loc[-1])
        return (f"unknown {key_word} '{key}'",
                f"{did_you_mean(key, allowed)}allowed {key_word}s here: {', '.join(allowed)}")
    if kind == "missing":
        return f"required {key_word} is missing", f"add `{loc[-1]}:` to the file (see {docs})"
    if kind in _BOUNDS:
        op, bound = _BOUNDS[kind], next(iter(ctx.values()), "?")
        return f"must be {op} {bound} (got {got!r})", f"set {field} to a number {op} {bound}"
    if kind == "string_pattern_mismatch":
        return (f"{got!r} does not match {ctx.get('pattern')}",
                "use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit")
    if kind == "too_short":
        return "must not be empty", f"list at least one item under {field}"
    if kind == "literal_error":
        return f"{got!r} is not allowed", f"use {ctx.get('expected')}"
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, "), f"see {docs}"
    text = str(err.get("msg", "invalid value"))
    return f"{text[:1].lower()}{text[1:]} (got {_short(got)})", f"check the value's type against {docs}"


def field_path(loc: tuple[Any, ...]) -> str:
    """A pydantic location as the file spells it: ("rules", 0, "max_drop") -> "rules[0].max_drop"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model found at `loc`; [] when there is none."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the item's model is already `current`
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
