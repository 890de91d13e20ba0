"""The report's Baselines panel: every adapter against every baseline arm of
`compare --baseline/--baseline-model` (the prompted base, another model), from the
comparison's own `baseline_rows`, so the numbers are the ones summary.md and the gate use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.outputs.report.rows import HeadlineRow


@dataclass
class BaselineGroup:
    """One adapter against one arm: what the arm is, and a row per task and metric."""

    adapter: str
    arm: str
    what: str  # e.g. "the base with 3 solved examples from the suite's pool"
    rows: list[HeadlineRow]


def describe(prov: Any) -> str:
    """A short description of an arm from its run.json provenance."""
    kind = getattr(prov, "kind", "")
    extra = (prov.model_extra or {}) if prov is not None else {}
    if kind == "fewshot":
        shots = extra.get("shots") or {}
        ids = "; ".join(f"{suite}: {', '.join(map(str, s.get('ids', [])))}" for suite, s in shots.items())
        return f"the base shown {extra.get('k')} solved examples from each suite's few-shot pool ({ids})"
    if kind == "system":
        return f"the base under the system prompt in {extra.get('file')}"
    model = extra.get("model") or {}
    if kind == "hosted":
        return f"hosted model {model.get('model')} at {model.get('base_url')}"
    return f"model {model.get('spec') or extra.get('arg')}"


def baselines(view: Any) -> list[BaselineGroup]:
    comp = view.comparison
    if comp is None or not comp.baseline_rows:
        return []
    arms = view.meta.provenance.baselines
    out = []
    for adapter in comp.adapters:
        for arm in comp.baselines:
            rows = [HeadlineRow.of(r) for r in comp.baseline_rows if r.adapter == adapter and r.against == arm]
            if rows:
                out.append(BaselineGroup(adapter, arm, describe(arms.get(arm)), rows))
    return out
