"""From a suite's data records to Examples: hook transform, dotted field paths, unique ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from harness.errors import ConfigError
from harness.evaluate.suite_config import FieldsSpec
from harness.evaluate.suites.hooks import call_hook
from harness.io import display_path, read_records
from harness.types import Example

_MISSING = object()


class ExampleBuilder:
    """Turns records into Examples for one suite, naming the suite file in every error.

    Args:
        fields: The suite's field mapping.
        where: The suite file, for messages.
        transform: The hook's `transform(record)`, if any.
        hook_file: The hook module's path, for messages.
    """

    def __init__(self, fields: FieldsSpec, where: str, transform: Callable[[Any], Any] | None = None,
                 hook_file: Path | None = None):
        self.fields = fields
        self.where = where
        self.transform = transform
        self.hook_file = hook_file

    def build(self, path: Path, fmt: str) -> list[Example]:
        """Every record of the data file as an Example, in file order.

        Raises:
            ConfigError: unreadable data, a missing field, a bad or duplicate id (one line).
        """
        out: list[Example] = []
        seen: dict[str, str] = {}
        for index, (label, record) in enumerate(read_records(path, fmt)):
            where_rec = f"record {index} ({label} of {display_path(path)})"
            example = self._example(index, self._reshape(record, where_rec), where_rec)
            if example.id in seen:
                raise ConfigError(
                    f"{self.where}: fields.id: duplicate id '{example.id}' in {where_rec} (first at {seen[example.id]})",
                    "make ids unique in the data, or point fields.id at a unique field",
                )
            seen[example.id] = f"record {index}"
            out.append(example)
        return out

    def _reshape(self, record: Any, where_rec: str) -> dict[str, Any]:
        if self.transform is not None:
            record = call_hook(self.transform, record, "transform", where_rec, self.where, self.hook_file)
        if not isinstance(record, dict):
            raise ConfigError(f"{self.where}: data: {where_rec} is a {type(record).__name__}, not an object",
                              "each record must be a JSON object / CSV row")
        return record

    def _get(self, record: dict[str, Any], dotted: str, field: str, where_rec: str) -> Any:
        value = resolve_path(record, dotted)
        if value is _MISSING:
            keys = ", ".join(map(str, list(record)[:20]))
            raise ConfigError(f"{self.where}: {field}: {where_rec} has no '{dotted}'",
                              f"fix the dotted path; the record's keys are: {keys}")
        return value

    def _example(self, index: int, record: dict[str, Any], where_rec: str) -> Example:
        fields = self.fields

        def get(dotted: str, field: str) -> Any:
            return self._get(record, dotted, field, where_rec)

        if fields.id is None:
            ex_id = str(index)
        else:
            raw_id = get(fields.id, "fields.id")
            if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or raw_id == "":
                raise ConfigError(f"{self.where}: fields.id: {where_rec} has id {_short(raw_id)}",
                                  "ids must be non-empty strings or integers; point fields.id at such a field")
            ex_id = str(raw_id)
        refs = get(fields.references, "fields.references")
        references = _as_references(refs)
        if references is None:
            raise ConfigError(
                f"{self.where}: fields.references: {where_rec} has {_short(refs)}; "
                "references must be a string or a non-empty list of strings",
                "point fields.references at the gold answer(s)",
            )
        if fields.vars is None:
            ex_vars = dict(record)
        else:
            ex_vars = {name: get(dotted, f"fields.vars.{name}") for name, dotted in fields.vars.items()}
        ex_meta: dict[str, Any] = {"row": index}
        ex_meta.update({name: get(dotted, f"fields.meta.{name}") for name, dotted in fields.meta.items()})
        return Example(id=ex_id, vars=ex_vars, references=references, meta=ex_meta)


def resolve_path(record: Any, dotted: str) -> Any:
    """`a.b.0.c` into nested dicts/lists; `_MISSING` when any step is absent."""
    current = record
    for part in dotted.split("."):
        if isinstance(current, dict):
            if part not in current:
                return _MISSING
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            i = int(part)
            if not -len(current) <= i < len(current):
                return _MISSING
            current = current[i]
        else:
            return _MISSING
    return current


def lookup(record: Any, dotted: str) -> Any:
    """Like `resolve_path`, with None for an absent value."""
    value = resolve_path(record, dotted)
    return None if value is _MISSING else value


def _as_references(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
