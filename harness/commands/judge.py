"""`harness judge check SUITE`: validate a suite's judge block and ping its endpoint.

Top-level imports stay light (no torch, no httpx); the work is imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

judge_app = typer.Typer(no_args_is_help=True, help="Rubric LLM judges.")


@judge_app.command("check")
def check(suite: str = typer.Argument(..., help="Suite name or folder with a `judge:` block."),
          ping: bool = typer.Option(True, "--ping/--no-ping", help="Check the endpoint answers and accepts the key."),
          probe: bool = typer.Option(False, "--probe", help="Also judge the first item's reference answer "
                                     "(one real, uncached call) and show the verdict."),
          timeout: float = typer.Option(3.0, "--timeout", help="Seconds to wait for the ping."),
          trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code",
                                                          help="Suite folder whose python hook may run; repeatable.")) -> None:
    """Validate SUITE's judge config (schema, templates, labels, API key env var) and ping the endpoint.

    Exit codes: 0 ok, 2 a problem to fix (printed as one line).
    """
    from harness.evaluate.suite_config import display_path
    from harness.errors import ConfigError
    from harness.evaluate.suites import load_suite

    from harness.evaluate.judges import validate_judge

    s = load_suite(suite, trusted_dirs=trust_code or [])
    if s.spec.judge is None:
        raise ConfigError(f"{display_path(s.yaml_path)}: suite '{s.name}' has no judge: block",
                          "add one (see harness/evaluate/judges/spec.py)")
    result = validate_judge(s, ping=ping, ping_timeout=timeout)
    assert result is not None
    spec = result.spec
    typer.echo(f"suite:    {s.name} ({display_path(s.yaml_path)})")
    where = result.ping.url if result.ping else (spec.base_url or spec.model)
    if spec.api_key_env:
        key = f"key from ${spec.api_key_env} (set)"
    else:
        key = "no API key"
    typer.echo(f"judge:    {spec.backend} · model {spec.model} · {where} · {key}")
    crits = ", ".join(f"{c.name} ({c.scale.min}-{c.scale.max})" for c in spec.criteria)
    typer.echo(f"modes:    {', '.join(spec.mode)} · criteria: {crits}")
    typer.echo(f"metrics:  {', '.join(result.metrics)}")
    budget = spec.budget
    limits = [f"{k}={v}" for k, v in budget.model_dump().items() if v is not None]
    typer.echo(f"client:   timeout {spec.timeout:g}s · {spec.retries} retries · concurrency {spec.concurrency}"
               f" · budget {', '.join(limits) or 'unlimited'}")
    if spec.human_labels is not None:
        typer.echo(f"labels:   {spec.human_labels.file} ({spec.human_labels.method}: "
                   f"{', '.join(spec.human_labels.scores)})")
    if result.ping is not None:
        p = result.ping
        if p.status is not None:
            models = f"; models: {', '.join(p.models[:5])}" if p.models else ""
            typer.echo(f"endpoint: reachable, GET /models -> HTTP {p.status} in {1000 * p.latency_s:.0f} ms{models}")
        if p.note:
            typer.echo(f"note:     {p.note}")
    if probe:
        _probe(s, typer.echo)
    typer.echo("ok")


def _probe(suite, echo) -> None:
    """One uncached pointwise call on the first item, with its reference as the response."""
    from harness.evaluate.judges import judge_suite

    examples = suite.examples(1)
    if not examples:
        echo("probe:    the suite has no items")
        return
    result = judge_suite(suite, examples, {"reference": [examples[0].references[0]]}, use_cache=False)
    for metric, values in result.scores["reference"].items():
        detail = result.details["reference"][0].get(metric, {})
        if values[0] is None:
            echo(f"probe:    {metric}: UNSCORED ({detail.get('error')})")
        else:
            echo(f"probe:    {metric}: {detail.get('score'):g} -> {values[0]:.2f} · {detail.get('rationale') or ''}")
    st = result.stats
    echo(f"probe:    {st['requests']} request(s), {st['retries']} retries, {st['reasks']} re-asks, {st['wall_s']:.2f}s")


def register(app: typer.Typer) -> None:
    """Add `harness judge ...` to the CLI."""
    app.add_typer(judge_app, name="judge")
