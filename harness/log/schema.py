"""The run folder's typed contract: pydantic models of run.json, an items.jsonl line, a
leaks.jsonl line and verdict.json.

Every model allows extra keys: evaluators, judges, plugins and later harness versions add
fields (judge details, benchmark provenance, training records), and a reader must not reject
a run for a key it does not use. What the readers rely on is typed and validated: names are
strings, `scores` is a mapping of metric -> number or null, flags are booleans.

Versions: run.json's `schema_version` versions the run log (run.json and items.jsonl are
written together and change together); verdict.json carries its own. A version this harness
does not read fails with a one-line error (see `harness.log.folder`).

`python -m harness.log.schema --write docs/schema` regenerates the JSON Schemas that
other tools read runs with (a test checks that they are current).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
)

RUN_SCHEMA_VERSION = 1
VERDICT_SCHEMA_VERSION = 1
VERDICT_SCHEMA = "harness-verdict/1"
# A 0..1 score, or null when unscored (e.g. a judge that could not parse a reply). Strict:
# a string "0.5" is a corrupt log, not a number.
Score = Optional[Annotated[float, Strict()]]
Number = Optional[Union[StrictInt, Annotated[float, Strict()]]]
ItemId = Union[StrictStr, StrictInt]  # a dataset's own id: suites allow strings or integers
AGGREGATE_EXTRAS = ("n", "mean_latency_s", "mean_new_tokens", "per_subject", "flips")


class _Open(BaseModel):
    """Base: unknown keys are kept (and written back) as they are."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- run.json


class BenchFormatSpec(_Open):
    """lm-eval's rendering switches a run's benchmarks used (`spec.bench_format`)."""

    chat_template: StrictBool = False
    fewshot_as_multiturn: StrictBool = False
    system_instruction: Optional[str] = None


class RunSpec(_Open):
    """What two runs must share to be the same run (`RunConfig.spec()`)."""

    base: Optional[str] = None
    adapters: list[str] = Field(default_factory=list)
    suites: list[str] = Field(default_factory=list)
    benches: list[str] = Field(default_factory=list)
    # How benchmark prompts were rendered (`--chat-template`, `--system-instruction`); absent: plain
    bench_format: Optional[BenchFormatSpec] = None


class AdapterProvenance(_Open):
    """One adapter's weights, LoRA settings and the no-effect probe."""

    path: Optional[str] = None
    sha256: Optional[str] = None
    base_model_name_or_path: Optional[str] = None
    lora: dict[str, Any] = Field(default_factory=dict)
    probe_max_abs_logit_delta: Optional[float] = None
    probe_quantity: str = "logit"  # what the probe compared: "logit", or "token log-prob" (vLLM)
    has_effect: Optional[StrictBool] = None
    warnings: list[str] = Field(default_factory=list)


class Placement(_Open):
    """Where the run's models ran (`--device`, `--dtype`, `--device-map`, `--load-in`, `--engine`)."""

    device: str = "cpu"
    dtype: str = "float32"
    device_map: Optional[str] = None
    load_in: Optional[str] = None
    engine: str = "transformers"
    gpu_name: Optional[str] = None
    gpu_count: Optional[int] = None
    peak_gpu_memory_gb: Optional[float] = None


class Distributed(_Open):
    """How many data-parallel processes computed the run (`accelerate launch` / `torchrun`)."""

    world_size: int = 1


class BaselineProvenance(_Open):
    """A baseline arm of `compare --baseline/--baseline-model` (harness.evaluate.baselines):
    what it is (`kind`) and what defines it: for `fewshot`, K, the seed and per suite the ids
    of the pool examples shown; for `system`, the prompt file's hash; for `model`/`hosted`,
    the weights or the endpoint. Its items.jsonl lines carry its name as `model`."""

    kind: Literal["fewshot", "system", "model", "hosted"]
    arg: Optional[str] = None  # as given on the command line


class Provenance(_Open):
    """Hashes and versions that decide whether two runs are comparable."""

    placement: Optional[Placement] = None
    distributed: Optional[Distributed] = None

    base: dict[str, Any] = Field(default_factory=dict)
    adapters: dict[str, AdapterProvenance] = Field(default_factory=dict)
    suites: dict[str, dict[str, Any]] = Field(default_factory=dict)
    judges: dict[str, Any] = Field(default_factory=dict)
    baselines: dict[str, BaselineProvenance] = Field(default_factory=dict)  # arm name -> what it is
    benchmarks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    code: dict[str, Any] = Field(default_factory=dict)
    libraries: dict[str, Any] = Field(default_factory=dict)
    machine: dict[str, Any] = Field(default_factory=dict)
    seed: Optional[int] = None
    batch_size: Optional[int] = None


class MetricInfo(_Open):
    """A metric's direction and whether it is computed over the whole corpus (BLEU, chrF)."""

    higher_is_better: bool = True
    corpus_level: bool = False


class Aggregate(_Open):
    """One model's aggregates on one task: metric means as extra keys, plus `n` and costs.

    Metric keys are not known in advance (any suite metric, `judge:<criterion>`), so they are
    extra keys; `metric_values()` returns those that are numbers.
    """

    n: int = 0
    mean_latency_s: Optional[float] = None
    mean_new_tokens: Optional[float] = None
    per_subject: Optional[dict[str, dict[str, Any]]] = None
    flips: Optional[dict[str, Any]] = None
    truncated: Optional[int] = None  # items whose prompt was cut on the left to fit the model's context

    def metric_values(self) -> dict[str, float | None]:
        """metric -> aggregate (None when nothing was scored), in written order."""
        extra = self.model_extra or {}
        return {k: (None if v is None else float(v)) for k, v in extra.items()
                if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}


TaskAggregates = dict[str, dict[str, Aggregate]]  # task -> model -> aggregate


class Aggregates(_Open):
    """Per-task aggregates: `suites` and (with --bench) `bench`."""

    suites: TaskAggregates = Field(default_factory=dict)
    bench: Optional[TaskAggregates] = None

    def sections(self) -> list[tuple[str, TaskAggregates]]:
        """(kind, task aggregates) for "suite" and "bench", in that order."""
        return [("suite", self.suites)] + ([("bench", self.bench)] if self.bench is not None else [])

    def truncated(self) -> dict[str, tuple[int, int]]:
        """task -> (most prompts cut for any model, items) for tasks with prompts cut to fit the context."""
        out = {}
        for _, tasks in self.sections():
            for task, per_model in tasks.items():
                cut = max((agg.truncated or 0 for agg in per_model.values()), default=0)
                if cut:
                    out[task] = (cut, max(agg.n for agg in per_model.values()))
        return out

    def of(self, kind: str) -> TaskAggregates:
        return self.suites if kind == "suite" else self.bench or {}


class LeakCount(_Open):
    """Items per leak label of one task; contaminated items split by what was copied."""

    kind: str = ""
    n: int = 0
    clean: int = 0
    suspect: int = 0
    contaminated: int = 0
    input_only: int = 0
    input_answer: int = 0


class TemporalCount(_Open):
    """Items of one task by date against the training cutoff (harness.leaks.temporal)."""

    n: int = 0
    at_risk: int = 0
    after_cutoff: int = 0
    undated: int = 0
    dated: int = 0  # only without a cutoff: dated items that could not be judged


class TemporalSummary(_Open):
    """Temporal leakage: the cutoff, where it came from, and item counts per task."""

    cutoff: Optional[str] = None  # YYYY-MM-DD, the last day the training data covers
    cutoff_source: Optional[Literal["--train-cutoff", "training data"]] = None
    rule: Optional[str] = None
    training: Optional[dict[str, Any]] = None  # dated_rows, first, last (when training dates were read)
    counts: dict[str, TemporalCount] = Field(default_factory=dict)
    totals: Optional[TemporalCount] = None


# kind -> task -> model -> metric means (and `n`) on one subset of items
SubsetMeans = dict[str, dict[str, dict[str, dict[str, Number]]]]


class LeakSummary(_Open):
    """The leak scan's summary in run.json (`compare --train`)."""

    label_rule: Optional[str] = None
    training: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, LeakCount] = Field(default_factory=dict)
    # kind -> task -> model -> metric means on clean items (and `n`)
    clean_aggregates: SubsetMeans = Field(default_factory=dict)
    # subset (harness.analysis.leak_subsets.SUBSETS: contaminated, input_only, input_answer,
    # at_risk, after_cutoff, undated) -> the same shape as clean_aggregates; empty subsets left out
    subset_aggregates: dict[str, SubsetMeans] = Field(default_factory=dict)
    temporal: Optional[TemporalSummary] = None
    file: Optional[str] = None


class Timing(_Open):
    load_s: float = 0.0
    total_s: float = 0.0
    items_computed: int = 0
    items_cached: int = 0


class SeedGain(_Open):
    """`harness ab`: one task/metric/arm's gain over base across seeds, in points."""

    kind: str
    task: str
    metric: str
    arm: str
    seeds: int
    gains_points: list[float]
    mean_points: float
    sd_points: Optional[float] = None
    min_points: float
    max_points: float


class ArmGain(SeedGain):
    """`harness ab --vs`: arm B against arm A on one task/metric, seed s of B paired with seed s
    of A (harness.analysis.arms). `gains_points` are per-seed B − A (raw, as SeedGain's)."""

    seed_ids: list[int] = Field(default_factory=list)
    higher_is_better: bool = True
    n: int = 0  # items in the pooled paired test
    test: str = ""
    p_better: Optional[float] = None  # pooled one-sided p, H1: B is better than A
    p_worse: Optional[float] = None
    outcome: Literal["win", "no-win", "loss"]
    reason: str = ""


class ArmVerdict(_Open):
    """The B-vs-A decision: the rule's settings and one row per task/metric (docs/ab.md)."""

    spread_k: float
    alpha: float
    rule: str = ""
    rows: list[ArmGain] = Field(default_factory=list)


class ABSummary(_Open):
    seeds: list[int] = Field(default_factory=list)
    arms: list[str] = Field(default_factory=list)
    summary: list[SeedGain] = Field(default_factory=list)
    b_vs_a: Optional[ArmVerdict] = None


class RunMeta(_Open):
    """run.json: spec, provenance, aggregates and timings of one evaluation."""

    schema_version: int = RUN_SCHEMA_VERSION
    created: str = ""
    command: list[str] = Field(default_factory=list)
    spec: RunSpec = Field(default_factory=RunSpec)
    models: list[str] = Field(default_factory=list)
    provenance: Provenance = Field(default_factory=Provenance)
    metrics: dict[str, MetricInfo] = Field(default_factory=dict)
    judges: dict[str, Any] = Field(default_factory=dict)
    aggregates: Aggregates = Field(default_factory=Aggregates)
    leaks: Optional[LeakSummary] = None
    training: Any = None  # training records of `harness ab`; the report reads them tolerantly
    ab: Optional[ABSummary] = None
    timing: Optional[Timing] = None

    def metric_info(self, metric: str) -> MetricInfo:
        """Direction and level of `metric`; unknown metrics (judges) are item-level, higher better."""
        return self.metrics.get(metric) or MetricInfo()

    def fingerprint(self, kind: str, task: str) -> dict[str, Any] | None:
        """The run's fingerprint of one suite or benchmark (provenance.suites / .benchmarks)."""
        section = self.provenance.suites if kind == "suite" else self.provenance.benchmarks
        fp = section.get(task)
        return fp if isinstance(fp, dict) else None

    def to_json(self) -> str:
        """run.json text: the keys that were set (a round trip adds no defaults), version first."""
        data = {"schema_version": self.schema_version, **self.model_dump(mode="json", exclude_unset=True)}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- items.jsonl


class ItemRecord(_Open):
    """One items.jsonl line: one item answered by one model.

    Suite lines carry the prompt hash, references and generation costs; benchmark lines
    carry the choice log-likelihoods, `target`, `correct` and `subject`. `compare --train`
    adds `leak` (with `contamination` on contaminated items, and `temporal` when the items
    have dates or a cutoff was given); judged suites add `judge` (per metric: level,
    rationale, raw reply).
    """

    model: str
    kind: Literal["suite", "bench"] = "suite"
    task: str
    item_id: ItemId
    prediction: str = ""
    scores: dict[str, Score] = Field(default_factory=dict)
    prompt_hash: Optional[str] = None
    references: Optional[list[str]] = None
    latency_s: Optional[float] = None
    prompt_tokens: Optional[int] = None
    truncated_tokens: Optional[int] = None  # prompt tokens cut on the left to fit the model's context
    details: Optional[dict[str, Any]] = None  # per metric, the evidence behind a score (a JSON Schema error path)
    perturbation: Optional[dict[str, Any]] = None  # `--perturb`: {variant, ops, of: the original item id}
    new_tokens: Optional[int] = None
    stopped_by: Optional[str] = None
    subject: Optional[str] = None
    cluster: Optional[str] = None  # the suite's `fields.meta.cluster`: items that share it are resampled together
    lm_eval_task: Optional[str] = None
    doc_id: Optional[int] = None
    target: Optional[Union[StrictStr, StrictInt]] = None
    correct: Optional[StrictBool] = None
    loglikelihoods: Optional[list[float]] = None
    doc_hash: Optional[str] = None
    leak: Optional[Literal["clean", "suspect", "contaminated"]] = None
    contamination: Optional[Literal["input_only", "input_answer"]] = None  # on contaminated items
    temporal: Optional[Literal["at_risk", "after_cutoff", "undated"]] = None  # against the training cutoff
    judge: Optional[dict[str, Any]] = None
    rationales: Optional[dict[str, Optional[str]]] = None

    @property
    def identity(self) -> Any:
        """What must agree between models for an item: the exact prompt (or the benchmark doc)."""
        return self.prompt_hash if self.prompt_hash is not None else self.doc_hash

    def gold(self) -> list[str]:
        """Gold answers; benchmark lines carry a `target` instead of references."""
        if not self.references and self.target is not None:
            return [str(self.target)]
        return [str(r) for r in self.references or []]

    def judge_rationales(self) -> dict[str, str]:
        """metric -> the judge's rationale: `rationales`, else each `judge` detail's `rationale`."""
        if self.rationales is not None:
            return {k: v for k, v in self.rationales.items() if v}
        details = self.judge or {}
        return {k: str(d["rationale"]) for k, d in details.items() if isinstance(d, dict) and d.get("rationale")}

    def to_line(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- leaks.jsonl


class LeakEvidence(_Open):
    """Where an item was found in the training data."""

    detector: str
    source: Optional[str] = None
    row: Optional[int] = None
    line: Optional[int] = None
    span: Optional[str] = None


class LeakRecord(_Open):
    """One leaks.jsonl line: an eval item's leak label, detector readings and evidence."""

    task: str
    item_id: ItemId
    kind: str = "suite"
    label: Literal["clean", "suspect", "contaminated"] = "clean"
    contamination: Optional[Literal["input_only", "input_answer"]] = None
    answer_row: Optional[dict[str, Any]] = None  # input_answer: {source, row, line} of the first such row
    date: Optional[str] = None
    temporal: Optional[Literal["at_risk", "after_cutoff", "undated"]] = None
    tokens: Optional[int] = None
    detectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    evidence: list[LeakEvidence] = Field(default_factory=list)
    meta: Optional[dict[str, Any]] = None


# --------------------------------------------------------------------------- verdict.json


class Bootstrap(_Open):
    resamples: Optional[int] = None
    permutations: Optional[int] = None
    seed: Optional[int] = None


class RuleDoc(_Open):
    """One rule result (the gate's `RuleResult`)."""

    name: str
    status: Literal["pass", "fail", "inconclusive", "skipped"]
    reason: str = ""
    blocking: bool = False
    rule: Optional[str] = None
    adapter: Optional[str] = None
    numbers: dict[str, Any] = Field(default_factory=dict)


class FlagDoc(_Open):
    code: str
    severity: str
    message: str
    adapter: Optional[str] = None


class VerdictDoc(_Open):
    """verdict.json: the gate's decision, its settings, rules, flags and task-level deltas."""

    schema_: str = Field(VERDICT_SCHEMA, alias="schema")
    schema_version: int = VERDICT_SCHEMA_VERSION
    verdict: Literal["pass", "fail", "inconclusive"]
    exit_code: int = 0
    created: Optional[str] = None
    harness_version: Optional[str] = None
    run_dir: Optional[str] = None
    policy: Optional[str] = None
    noise_floor: Optional[str] = None
    base: Optional[str] = None
    adapters: list[str] = Field(default_factory=list)
    confidence: Optional[float] = None
    bootstrap: Bootstrap = Field(default_factory=Bootstrap)
    rules: list[RuleDoc] = Field(default_factory=list)
    flags: list[FlagDoc] = Field(default_factory=list)
    deltas: list[dict[str, Any]] = Field(default_factory=list)
    b_vs_a: Optional[ArmVerdict] = None  # `harness ab --vs` runs: arm B against arm A

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def comparison_settings(self) -> dict[str, Any]:
        """Keyword arguments for `Comparison` that reproduce the gate's bounds."""
        out: dict[str, Any] = {} if self.confidence is None else {"confidence": self.confidence}
        out.update({k: v for k, v in self.bootstrap.model_dump(include={"resamples", "permutations", "seed"}).items()
                    if v is not None})
        return out

    def to_json(self) -> str:
        """verdict.json text, schema and version first."""
        data = {"schema": self.schema_, "schema_version": self.schema_version,
                **self.model_dump(mode="json", by_alias=True, exclude_unset=True)}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- sweep.json

SWEEP_SCHEMA_VERSION = 1


class SweepPoint(_Open):
    """`harness sweep`: one grid point, its status and its place on the gain/forgetting chart.

    Written as `points/NAME/point.json` whenever its status changes (a re-run reads it to skip a
    finished point and restart any other) and listed in sweep.json. Numbers are points; see
    `harness.analysis.tradeoff` for the signs.
    """

    name: str
    settings: dict[str, Any] = Field(default_factory=dict)  # the grid's training settings of this point
    status: Literal["pending", "running", "interrupted", "failed", "done"] = "pending"
    key: str = ""  # hash of what decides the result: training settings, data, base, evaluation options
    train_key: str = ""  # hash of the training part alone (a change retrains; other changes re-evaluate)
    run: str = ""  # the point's run folder, relative to the sweep folder
    started: Optional[str] = None
    finished: Optional[str] = None
    seconds: Optional[float] = None
    error: Optional[str] = None
    seeds: int = 0
    gain_points: Optional[float] = None
    gain_sd_points: Optional[float] = None
    forgetting_points: Optional[float] = None
    forgetting_per_task: dict[str, float] = Field(default_factory=dict)  # "task:metric" -> drop
    on_front: Optional[bool] = None


class SweepDoc(_Open):
    """sweep.json: what was swept, on what, and every point of the current grid."""

    schema_version: int = SWEEP_SCHEMA_VERSION
    created: str = ""
    command: list[str] = Field(default_factory=list)
    base: str = ""
    train: str = ""
    train_sha256: str = ""
    config: Optional[str] = None  # training settings every point starts from
    suites: list[str] = Field(default_factory=list)
    benches: list[str] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    limit: Optional[int] = None
    limit_per_subject: Optional[int] = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    gain_task: str = ""
    gain_metric: str = ""
    points: list[SweepPoint] = Field(default_factory=list)

    def to_json(self) -> str:
        """sweep.json text, version first."""
        data = {"schema_version": self.schema_version, **self.model_dump(mode="json")}
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- JSON Schema export

SCHEMAS = {"run.schema.json": RunMeta, "item.schema.json": ItemRecord, "leak.schema.json": LeakRecord,
           "verdict.schema.json": VerdictDoc, "sweep.schema.json": SweepDoc}


def json_schemas() -> dict[str, str]:
    """File name -> JSON Schema text of each run-folder document (what `--write` writes)."""
    out = {}
    for name, model in SCHEMAS.items():
        doc = model.model_json_schema(by_alias=True)
        doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"harness/{name}", **doc}
        out[name] = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m harness.log.schema --write DIR`: regenerate the JSON Schemas in DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, required=True, help="folder for the *.schema.json files")
    args = parser.parse_args(argv)
    args.write.mkdir(parents=True, exist_ok=True)
    for name, text in json_schemas().items():
        (args.write / name).write_text(text, encoding="utf-8")
        print(args.write / name)


if __name__ == "__main__":
    main()
