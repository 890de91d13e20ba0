"""Which fields of a training record hold the text, for leak scans.

Record forms, and how their text is assembled (parts joined by newlines):

* prompt/completion: `prompt`, then `completion`;
* text: each `text` field in the order given;
* chat: the `messages` list, each turn's `content` (OpenAI style), `value` (ShareGPT)
  or text parts; role names are skipped.

Without an explicit mapping the form is detected from the first record's field names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import ConfigError
from harness.leaks.items import flatten_text
from harness.suggest import unknown_name_message

ROLES = ("text", "prompt", "completion", "messages")

# Auto-detection, tried in order against the first record's field names.
_AUTO_FORMS: list[tuple[str, dict[str, Any]]] = [
    ("messages", {"messages": "messages"}),
    ("messages", {"messages": "conversations"}),
    ("messages", {"messages": "conversation"}),
    ("prompt/completion", {"prompt": "prompt", "completion": "completion"}),
    ("prompt/completion", {"prompt": "prompt", "completion": "response"}),
    ("prompt/completion", {"prompt": "question", "completion": "answer"}),
    ("text", {"text": ("instruction", "input", "output")}),
    ("text", {"text": ("instruction", "output")}),
    ("text", {"text": ("text",)}),
    ("text", {"text": ("content",)}),
]


@dataclass(frozen=True)
class FieldMap:
    """Which fields of a training record hold the text.

    Attributes:
        text: Fields read as plain text, concatenated in this order.
        prompt: The prompt field of prompt/completion records.
        completion: The completion field.
        messages: A list of chat turns ({"role", "content"} or ShareGPT {"from", "value"}).
    """

    text: tuple[str, ...] = ()
    prompt: str | None = None
    completion: str | None = None
    messages: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.prompt or self.completion or self.messages)

    @property
    def columns(self) -> list[str]:
        """Every mapped field name, in assembly order, no repeats."""
        cols = [c for c in (self.prompt, *self.text, self.completion, self.messages) if c]
        return list(dict.fromkeys(cols))

    @property
    def form(self) -> str:
        if self.messages and not (self.text or self.prompt or self.completion):
            return "messages"
        if (self.prompt or self.completion) and not (self.text or self.messages):
            return "prompt/completion"
        if self.text and not (self.prompt or self.completion or self.messages):
            return "text"
        return "mixed"

    def describe(self) -> dict[str, Any]:
        return {"form": self.form, **{k: v for k, v in (("text", list(self.text)), ("prompt", self.prompt),
                                                          ("completion", self.completion),
                                                          ("messages", self.messages)) if v}}

    def row_text(self, record: dict) -> str:
        """The text of one record under this mapping ("" when its fields are missing)."""
        parts: list[str] = []
        if self.prompt:
            parts += flatten_text(record.get(self.prompt))
        for name in self.text:
            parts += flatten_text(record.get(name))
        if self.completion:
            parts += flatten_text(record.get(self.completion))
        if self.messages:
            parts += flatten_text(_maybe_json(record.get(self.messages)), messages=True)
        return "\n".join(parts)


def _maybe_json(value: Any) -> Any:
    # CSV cells and some Parquet exports store the messages list as a JSON string.
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_field_specs(specs: Sequence[str] | None) -> FieldMap:
    """CLI `--field` values -> FieldMap.

    Each spec is `ROLE=NAME` with ROLE one of text, prompt, completion, messages, or a
    bare `NAME` (short for text=NAME). `text` may repeat; the others may not.

    Raises:
        ConfigError: unknown role, or a role given twice.
    """
    text: list[str] = []
    single: dict[str, str] = {}
    for spec in specs or []:
        role, sep, name = spec.partition("=")
        if not sep:
            role, name = "text", spec
        role, name = role.strip(), name.strip()
        if role not in ROLES:
            raise ConfigError(f"--field {spec}: {unknown_name_message('field role', role, ROLES)}",
                              "write --field ROLE=NAME, e.g. --field text=body or --field prompt=question")
        if not name:
            raise ConfigError(f"--field {spec}: no field name", f"write --field {role}=NAME")
        if role == "text":
            text.append(name)
        elif role in single:
            raise ConfigError(f"--field {role}= given twice ({single[role]}, {name})",
                              f"pass one --field {role}=NAME (use text=NAME to add more text fields)")
        else:
            single[role] = name
    return FieldMap(text=tuple(text), **single)


def resolve_fields(fields: FieldMap, available: list[str], where: str) -> FieldMap:
    """Check an explicit mapping against the available fields, or detect one.

    Raises:
        ConfigError: a mapped field is missing (with did-you-mean), or no known form fits.
    """
    if not fields.empty:
        for name in fields.columns:
            if name not in available:
                raise ConfigError(f"{where}: {unknown_name_message('field', name, available)}",
                                  "map an existing field with --field ROLE=NAME (roles: text, prompt, completion, messages)")
        return fields
    have = set(available)
    for _form, mapping in _AUTO_FORMS:
        wanted = [v for vals in mapping.values() for v in ((vals,) if isinstance(vals, str) else vals)]
        if all(w in have for w in wanted):
            kw = {k: (tuple(v) if k == "text" else v) for k, v in mapping.items()}
            return FieldMap(**kw)
    raise ConfigError(f"{where}: cannot tell which fields hold the training text (fields: {', '.join(available) or 'none'})",
                      "pass --field text=NAME, or --field prompt=NAME --field completion=NAME, or --field messages=NAME")
