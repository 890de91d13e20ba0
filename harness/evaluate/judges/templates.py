"""Judge prompt templates: the defaults, the variables they may use, and their validation.

Templates are jinja2 in the suites' sandboxed environment (StrictUndefined, so a typo is an
error, not an empty string). The JSON shape the parser expects is supplied as `{{ format }}`
rather than written into each template, so custom templates cannot drift from the parser.
The placeholders in `format` are deliberately not valid JSON: a judge (or an echo server)
that repeats the instructions verbatim must not be mistaken for an answer.
"""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes

from harness.errors import ConfigError
from harness.evaluate.judges.spec import CriterionSpec, JudgeSpec
from harness.suggest import did_you_mean

DEFAULT_SYSTEM = (
    "You are a careful, impartial evaluator. You grade strictly by the rubric you are given "
    "and you answer only with the JSON object you are asked for."
)

POINTWISE = """\
Evaluate the response below against each criterion of the rubric.

## Task given to the assistant
{{ prompt }}

{% if reference %}
## Reference answer (a good answer; the response need not match it word for word)
{{ reference }}

{% endif %}
## Response to evaluate
{{ response }}

## Rubric
{% for c in criteria %}
### {{ c.name }}
{{ c.description }}
Score it from {{ c.min }} (worst) to {{ c.max }} (best).
{% for level, text in c.anchors %}
- {{ level }}: {{ text }}
{% endfor %}

{% endfor %}
{{ format }}"""

PAIRWISE = """\
Compare two responses to the same task and decide which one is better overall by the rubric \
below. The order in which they are shown, their length and their style must not sway you.

## Task given to the assistant
{{ prompt }}

{% if reference %}
## Reference answer (a good answer; neither response needs to match it word for word)
{{ reference }}

{% endif %}
## Response A
{{ response_a }}

## Response B
{{ response_b }}

## Rubric
{% for c in criteria %}
- {{ c.name }}: {{ c.description }}
{% endfor %}

{{ format }}"""

REASK = """\
Your previous reply could not be used: {{ error }}.
{{ format }}"""

_COMMON = {"criteria", "rubric", "prompt", "reference", "references", "vars", "item_id", "format"}
ALLOWED = {
    "system": {"criteria", "rubric"},
    "pointwise": _COMMON | {"response"},
    "pairwise": _COMMON | {"response_a", "response_b"},
    "reask": {"error", "format", "criteria", "rubric", "raw"},
}


def criterion_vars(c: CriterionSpec) -> dict[str, Any]:
    """What a template sees of one criterion."""
    return {"name": c.name, "description": c.description, "min": c.scale.min, "max": c.scale.max,
            "anchors": sorted(c.scale.anchors.items())}


def pointwise_format(criteria: list[CriterionSpec]) -> str:
    entries = ", ".join(
        f'"{c.name}": {{"score": <integer {c.scale.min}-{c.scale.max}>, "rationale": "<one or two sentences>"}}'
        for c in criteria
    )
    return f"Answer with only a JSON object, no other text, in exactly this shape:\n{{{entries}}}"


PAIRWISE_FORMAT = ('Answer with only a JSON object, no other text, in exactly this shape:\n'
                   '{"winner": "A" or "B" or "tie", "rationale": "<one or two sentences>"}')


def compile_templates(spec: JudgeSpec, where: str) -> dict[str, Any]:
    """Compile and check the judge's templates; returns name -> jinja Template.

    Raises:
        ConfigError: a syntax error, a variable the template cannot have, or a reference to a
            criterion the rubric does not define (`rubric.nme`).
    """
    from harness.evaluate.suites import make_jinja_env

    env = make_jinja_env(where=where)
    sources = {
        "system": spec.system if spec.system is not None else DEFAULT_SYSTEM,
        "pointwise": spec.prompt.pointwise or POINTWISE,
        "pairwise": spec.prompt.pairwise or PAIRWISE,
        "reask": spec.prompt.reask or REASK,
    }
    field = {"system": "judge.system", "pointwise": "judge.prompt.pointwise",
             "pairwise": "judge.prompt.pairwise", "reask": "judge.prompt.reask"}
    names = spec.criterion_names
    compiled: dict[str, Any] = {}
    for key, source in sources.items():
        try:
            ast = env.parse(source)
        except TemplateSyntaxError as exc:
            raise ConfigError(
                f"{where}: {field[key]}: template syntax error on line {exc.lineno}: {exc.message}",
                "fix the jinja syntax ({{ var }}, {% for x in xs %}...{% endfor %})",
            ) from None
        unknown_vars = sorted(meta.find_undeclared_variables(ast) - ALLOWED[key] - set(env.globals))
        if unknown_vars:
            bad = unknown_vars[0]
            if bad in names:
                hint = f"criteria are reached through the rubric: write rubric.{bad}"
            else:
                hint = f"{did_you_mean(bad, sorted(ALLOWED[key]))}available here: {', '.join(sorted(ALLOWED[key]))}"
            raise ConfigError(f"{where}: {field[key]}: uses unknown variable '{bad}'", hint)
        for ref in _rubric_refs(ast):
            if ref not in names:
                raise ConfigError(
                    f"{where}: {field[key]}: refers to criterion '{ref}', which judge.criteria does not define",
                    f"{did_you_mean(ref, names)}criteria: {', '.join(names)}",
                )
        compiled[key] = env.from_string(source)
    return compiled


def _rubric_refs(ast: nodes.Template) -> list[str]:
    """Criterion names a template reaches as rubric.NAME or rubric['NAME']."""
    refs: list[str] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "rubric"):
            continue
        if isinstance(node, nodes.Getattr):
            if node.attr not in ("items", "keys", "values", "get"):
                refs.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            refs.append(node.arg.value)
    return refs
