"""A suite's jinja prompt: the sandboxed environment, compiling with checks, rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from harness.errors import ConfigError
from harness.evaluate.suite_config import SuiteSpec
from harness.suggest import did_you_mean
from harness.types import Example


def make_jinja_env(filters: Any = None, where: str = "") -> SandboxedEnvironment:
    """The prompt environment: sandboxed, StrictUndefined, trim_blocks + lstrip_blocks.

    Raises:
        ConfigError: `filters` (a hook's FILTERS) is not a dict of functions.
    """
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    if filters is not None:
        if not isinstance(filters, dict) or not all(callable(f) for f in filters.values()):
            raise ConfigError(f"{where}: python: FILTERS must be a dict of name -> function", "fix FILTERS")
        env.filters.update(filters)
    return env


def compile_prompt(spec: SuiteSpec, yaml_path: Path, where: str, filters: Any = None) -> Template:
    """The suite's `prompt:` compiled; its variables checked against `fields.vars`.

    Raises:
        ConfigError: no prompt, a syntax error (naming the suite file's line), an unknown variable.
    """
    if spec.prompt is None:
        raise ConfigError(f"{where}: prompt: required key is missing",
                          "add a jinja `prompt:` (or define prompt(vars) in the suite's python hook)")
    env = make_jinja_env(filters, where)
    try:
        ast = env.parse(spec.prompt)
        template = env.from_string(spec.prompt)
    except TemplateSyntaxError as exc:
        line = _block_scalar_line(yaml_path, "prompt", exc.lineno)
        at = f"{where}:{line}" if line else where
        raise ConfigError(
            f"{at}: prompt: template syntax error on line {exc.lineno} of the template: {exc.message}",
            "fix the jinja syntax ({{ var }}, {% for x in xs %}...{% endfor %})",
        ) from None
    if spec.fields.vars is not None:
        used = meta.find_undeclared_variables(ast) - set(env.globals)
        unknown = sorted(used - set(spec.fields.vars))
        if unknown:
            raise ConfigError(
                f"{where}: prompt: uses variable '{unknown[0]}', which fields.vars does not define",
                f"{did_you_mean(unknown[0], spec.fields.vars)}defined: {', '.join(sorted(spec.fields.vars)) or 'none'}; "
                f"add `{unknown[0]}: <path>` under fields.vars or fix the name",
            )
    return template


def render_template(template: Template, example: Example, where: str) -> str:
    """The template rendered with an example's variables.

    Raises:
        ConfigError: an undefined variable or a failing expression, naming the example.
    """
    try:
        return template.render(example.vars)
    except UndefinedError as exc:
        raise ConfigError(
            f"{where}: prompt: {exc.message} (example '{example.id}')",
            f"use one of the variables {', '.join(sorted(example.vars)) or '(none)'}, "
            "or map it under fields.vars",
        ) from None
    except TemplateError as exc:
        raise ConfigError(f"{where}: prompt: {type(exc).__name__}: {exc} (example '{example.id}')",
                          "fix the template expression") from None


def _block_scalar_line(yaml_path: Path, key: str, template_line: int | None) -> int | None:
    """The file line of a template line when `key` is a top-level `|` block scalar."""
    if not template_line:
        return None
    try:
        node = yaml.compose(yaml_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError):
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if getattr(k, "value", None) == key and isinstance(v, yaml.ScalarNode):
            if v.style == "|":
                return v.start_mark.line + 1 + template_line
            if v.style in (None, "", "'", '"') and template_line == 1:
                return v.start_mark.line + 1
    return None
