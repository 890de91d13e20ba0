"""A suite's judge before any model work: is it on, its resolved spec, its backend, a ping."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.evaluate.judges.base import JUDGE_BACKENDS, JudgeBackend, PingResult, read_api_key
from harness.evaluate.judges.cache import CACHE_VERSION
from harness.evaluate.judges.labels import read_labels
from harness.evaluate.judges.spec import JudgeSpec, parse_judge_spec
from harness.evaluate.judges.templates import compile_templates
from harness.hashing import sha256_json
from harness.io import display_path
from harness.suggest import unknown_name_message

ENV_SWITCH = "HARNESS_JUDGE"  # "0"/"off"/"false"/"no" turns judging off for every suite


@dataclass
class JudgeCheck:
    """What `validate_judge` found: the resolved spec and the endpoint's answer to a ping."""

    spec: JudgeSpec
    backend: str
    ping: PingResult | None
    metrics: list[str]


def judge_enabled(suite: Any) -> bool:
    """True when the suite has a `judge:` block and HARNESS_JUDGE does not switch judging off."""
    if getattr(suite.spec, "judge", None) is None:
        return False
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in ("0", "off", "false", "no")


def suite_where(suite: Any) -> str:
    """The suite file as messages name it."""
    return display_path(Path(suite.yaml_path))


def resolve_spec(suite: Any) -> JudgeSpec | None:
    """The suite's judge spec with env overrides applied, or None when it has no judge block."""
    raw = getattr(suite.spec, "judge", None)
    if raw is None:
        return None
    return parse_judge_spec(raw, suite_where(suite))


def backend_class(spec: JudgeSpec, where: str) -> type[JudgeBackend]:
    """The registered backend class `judge.backend` names.

    Raises:
        ConfigError: an unknown backend, with a did-you-mean.
    """
    if spec.backend not in JUDGE_BACKENDS:
        raise ConfigError(f"{where}: judge.backend: "
                          f"{unknown_name_message('judge backend', spec.backend, JUDGE_BACKENDS.names())}",
                          "use openai (any OpenAI-compatible server) or local (a model folder or asset)")
    return JUDGE_BACKENDS.get(spec.backend)


def validate_judge(suite: Any, ping: bool = True, ping_timeout: float = 3.0) -> JudgeCheck | None:
    """Check a suite's judge before any model work; None when it has no judge block.

    Checks the schema (scales, modes, criteria), the templates (syntax, variables, criteria
    they name), the human-labels file, that the API key's env var is set, and (with `ping`)
    that the endpoint answers within `ping_timeout` seconds, accepts the key and answers
    with success (any non-2xx status fails the check).

    Raises:
        ConfigError: one line naming the suite file and what to fix.
    """
    spec = resolve_spec(suite)
    if spec is None:
        return None
    where = suite_where(suite)
    cls = backend_class(spec, where)
    compile_templates(spec, where)
    if spec.human_labels is not None:
        read_labels(suite, spec, where)
    read_api_key(spec.api_key_env, where)  # named in the message with the suite file
    backend = cls(spec)
    try:
        result = backend.ping(ping_timeout) if ping else None
    finally:
        backend.close()
    if result is not None:
        _require_success(result, spec)
    return JudgeCheck(spec=spec, backend=spec.backend, ping=result, metrics=spec.metric_names())


def _require_success(result: PingResult, spec: JudgeSpec) -> None:
    """A ping that reports a non-2xx HTTP status is a failed check, whatever backend made it.

    The built-in openai backend raises on its own; this holds a plugin backend that returns
    its endpoint's error status in a PingResult to the same rule.

    Raises:
        ConfigError: naming the endpoint and the status.
    """
    if result.status is not None and not 200 <= result.status < 300:
        raise ConfigError(f"judge endpoint check failed: {result.url} answered HTTP {result.status}",
                          f"check that the {spec.backend} judge server is healthy and reachable at that URL")


def judge_fingerprint(suite: Any) -> dict[str, Any] | None:
    """What identifies the judge's verdicts (for run.json provenance); None without a judge."""
    spec = resolve_spec(suite)
    if spec is None:
        return None
    from harness.evaluate.judges.openai_client import display_url

    dump = spec.model_dump(mode="json")
    if dump.get("base_url"):
        dump["base_url"] = display_url(dump["base_url"])
    return {"backend": spec.backend, "model": spec.model, "base_url": dump.get("base_url"),
            "mode": list(spec.mode), "criteria": spec.criterion_names, "api_key_env": spec.api_key_env,
            "spec_hash": sha256_json({"spec": dump, "cache": CACHE_VERSION})}
