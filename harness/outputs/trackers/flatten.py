"""A finished run folder as the flat key -> value maps experiment trackers store.

Trackers keep params as strings, metrics as numbers and tags as strings, each under a name
of letters, digits and `_ - . / : space`. Everything here reads run.json (`RunMeta`) and
verdict.json (`VerdictDoc`) only, so any tracker (MLflow today) logs the same names:

    params   base, adapters, suites, benches, seed and every other spec field; harness version,
             git commit, weight hashes, the gate policy
    metrics  {suite|bench}/TASK/MODEL/METRIC   run.json's aggregate (0..1); also .../n,
             .../mean_latency_s, .../mean_new_tokens, .../truncated where run.json has them
             delta_pts/{suite|bench}/TASK/ADAPTER/METRIC   adapter - base in points (100 x)
             clean/{suite|bench}/TASK/MODEL/METRIC   aggregates on leak-free items (--train)
             ab_gain_pts/{suite|bench}/TASK/ARM/METRIC/{mean,sd}   `harness ab` across seeds
             gate/pass (1 pass, 0 fail or inconclusive), gate/exit_code, gate/rules_{status}
    tags     harness.verdict, harness.rule.RULE (its status), harness.run_dir, harness.command
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.log.schema import RunMeta, VerdictDoc

# Characters trackers refuse in a name segment become "_"; "/" separates segments, so a "/"
# inside a task or metric name (an `evaluate:` module path) is replaced too.
_BAD = re.compile(r"[^\w.\- :]")
RULE_STATUSES = ("pass", "fail", "inconclusive", "skipped")
# An aggregate's numbers besides its metrics (per-subject tables and flips stay in run.json)
COUNTS = ("n", "mean_latency_s", "mean_new_tokens", "truncated")


def _segment(text: Any) -> str:
    seg = _BAD.sub("_", str(text)).strip() or "_"
    # "." and ".." would resolve to other paths in a file store, which refuses them
    return "_" + seg if set(seg) == {"."} else seg


def key(*parts: Any) -> str:
    """A tracker-safe name from its parts: `key("suite", "squad-qa~perturbed", "ft", "f1")`."""
    return "/".join(_segment(p) for p in parts)


def _param(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return json.dumps(value)


@dataclass
class Flat:
    """What one tracker run holds: params (str), metrics (float) and tags (str)."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def put(self, section: dict, name: str, value: Any) -> None:
        """Adds `name`; a second name that sanitises to the same key gets a suffix instead of
        overwriting the first (two tasks "a~b" and "a_b" both stay)."""
        unique, i = name, 2
        while unique in section:
            unique, i = f"{name}_{i}", i + 1
        section[unique] = value


def _aggregates(flat: Flat, meta: RunMeta) -> None:
    for kind, tasks in meta.aggregates.sections():
        for task, per_model in tasks.items():
            for model, agg in per_model.items():
                numbers = {**agg.metric_values(), **{name: getattr(agg, name) for name in COUNTS}}
                for name, value in numbers.items():
                    if value is not None:
                        flat.put(flat.metrics, key(kind, task, model, name), float(value))


def _deltas(flat: Flat, meta: RunMeta) -> None:
    from harness.analysis.headline import aggregate_deltas

    for row in aggregate_deltas(meta):
        flat.put(flat.metrics, key("delta_pts", row.kind, row.task, row.model, row.metric), row.delta)


def _clean(flat: Flat, meta: RunMeta) -> None:
    if meta.leaks is None:
        return
    for kind, tasks in meta.leaks.clean_aggregates.items():
        for task, per_model in tasks.items():
            for model, values in per_model.items():
                for metric, value in values.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        flat.put(flat.metrics, key("clean", kind, task, model, metric), float(value))


def _ab(flat: Flat, meta: RunMeta) -> None:
    for g in meta.ab.summary if meta.ab else []:
        flat.put(flat.metrics, key("ab_gain_pts", g.kind, g.task, g.arm, g.metric, "mean"), g.mean_points)
        if g.sd_points is not None:
            flat.put(flat.metrics, key("ab_gain_pts", g.kind, g.task, g.arm, g.metric, "sd"), g.sd_points)


def _gate(flat: Flat, verdict: VerdictDoc) -> None:
    flat.metrics["gate/pass"] = 1.0 if verdict.verdict == "pass" else 0.0
    flat.metrics["gate/exit_code"] = float(verdict.exit_code)
    for status in RULE_STATUSES:
        flat.metrics[f"gate/rules_{status}"] = float(sum(r.status == status for r in verdict.rules))
    flat.tags["harness.verdict"] = verdict.verdict
    for r in verdict.rules:
        flat.put(flat.tags, "harness.rule." + _segment(r.name), r.status)
    if verdict.policy:
        flat.put(flat.params, "policy", verdict.policy)


def _params(flat: Flat, meta: RunMeta) -> None:
    spec = meta.spec.model_dump(mode="json")
    for name in ("base", "adapters", "suites", "benches"):  # the identity of the run first
        flat.params[name] = _param(spec.pop(name))
    seed = spec.pop("seed", None)
    flat.params["seed"] = _param(meta.provenance.seed if seed is None else seed)
    for name, value in spec.items():
        flat.put(flat.params, key(name), _param(value))
    code = meta.provenance.code
    for name in ("harness", "git_commit", "git_dirty"):
        if name in code:
            flat.params["harness_version" if name == "harness" else name] = _param(code[name])
    if meta.provenance.base.get("sha256"):
        flat.params["base_sha256"] = str(meta.provenance.base["sha256"])
    for name, adapter in meta.provenance.adapters.items():
        if adapter.sha256:
            flat.put(flat.params, key("adapter_sha256", name), adapter.sha256)


def flatten_run(run_dir: Path, meta: RunMeta, verdict: VerdictDoc | None) -> Flat:
    """Params, metrics and tags of the run in `run_dir` (see the module docstring for names).

    Args:
        run_dir: The run folder (recorded as a tag).
        meta: Its run.json.
        verdict: Its verdict.json, or None when the run was not gated.
    """
    flat = Flat()
    _params(flat, meta)
    _aggregates(flat, meta)
    _deltas(flat, meta)
    _clean(flat, meta)
    _ab(flat, meta)
    if verdict is not None:
        _gate(flat, verdict)
    flat.tags["harness.run_dir"] = str(Path(run_dir).resolve())
    if meta.command:
        flat.tags["harness.command"] = " ".join(meta.command)
    return flat
