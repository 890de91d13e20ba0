"""Training records: read a file, work out its form, turn every row into a `Sample`.

Files: `.jsonl`, `.jsonl.gz`, `.json` (a list of records), `.csv`, `.parquet` (read by `harness.io`).

Forms (detected from the first record's column names unless mapped with `fields`):

* chat: a `messages` list (also `conversations`/`conversation`) of `{"role", "content"}`
  turns, or ShareGPT `{"from", "value"}` turns (human -> user, gpt -> assistant). Content
  may be a list of `{"type": "text", "text": ...}` parts;
* prompt/completion: `prompt` (also `question`, `query`) with `completion` (also `response`,
  `answer`);
  when both hold message lists (TRL's conversational form) they are joined into a chat;
* text: `text`, trained on every token (plain language modelling).

An `id` column, when present or mapped, names rows in error messages and overlap reports;
otherwise rows are named as `harness.io.read_records` labels them: `line N` (JSONL, CSV),
`row N` (Parquet) or `item N` (JSON).
Every problem is one line naming the file and row: a missing column gets a did-you-mean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.errors import ConfigError
from harness.io import display_path, read_records, record_format
from harness.suggest import did_you_mean

FORMS = ("messages", "prompt/completion", "text")
# Auto-detection aliases, tried in order against the first record's columns.
ALIASES: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "conversations", "conversation"),
    "prompt": ("prompt", "question", "query"),
    "completion": ("completion", "response", "answer"),
    "text": ("text", "content"),
    "id": ("id", "_id", "uid", "qid"),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "bot": "assistant", "model": "assistant"}


@dataclass
class Sample:
    """One training example, in one of the three forms.

    Attributes:
        id: The record's id, or its position (`line 3`).
        form: "messages", "prompt/completion" or "text".
        messages: Chat turns as {"role", "content"} dicts (messages form).
        prompt: Prompt text (prompt/completion form).
        completion: Completion text (prompt/completion form).
        text: Whole text (text form).
    """

    id: str
    form: str
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str | None = None
    completion: str | None = None
    text: str | None = None

    def prompt_texts(self) -> list[str]:
        """What the model is asked, for overlap checks: each user turn and all non-assistant
        turns joined (a system + user prompt), or the prompt, or the text."""
        if self.form == "messages":
            users = [m["content"] for m in self.messages if m["role"] == "user"]
            asked = "\n".join(m["content"] for m in self.messages if m["role"] != "assistant")
            return [*users, asked]
        if self.form == "prompt/completion":
            return [self.prompt or ""]
        return [self.text or ""]


@dataclass
class Dataset:
    """Samples read from one file, with how they were read.

    Attributes:
        path: The file.
        samples: One Sample per record.
        form: The records' form.
        fields: Role -> column actually used (after detection).
    """

    path: Path
    samples: list[Sample]
    form: str
    fields: dict[str, str]


def iter_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (position, record) for every record of a file; positions name rows in errors."""
    path = Path(path)
    where = display_path(path)
    if record_format(path) is None:
        raise ConfigError(f"{where}: cannot tell the data format from the file name",
                          "use a .jsonl, .jsonl.gz, .json, .csv or .parquet file")
    if not path.is_file():
        raise ConfigError(f"{where}: no such file" if not path.exists() else f"{where}: not a file",
                          "check the --data / val_data path")
    yield from read_records(path, objects=True)


def resolve_fields(columns: list[str], mapping: dict[str, str], where: str) -> tuple[str, dict[str, str]]:
    """The form and role -> column mapping for records with these columns.

    Args:
        columns: Column names of the first record.
        mapping: Roles mapped explicitly (win over detection).
        where: File name for messages.

    Raises:
        ConfigError: a mapped column is missing (with did-you-mean), or no form fits.
    """
    for role, col in mapping.items():
        if col not in columns:
            raise ConfigError(f"{where}: records have no field '{col}' (mapped as {role})",
                              f"{did_you_mean(col, columns, cutoff=0.5)}fields: {', '.join(columns)}")

    def pick(role: str) -> str | None:
        if role in mapping:
            return mapping[role]
        return next((c for c in ALIASES[role] if c in columns), None)

    fields: dict[str, str] = {}
    if "messages" in mapping or ({"prompt", "completion", "text"}.isdisjoint(mapping) and pick("messages")):
        fields["messages"] = pick("messages")  # type: ignore[assignment]
        form = "messages"
    elif "text" in mapping:
        fields["text"] = mapping["text"]
        form = "text"
    elif pick("prompt") and pick("completion"):
        fields.update(prompt=pick("prompt"), completion=pick("completion"))  # type: ignore[arg-type]
        form = "prompt/completion"
    elif "prompt" in mapping or "completion" in mapping:
        missing = "completion" if "prompt" in mapping else "prompt"
        raise ConfigError(f"{where}: prompt/completion records need a {missing} field; none of "
                          f"{', '.join(ALIASES[missing])} is there", f"map it: --field {missing}=COLUMN "
                          f"(fields: {', '.join(columns)})")
    elif pick("text"):
        fields["text"] = pick("text")  # type: ignore[assignment]
        form = "text"
    else:
        raise ConfigError(f"{where}: cannot tell the record form from the fields {', '.join(columns) or '(none)'}",
                          "map them: --field prompt=COL --field completion=COL, or --field messages=COL, "
                          "or --field text=COL")
    if pick("id"):
        fields["id"] = pick("id")  # type: ignore[assignment]
    return form, fields


def _text(value: Any, where: str, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list) and all(isinstance(p, dict) for p in value):  # content parts
        return "".join(str(p.get("text", "")) for p in value if p.get("type", "text") == "text")
    raise ConfigError(f"{where}: {what} must be text, got {type(value).__name__}",
                      "store a string there (a list of answers needs one chosen answer per record)")


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str) and value.lstrip().startswith("["):  # CSV/Parquet cells holding JSON
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: messages must be a non-empty list of turns, got {type(value).__name__}",
                          'write [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]')
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise ConfigError(f"{where}: turn {i} is a {type(turn).__name__}, not an object",
                              'write each turn as {"role": ..., "content": ...}')
        if "role" in turn:
            role, content = str(turn["role"]), turn.get("content")
        elif "from" in turn:
            role, content = SHAREGPT_ROLES.get(str(turn["from"]), str(turn["from"])), turn.get("value")
        else:
            raise ConfigError(f"{where}: turn {i} has no role (keys: {', '.join(turn)})",
                              'give each turn a "role" ("user"/"assistant"/"system") and "content"')
        out.append({"role": role, "content": _text("" if content is None else content, where, f"turn {i} content")})
    if not any(t["role"] == "assistant" for t in out):
        raise ConfigError(f"{where}: the conversation has no assistant turn to learn from",
                          "add the assistant's reply as a turn with role 'assistant'")
    return out


def load_dataset(path: str | Path, fields: dict[str, str] | None = None) -> Dataset:
    """Read every record of `path` into Samples.

    Args:
        path: The data file.
        fields: Role -> column mapping; unmapped roles are detected.

    Raises:
        ConfigError: unreadable file, empty file, missing field, wrong value type (one line).
    """
    path = Path(path)
    where = display_path(path)
    records = iter_records(path)
    first = next(records, None)
    if first is None:
        raise ConfigError(f"{where}: no records", "the training file is empty")
    form, used = resolve_fields(list(first[1]), dict(fields or {}), where)
    samples: list[Sample] = []
    seen_ids: set[str] = set()
    for pos, rec in _chain(first, records):
        here = f"{where}: {pos}"
        for role, col in used.items():
            if col not in rec:
                raise ConfigError(f"{here}: record has no field '{col}' (mapped as {role})",
                                  f"{did_you_mean(col, rec, cutoff=0.5)}fields: {', '.join(rec)}")
        rid = str(rec[used["id"]]) if "id" in used and rec.get(used["id"]) not in (None, "") else pos
        if rid in seen_ids:  # ids name rows in reports, so they must be unique
            rid = f"{rid} ({pos})"
        seen_ids.add(rid)
        if form == "messages":
            samples.append(Sample(rid, form, messages=_messages(rec[used["messages"]], here)))
        elif form == "prompt/completion":
            p, c = rec[used["prompt"]], rec[used["completion"]]
            if isinstance(p, list) and isinstance(c, list):  # conversational prompt/completion
                samples.append(Sample(rid, "messages", messages=_messages([*p, *c], here)))
                continue
            samples.append(Sample(rid, form, prompt=_text(p, here, f"'{used['prompt']}'"),
                                  completion=_text(c, here, f"'{used['completion']}'")))
        else:
            samples.append(Sample(rid, form, text=_text(rec[used["text"]], here, f"'{used['text']}'")))
    return Dataset(path=path, samples=samples, form=form, fields=used)


def _chain(first, rest):
    yield first
    yield from rest
