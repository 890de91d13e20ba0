"""The suite YAML schema (pydantic v2, strict) and one-line error reporting for it.

A suite file looks like this (every key is checked; unknown keys are errors)::

    name: squad-qa                 # [a-z0-9][a-z0-9._-]*
    version: "1"                   # str (an int is accepted and turned into a str)
    description: Extractive QA ...
    data:
      asset: squad                 # a pulled asset (harness assets pull) ...
      path: squad.jsonl            #   ... and the file inside its folder
      # file: data.jsonl           # ... or a file relative to the suite folder
      # format: jsonl              # optional; else from the extension:
      #                            #   .jsonl  .jsonl.gz  .json (a list)  .csv
    fields:                        # dotted paths into each record ("a.b.0.c")
      id: id                       # optional; default: the record's index
      references: answers          # the value is a str or a list of str
      vars: {title: title}         # template variables; default: the whole record
      meta: {}                     # optional extra values carried into the run log
    prompt: |                      # jinja2: sandboxed, StrictUndefined, trim/lstrip_blocks
      ...
    chat: true                     # send as a user message through the chat template
    system: "..."                  # optional system message (chat only)
    generation: {max_new_tokens: 32, stop: ["\\n"]}   # stop: a str or a list of str
    metrics: [exact_match, f1]     # registered names or evaluate:NAME
    judge: null                    # reserved: a mapping or null, kept untouched
    python: hooks.py               # optional module in the suite folder (trusted code)
    fewshot:                       # optional pool of solved examples, never evaluated, for
      holdout: 32                  #   `compare --baseline fewshot:K`: the last 32 records of
      #                            #   `data` (whole disjoint_on groups; the rest is evaluated)
      # file: pool.jsonl           #   ... or a file next to the suite (same fields as `data`)
      disjoint_on: [context]       # fields.vars whose text a pool item may never share with
      #                            #   an eval item (ids and rendered prompts are always checked)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from harness.errors import ConfigError
from harness.io import display_path, record_format
from harness.spec_errors import spec_error

DATA_FORMATS = ("jsonl", "jsonl.gz", "json", "csv")
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
DOCS = "the suite format in harness/evaluate/suite_config.py"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the records come from: a pulled asset's file, or a file next to the suite."""

    asset: str | None = None
    path: str | None = None
    file: str | None = None
    format: Literal["jsonl", "jsonl.gz", "json", "csv"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        if (self.asset is None) == (self.file is None):
            raise ValueError("give exactly one of `asset` (with `path`) or `file`")
        if self.asset is not None and not self.path:
            raise ValueError("`asset` needs `path`, the file inside the asset folder")
        if self.file is not None and self.path is not None:
            raise ValueError("`path` only goes with `asset`; with `file`, put the path in `file`")
        if self.format is None and format_of(self.path or self.file or "") is None:
            raise ValueError(
                f"cannot tell the format of '{self.path or self.file}' from its extension; "
                f"use one of {', '.join('.' + f for f in DATA_FORMATS)} or set `format`"
            )
        return self

    @property
    def resolved_format(self) -> str:
        return self.format or format_of(self.path or self.file or "") or "jsonl"


def format_of(filename: str) -> str | None:
    """The suite data format a file name implies (one of DATA_FORMATS), or None."""
    fmt = record_format(filename)
    return fmt if fmt in DATA_FORMATS else None


class FieldsSpec(_Strict):
    """How a record becomes an Example: dotted paths into the record."""

    id: str | None = None
    references: str
    vars: dict[str, str] | None = None
    meta: dict[str, str] = Field(default_factory=dict)

    @field_validator("vars", "meta")
    @classmethod
    def _identifiers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not key.isidentifier():
                raise ValueError(f"'{key}' is not a valid variable name (letters, digits, _)")
        return value


class GenerationSpec(_Strict):
    max_new_tokens: int = Field(64, gt=0)
    stop: list[str] = Field(default_factory=list)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _no_empty(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value


class FewshotSpec(_Strict):
    """The pool that `compare --baseline fewshot:K` draws in-context examples from: solved
    examples that are never evaluated, so the prompted base never sees an eval item."""

    holdout: int | None = Field(None, gt=0)
    file: str | None = None
    format: Literal["jsonl", "jsonl.gz", "json", "csv"] | None = None
    disjoint_on: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> "FewshotSpec":
        if (self.holdout is None) == (self.file is None):
            raise ValueError("give exactly one of `holdout` (the last N records of `data`) or `file` (a pool file)")
        if self.format is not None and self.file is None:
            raise ValueError("`format` only goes with `file`")
        if self.file is not None and self.format is None and format_of(self.file) is None:
            raise ValueError(f"cannot tell the format of '{self.file}' from its extension; "
                             f"use one of {', '.join('.' + f for f in DATA_FORMATS)} or set `format`")
        return self

    @property
    def resolved_format(self) -> str:
        return self.format or format_of(self.file or "") or "jsonl"


class SuiteSpec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    version: str
    description: str = ""
    data: DataSpec
    fields: FieldsSpec
    prompt: str | None = None
    chat: bool = False
    system: str | None = None
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    metrics: list[str] = Field(min_length=1)
    judge: dict[str, Any] | None = None
    python: str | None = None
    fewshot: FewshotSpec | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, value: list[str]) -> list[str]:
        dup = sorted({m for m in value if value.count(m) > 1})
        if dup:
            raise ValueError(f"metric '{dup[0]}' is listed twice")
        return value

    @model_validator(mode="after")
    def _disjoint_vars(self) -> "SuiteSpec":
        declared = self.fields.vars
        for name in (self.fewshot.disjoint_on if self.fewshot else []):
            if declared is not None and name not in declared:
                raise ValueError(f"fewshot.disjoint_on: '{name}' is not a variable of fields.vars "
                                 f"({', '.join(sorted(declared)) or 'none'})")
        return self

    @field_validator("system")
    @classmethod
    def _system_needs_chat(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("chat") is False:
            raise ValueError("`system` is only used with `chat: true`")
        return value


# --------------------------------------------------------------------------- loading


def load_yaml(path: str | Path) -> Any:
    """`yaml.safe_load` of a file; a syntax error becomes a ConfigError naming file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display_path(path)}: no such file", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display_path(path)}: cannot read: {exc}", "check the file") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display_path(path)}:{mark.line + 1}:{mark.column + 1}" if mark else display_path(path)
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ConfigError(
            f"{where}: YAML syntax error: {what}",
            "fix the YAML at that line (indentation, quoting, a missing ':')",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display_path(path)}: YAML error: {exc}", "fix the YAML") from None


def parse_suite_spec(data: Any, path: str | Path) -> SuiteSpec:
    """Validate a loaded YAML document; errors name the file and the field, with a fix."""
    where = display_path(Path(path))
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(
            f"{where}: a suite file must be a mapping of keys, got {got}",
            "start from a bundled suite, e.g. suites/squad-qa/suite.yaml",
        )
    try:
        return SuiteSpec.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc, where, SuiteSpec, docs=DOCS) from None
