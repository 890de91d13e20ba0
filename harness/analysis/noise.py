"""Noise floor: how much one model's scores move between two runs that should be identical.

Batched decoding pads prompts and orders work differently per batch size, and float
arithmetic is not associative, so the same model can answer a few items differently. A gate
threshold smaller than that drift can fail (or pass) on noise alone. `calibrate` scores
one model twice with different batch sizes, the second time in a shuffled item order (so
other items share each batch and its padding), and no result cache; `drift` records, per task
and metric, the absolute difference of the aggregates in points and the share of items whose
score flipped; `harness gate --noise FILE` warns for every rule whose threshold is below it.

File format (JSON, `schema: harness-noise/1`): model, base sha256, batch sizes, and `tasks`:
a list of {kind, task, fingerprint, n, prediction_flip_share, metrics: {metric: {first,
second, drift_points, flip_share}}}.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from harness.analysis.pairing import IncomparableError
from harness.errors import ConfigError
from harness.log.folder import RunFolder
from harness.log.schema import ItemRecord, RunMeta

SCHEMA = "harness-noise/1"
# Fingerprint fields that define a prompt/data version; an item-set hash is left out on
# purpose, since a noise floor measured on a sample still describes the full set.
VERSION_KEYS = ("version", "data_hash", "prompt_hash", "num_fewshot")


def _by_task(records: list[ItemRecord], model: str) -> dict[tuple[str, str], dict[str, ItemRecord]]:
    out: dict[tuple[str, str], dict[str, ItemRecord]] = {}
    for r in records:
        if r.model == model:
            out.setdefault((r.kind, r.task), {})[str(r.item_id)] = r
    return out


def _aggregate(meta: RunMeta, kind: str, task: str, model: str, metric: str,
               lines: list[ItemRecord]) -> float | None:
    agg = meta.aggregates.of(kind).get(task, {}).get(model)
    value = agg.metric_values().get(metric) if agg is not None else None
    if value is not None:
        return value
    vals = [line.scores[metric] for line in lines if line.scores.get(metric) is not None]
    return sum(vals) / len(vals) if vals else None


def drift(first_dir: str | Path, second_dir: str | Path) -> dict[str, Any]:
    """Compares two runs of the same model (same items) and returns the noise-floor document.

    Args:
        first_dir: Run folder of the first scoring.
        second_dir: Run folder of the second scoring.

    Returns:
        The JSON-ready noise document (without `created`/`model`, which `calibrate` adds).

    Raises:
        IncomparableError: The runs scored different models or items.
    """
    first, second = RunFolder(first_dir), RunFolder(second_dir)
    meta_a, meta_b = first.read_meta(), second.read_meta()
    models_a, models_b = meta_a.models, meta_b.models
    if len(models_a) != 1 or models_a != models_b:
        raise IncomparableError(f"calibration runs must score one and the same model, got {models_a} and {models_b}",
                                "run `harness calibrate` with a single model (and at most one --adapter)")
    model = models_a[0]
    lines_a, lines_b = _by_task(first.read_items(), model), _by_task(second.read_items(), model)
    tasks = []
    for key in lines_a:
        kind, task = key
        a, b = lines_a[key], lines_b.get(key, {})
        if set(a) != set(b):
            raise IncomparableError(f"calibration runs scored different items for {kind} '{task}'",
                                    "re-run `harness calibrate`; both runs must see the same items")
        ids = list(a)
        metrics: dict[str, dict[str, Any]] = {}
        names = list(dict.fromkeys(m for i in ids for m in a[i].scores))
        for m in names:
            agg_a = _aggregate(meta_a, kind, task, model, m, list(a.values()))
            agg_b = _aggregate(meta_b, kind, task, model, m, list(b.values()))
            pairs = [(a[i].scores.get(m), b[i].scores.get(m)) for i in ids]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            flips = sum(abs(float(x) - float(y)) > 1e-12 for x, y in pairs)
            metrics[m] = {
                "first": None if agg_a is None else 100.0 * agg_a,
                "second": None if agg_b is None else 100.0 * agg_b,
                "drift_points": None if agg_a is None or agg_b is None else 100.0 * abs(agg_a - agg_b),
                "flip_share": flips / len(pairs) if pairs else None,
            }
        changed = sum(a[i].prediction != b[i].prediction for i in ids)
        tasks.append({"kind": kind, "task": task, "fingerprint": meta_a.fingerprint(kind, task),
                      "n": len(ids), "prediction_flip_share": changed / len(ids) if ids else None,
                      "metrics": metrics})
    prov = meta_a.provenance
    adapter = prov.adapters.get(model)
    return {
        "schema": SCHEMA,
        "model_name": model,
        "base_sha256": prov.base.get("sha256"),
        "adapter_sha256": adapter.sha256 if adapter else None,
        "batch_sizes": [prov.batch_size, meta_b.provenance.batch_size],
        "tasks": tasks,
    }


@dataclasses.dataclass(frozen=True)
class NoiseEntry:
    """The measured drift of one metric on one task."""

    kind: str
    task: str
    metric: str
    drift_points: float
    flip_share: float | None
    fingerprint: dict[str, Any] | None


class NoiseFloor:
    """A loaded `harness calibrate` file."""

    def __init__(self, path: Path, doc: dict[str, Any]):
        self.path = path
        self.doc = doc
        self.entries: dict[tuple[str, str, str], NoiseEntry] = {}
        for t in doc.get("tasks", []):
            for metric, m in (t.get("metrics") or {}).items():
                if m.get("drift_points") is None:
                    continue
                self.entries[(t["kind"], t["task"], metric)] = NoiseEntry(
                    kind=t["kind"], task=t["task"], metric=metric, drift_points=float(m["drift_points"]),
                    flip_share=m.get("flip_share"), fingerprint=t.get("fingerprint"))

    def lookup(self, kind: str, task: str, metric: str) -> NoiseEntry | None:
        return self.entries.get((kind, task, metric))

    @staticmethod
    def same_version(measured: dict[str, Any] | None, run: dict[str, Any] | None) -> bool:
        """True unless both fingerprints are known and differ in a prompt/data version field."""
        if not measured or not run:
            return True
        return all(measured.get(k) == run.get(k) for k in VERSION_KEYS if k in measured and k in run)


def load_noise(path: str | Path) -> NoiseFloor:
    """Reads a noise-floor file written by `harness calibrate`.

    Raises:
        ConfigError: Missing, unreadable or not a noise-floor file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"noise-floor file {path} not found",
                          "create it with `harness calibrate MODEL ... --out FILE`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})", "re-create it with `harness calibrate`") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{path} is not a harness noise-floor file (schema {SCHEMA})",
                          "pass the --out file of `harness calibrate`")
    return NoiseFloor(path, doc)
