"""Judging one suite's predictions: build the calls, ask (cache first), parse, re-ask, score.

    from harness.evaluate.judges import judge_enabled, judge_suite, validate_judge

    validate_judge(suite)                       # before any model work: ConfigError one-liners
    result = judge_suite(suite, examples, {"base": [...], "lora": [...]}, log=print)
    result.scores["lora"]["judge:faithfulness"]  # [0..1 or None per item]

Every judge question is one *call*: its messages are hashed into a cache key, so identical
questions (two models giving the same answer, a resumed run) are asked once. A call whose
reply does not parse is re-asked once, with the reason; still unusable, it is unscored
(None) with the raw reply kept in `details` — never a silent 0.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import ConfigError, HarnessError
from harness.hashing import sha256_json
from harness.evaluate.judges.agreement import agreement
from harness.evaluate.judges.base import (
    Budget,
    CallStats,
    ChatRequest,
    Completion,
    PingResult,
    one_line,
    read_api_key,
    redact,
)
from harness.evaluate.judges.cache import CACHE_VERSION, JudgeCache, call_key, default_path
from harness.evaluate.judges.parse import PairwiseParse, PointwiseParse, parse_pairwise, parse_pointwise
from harness.evaluate.judges.spec import CriterionSpec, JudgeSpec, parse_judge_spec
from harness.evaluate.judges.templates import PAIRWISE_FORMAT, compile_templates, criterion_vars, pointwise_format

ENV_SWITCH = "HARNESS_JUDGE"  # "0"/"off"/"false"/"no" turns judging off for every suite
PAIRWISE_METRIC = "judge:pairwise"
LABELS_MODEL = "__human_labels__"


# --------------------------------------------------------------------------- results


@dataclass
class JudgeResult:
    """Judge scores for one suite, shaped like the run log's per-item metrics.

    Attributes:
        scores: model -> metric -> per-item value on 0..1 (None = unscored).
        rationales: model -> metric -> per-item rationale (None = unscored or none given).
        details: model -> per-item {metric: {...}} with raw levels, verdicts, errors and the raw
            reply of unscored items; meant for the item's record in items.jsonl.
        stats: requests, retries, failures, reasks, cached, scored, unscored, swap_consistency,
            pairwise counts, agreement per criterion, tokens, wall_s (see `judge_suite`).
        metrics: metric name -> {"higher_is_better": True, "corpus_level": False, "judge": True}.
        provenance: the judge's identity and settings for run.json (never the API key).
    """

    scores: dict[str, dict[str, list[float | None]]] = field(default_factory=dict)
    rationales: dict[str, dict[str, list[str | None]]] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def aggregates(self, model: str) -> dict[str, float | None]:
        """Per metric: the mean over scored items (None when no item was scored)."""
        out: dict[str, float | None] = {}
        for metric, values in self.scores.get(model, {}).items():
            scored = [v for v in values if v is not None]
            out[metric] = sum(scored) / len(scored) if scored else None
        return out

    def unscored(self, model: str) -> dict[str, int]:
        """Per metric: how many items the judge left unscored."""
        return {metric: sum(v is None for v in values) for metric, values in self.scores.get(model, {}).items()}


@dataclass
class JudgeCheck:
    """What `validate_judge` found: the resolved spec and the endpoint's answer to a ping."""

    spec: JudgeSpec
    backend: str
    ping: PingResult | None
    metrics: list[str]


# --------------------------------------------------------------------------- config


def judge_enabled(suite: Any) -> bool:
    """True when the suite has a `judge:` block and HARNESS_JUDGE does not switch judging off."""
    if getattr(suite.spec, "judge", None) is None:
        return False
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in ("0", "off", "false", "no")


def _where(suite: Any) -> str:
    from harness.evaluate.suite_config import display_path

    return display_path(Path(suite.yaml_path))


def resolve_spec(suite: Any) -> JudgeSpec | None:
    """The suite's judge spec with env overrides applied, or None when it has no judge block."""
    raw = getattr(suite.spec, "judge", None)
    if raw is None:
        return None
    return parse_judge_spec(raw, _where(suite))


def _backend_class(spec: JudgeSpec, where: str) -> Any:
    from harness.registry import judges, unknown_name_message

    import harness.evaluate.judges.local  # noqa: F401  registers "local"
    import harness.evaluate.judges.openai_client  # noqa: F401  registers "openai"

    if spec.backend not in judges:
        raise ConfigError(f"{where}: judge.backend: {unknown_name_message('judge backend', spec.backend, judges.names())}",
                          "use openai (any OpenAI-compatible server) or local (a model folder or asset)")
    return judges.get(spec.backend)


def validate_judge(suite: Any, ping: bool = True, ping_timeout: float = 3.0) -> JudgeCheck | None:
    """Check a suite's judge before any model work; None when it has no judge block.

    Checks the schema (scales, modes, criteria), the templates (syntax, variables, criteria
    they name), the human-labels file, that the API key's env var is set, and (with `ping`)
    that the endpoint answers within `ping_timeout` seconds and accepts the key.

    Raises:
        ConfigError: one line naming the suite file and what to fix.
    """
    spec = resolve_spec(suite)
    if spec is None:
        return None
    where = _where(suite)
    cls = _backend_class(spec, where)
    compile_templates(spec, where)
    if spec.human_labels is not None:
        _read_labels(suite, spec, where)
    read_api_key(spec.api_key_env, where)  # named in the message with the suite file
    backend = cls(spec)
    try:
        result = backend.ping(ping_timeout) if ping else None
    finally:
        backend.close()
    return JudgeCheck(spec=spec, backend=spec.backend, ping=result, metrics=spec.metric_names())


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


# --------------------------------------------------------------------------- human labels


def _get(record: Any, dotted: str) -> Any:
    current = record
    for part in dotted.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _label_value(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _read_labels(suite: Any, spec: JudgeSpec, where: str) -> list[dict[str, Any]]:
    """Rows of {id, response, labels: {criterion: level|None}} from the human-labels file."""
    hl = spec.human_labels
    assert hl is not None
    path = Path(hl.file)
    path = path if path.is_absolute() else Path(suite.path) / path
    if not path.is_file():
        raise ConfigError(f"{where}: judge.human_labels.file: {path} does not exist",
                          "fix the path (relative to the suite folder) or remove human_labels")
    try:
        text = path.read_text(encoding="utf-8-sig")
        if path.name.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(text, newline="")))
        elif path.name.endswith(".json"):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, csv.Error) as exc:
        raise ConfigError(f"{where}: judge.human_labels.file: cannot read {path}: {one_line(str(exc), 120)}",
                          "use .jsonl (one object per line), .json (a list) or .csv") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ConfigError(f"{where}: judge.human_labels.file: {path} must hold a list of objects",
                          "one object per labelled response")
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        item_id, response = _get(row, hl.id), _get(row, hl.response)
        if item_id is None or not isinstance(response, str):
            missing = hl.id if item_id is None else hl.response
            raise ConfigError(f"{where}: judge.human_labels: row {i + 1} of {path.name} has no '{missing}'",
                              "fix human_labels.id / human_labels.response or the file")
        labels = {crit: _label_value(_get(row, dotted)) for crit, dotted in hl.scores.items()}
        out.append({"id": str(item_id), "response": response, "labels": labels})
    for crit, dotted in hl.scores.items():
        if all(r["labels"][crit] is None for r in out):
            raise ConfigError(f"{where}: judge.human_labels.scores.{crit}: no row of {path.name} has a number at '{dotted}'",
                              "point it at the field holding the human score")
    return out


# --------------------------------------------------------------------------- calls


@dataclass
class _Call:
    """One judge question (deduplicated by cache key) and what became of it."""

    kind: str  # pointwise | pairwise
    criteria: list[CriterionSpec]
    request: ChatRequest
    reply: Completion | None = None
    parsed: PointwiseParse | PairwiseParse | None = None
    reask: ChatRequest | None = None
    reask_reply: Completion | None = None
    raw: list[str] = field(default_factory=list)
    error: str | None = None


class _Judge:
    def __init__(self, suite: Any, spec: JudgeSpec, log: Callable[[str], None], use_cache: bool):
        self.suite = suite
        self.spec = spec
        self.where = _where(suite)
        self.log = lambda msg: log(redact(msg))
        self.templates = compile_templates(spec, self.where)
        read_api_key(spec.api_key_env, self.where)
        self.stats = CallStats()
        b = spec.budget
        self.budget = Budget(b.max_requests, b.max_tokens, b.max_seconds, stats=self.stats)
        self.backend = _backend_class(spec, self.where)(spec, self.stats, self.budget, self.log)
        self.cache = JudgeCache(default_path() if use_cache else None)
        self.identity = self.backend.identity()
        self.params = self.backend.params()
        self.calls: dict[str, _Call] = {}
        self.rubric = {c.name: criterion_vars(c) for c in spec.criteria}
        self.cached = 0
        self.reasks = 0

    def close(self) -> None:
        self.cache.close()
        self.backend.close()

    # ----------------------------------------------------------------- building

    def _render(self, name: str, ctx: dict[str, Any]) -> str:
        try:
            return self.templates[name].render(ctx)
        except Exception as exc:  # a template bug must name the template, not crash deep inside
            raise ConfigError(f"{self.where}: judge.prompt.{name}: rendering failed: "
                              f"{type(exc).__name__}: {one_line(str(exc), 160)}", "fix the template") from None

    def _system(self, criteria: list[CriterionSpec]) -> str:
        return self._render("system", {"criteria": [criterion_vars(c) for c in criteria], "rubric": self.rubric})

    def _base_context(self, example: Any, criteria: list[CriterionSpec]) -> dict[str, Any]:
        prompt = self.suite.render(example)
        if prompt.text is not None:
            task = prompt.text
        else:
            task = "\n\n".join(content for role, content in prompt.messages or () if role == "user")
        refs = list(example.references) if self.spec.reference else []
        return {"criteria": [criterion_vars(c) for c in criteria], "rubric": self.rubric, "prompt": task,
                "reference": refs[0] if refs else None, "references": refs, "vars": dict(example.vars),
                "item_id": example.id}

    def _add(self, kind: str, criteria: list[CriterionSpec], user: str) -> str:
        messages = (("system", self._system(criteria)), ("user", user))
        key = call_key(self.identity, [{"role": r, "content": c} for r, c in messages], self.params)
        if key not in self.calls:
            self.calls[key] = _Call(kind, criteria, ChatRequest(key, messages))
        return key

    def pointwise_call(self, example: Any, criteria: list[CriterionSpec], response: str) -> str:
        ctx = self._base_context(example, criteria)
        ctx.update(response=response, format=pointwise_format(criteria))
        return self._add("pointwise", criteria, self._render("pointwise", ctx))

    def pairwise_call(self, example: Any, first: str, second: str) -> str:
        criteria = list(self.spec.criteria)
        ctx = self._base_context(example, criteria)
        ctx.update(response_a=first, response_b=second, format=PAIRWISE_FORMAT)
        return self._add("pairwise", criteria, self._render("pairwise", ctx))

    # ----------------------------------------------------------------- asking

    def _ask(self, pending: list[tuple[_Call, ChatRequest]], round_name: str) -> None:
        """Answer each (call, request) from the cache or the backend; replies land on the call."""
        if not pending:
            return
        by_key: dict[str, list[_Call]] = {}
        for call, request in pending:
            by_key.setdefault(request.key, []).append(call)
        requests = {request.key: request for _, request in pending}
        hits = self.cache.get_many(requests)
        for key, value in hits.items():
            reply = Completion(redact(value["text"]), value.get("prompt_tokens", 0),
                               value.get("completion_tokens", 0), cached=True)
            for call in by_key[key]:
                self._deliver(call, reply, round_name)
        self.cached += len(hits)
        missing = [r for k, r in requests.items() if k not in hits]
        if not missing:
            return
        total, done = len(missing), 0
        last_report = time.monotonic()
        self.log(f"judge · {self.suite.name}: {round_name}: {total} call(s) to send, {len(hits)} from cache")

        def on_done(request: ChatRequest, reply: Completion) -> None:
            nonlocal done, last_report
            done += 1
            if reply.ok:
                self.cache.put(request.key, {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                                             "completion_tokens": reply.completion_tokens})
            for call in by_key[request.key]:
                self._deliver(call, reply, round_name)
            now = time.monotonic()
            if done == total or now - last_report >= 10:
                last_report = now
                self.log(f"judge · {self.suite.name}: {round_name}: {done}/{total} answered "
                         f"({self.stats.retries} retries, {self.stats.failures} failed so far)")

        self.backend.complete_many(missing, on_done)

    def _deliver(self, call: _Call, reply: Completion, round_name: str) -> None:
        if round_name == "ask":
            call.reply = reply
        else:
            call.reask_reply = reply

    def run_calls(self) -> None:
        calls = list(self.calls.values())
        self._ask([(c, c.request) for c in calls], "ask")
        reasks: list[tuple[_Call, ChatRequest]] = []
        for call in calls:
            reply = call.reply
            if reply is None or not reply.ok:
                call.error = (reply.error if reply else None) or "no reply"
                continue
            call.raw.append(reply.text or "")
            call.parsed = self._parse(call, reply.text)
            if call.parsed.error is None:
                continue
            ctx = {"error": call.parsed.error, "raw": reply.text, "criteria": [criterion_vars(c) for c in call.criteria],
                   "rubric": self.rubric,
                   "format": pointwise_format(call.criteria) if call.kind == "pointwise" else PAIRWISE_FORMAT}
            messages = (*call.request.messages, ("assistant", reply.text or ""), ("user", self._render("reask", ctx)))
            key = call_key(self.identity, [{"role": r, "content": c} for r, c in messages], self.params)
            call.reask = ChatRequest(key, messages)
            reasks.append((call, call.reask))
        self.reasks = len(reasks)
        self._ask(reasks, "re-ask")
        for call, _ in reasks:
            reply = call.reask_reply
            first = call.parsed
            assert first is not None
            if reply is None or not reply.ok:
                call.error = f"{first.error}; re-ask failed: {(reply.error if reply else None) or 'no reply'}"
                continue
            call.raw.append(reply.text or "")
            second = self._parse(call, reply.text)
            if isinstance(first, PointwiseParse) and isinstance(second, PointwiseParse):
                merged = dict(first.scores)
                merged.update(second.scores)  # the answer to the re-ask wins where both scored
                missing = [c.name for c in call.criteria if c.name not in merged]
                call.parsed = PointwiseParse(merged, None if not missing else second.error)
            else:
                call.parsed = second
            if call.parsed.error is not None:
                call.error = f"unusable reply after one re-ask: {call.parsed.error}"

    def _parse(self, call: _Call, text: str | None) -> PointwiseParse | PairwiseParse:
        if call.kind == "pointwise":
            return parse_pointwise(text, call.criteria)
        return parse_pairwise(text)


# --------------------------------------------------------------------------- entry point


def judge_suite(suite: Any, examples: Sequence[Any], predictions: dict[str, Sequence[str]],
                log: Callable[[str], None] | None = None, *, use_cache: bool = True) -> JudgeResult:
    """Judge every model's predictions on a suite with the suite's rubric.

    Pointwise: every criterion for every model and item, as `judge:<criterion>` on 0..1.
    Pairwise: base against each adapter, asked in both orders; a preference held in both
    orders scores 1.0 (adapter better) or 0.0 (base better), a tie or a flip 0.5; the metric
    `judge:pairwise` is attached to the adapter's items only. Identical responses score 0.5
    without asking. With human labels, the judge also scores the labelled responses and
    `stats["agreement"]` holds the agreement per criterion.

    Args:
        suite: A loaded `harness.evaluate.suites.Suite` with a `judge:` block.
        examples: The suite's examples that were evaluated, in order.
        predictions: Model name -> predictions aligned with `examples`; "base" is the
            reference model of pairwise comparisons.
        log: One-line progress messages (already redacted).
        use_cache: Read and write `$HARNESS_HOME/cache/judge.sqlite`.

    Returns:
        A JudgeResult; `stats` has requests, retries, failures, errors (by kind), reasks,
        calls, cached, scored, unscored, pairwise, swap_consistency, agreement, tokens,
        budget_exhausted and wall_s.

    Raises:
        ConfigError: the suite has no judge, or its judge config is invalid.
        JudgeError: the endpoint refuses the key or does not know the model.
    """
    started = time.monotonic()
    spec = resolve_spec(suite)
    if spec is None:
        raise ConfigError(f"{_where(suite)}: suite '{suite.name}' has no judge: block", "add one, or do not judge it")
    log = log or (lambda msg: None)
    examples = list(examples)
    for model, preds in predictions.items():
        if len(preds) != len(examples):
            raise HarnessError(f"judge: model '{model}' has {len(preds)} predictions for {len(examples)} examples",
                               "pass predictions aligned with the examples")
    judge = _Judge(suite, spec, log, use_cache)
    try:
        return _judge(judge, spec, examples, predictions, started)
    finally:
        judge.close()


def _judge(judge: _Judge, spec: JudgeSpec, examples: list[Any], predictions: dict[str, Sequence[str]],
           started: float) -> JudgeResult:
    groups = [[c] for c in spec.criteria] if spec.split_criteria else [list(spec.criteria)]
    models = list(predictions)

    # Pointwise calls: (model, item, group) -> key.
    point_keys: dict[tuple[str, int, int], str] = {}
    if "pointwise" in spec.mode:
        for model in models:
            for i, ex in enumerate(examples):
                for g, group in enumerate(groups):
                    point_keys[model, i, g] = judge.pointwise_call(ex, group, predictions[model][i])

    # Pairwise calls: (adapter, item) -> (base-first key, adapter-first key), or None if identical.
    pair_keys: dict[tuple[str, int], tuple[str, str] | None] = {}
    reference_model = "base" if "base" in predictions else None
    if "pairwise" in spec.mode:
        if reference_model is None:
            judge.log(f"judge · {judge.suite.name}: no 'base' predictions, pairwise comparison skipped")
        else:
            for model in models:
                if model == reference_model:
                    continue
                for i, ex in enumerate(examples):
                    base_text, other = predictions[reference_model][i], predictions[model][i]
                    if base_text.strip() == other.strip():
                        pair_keys[model, i] = None
                    else:
                        pair_keys[model, i] = (judge.pairwise_call(ex, base_text, other),
                                               judge.pairwise_call(ex, other, base_text))

    # Human-labelled responses, scored like any model's for the agreement statistics.
    label_rows: list[tuple[dict[str, Any], int]] = []
    label_keys: dict[tuple[int, int], str] = {}
    if spec.human_labels is not None:
        index = {ex.id: i for i, ex in enumerate(examples)}
        for row in _read_labels(judge.suite, spec, judge.where):
            if row["id"] in index:
                label_rows.append((row, index[row["id"]]))
        for r, (row, i) in enumerate(label_rows):
            for g, group in enumerate(groups):
                label_keys[r, g] = judge.pointwise_call(examples[i], group, row["response"])

    judge.run_calls()
    calls = judge.calls

    result = JudgeResult()
    n = len(examples)
    for model in models:
        result.scores[model] = {}
        result.rationales[model] = {}
        result.details[model] = [{} for _ in range(n)]

    scored = unscored = 0
    if "pointwise" in spec.mode:
        for c in spec.criteria:
            metric = f"judge:{c.name}"
            result.metrics[metric] = {"higher_is_better": True, "corpus_level": False, "judge": True,
                                      "scale": [c.scale.min, c.scale.max]}
        for model in models:
            for c in spec.criteria:
                result.scores[model][f"judge:{c.name}"] = [None] * n
                result.rationales[model][f"judge:{c.name}"] = [None] * n
            for i in range(n):
                for g, group in enumerate(groups):
                    call = calls[point_keys[model, i, g]]
                    got = call.parsed.scores if isinstance(call.parsed, PointwiseParse) else {}
                    for c in group:
                        metric = f"judge:{c.name}"
                        entry = got.get(c.name)
                        if entry is not None:
                            value = c.scale.normalise(entry.score)
                            result.scores[model][metric][i] = value
                            result.rationales[model][metric][i] = entry.rationale
                            result.details[model][i][metric] = {"score": entry.score, "value": value,
                                                                "rationale": entry.rationale,
                                                                "cached": _was_cached(call)}
                            scored += 1
                        else:
                            result.details[model][i][metric] = {"score": None, "value": None,
                                                                "error": call.error or "not scored",
                                                                "raw": _raw(call)}
                            unscored += 1

    pair_stats = {"pairs": 0, "consistent": 0, "inconsistent": 0, "ties": 0, "identical": 0, "unscored": 0,
                  "adapter_preferred": 0, "base_preferred": 0}
    if pair_keys:
        # The base has no item values of its own here; 0.5 (no preference) is what it scores
        # against itself, and the level an adapter's pairwise mean is compared with.
        result.metrics[PAIRWISE_METRIC] = {"higher_is_better": True, "corpus_level": False, "judge": True,
                                           "reference_model": reference_model, "reference_value": 0.5}
        for model in models:
            if model == reference_model:
                continue
            result.scores[model][PAIRWISE_METRIC] = [None] * n
            result.rationales[model][PAIRWISE_METRIC] = [None] * n
            for i in range(n):
                keys = pair_keys[model, i]
                pair_stats["pairs"] += 1
                if keys is None:
                    pair_stats["identical"] += 1
                    pair_stats["ties"] += 1
                    result.scores[model][PAIRWISE_METRIC][i] = 0.5
                    result.rationales[model][PAIRWISE_METRIC][i] = "identical responses (not asked)"
                    result.details[model][i][PAIRWISE_METRIC] = {"value": 0.5, "identical": True}
                    scored += 1
                    continue
                detail = _pair_outcome(calls[keys[0]], calls[keys[1]], pair_stats)
                result.details[model][i][PAIRWISE_METRIC] = detail
                result.scores[model][PAIRWISE_METRIC][i] = detail["value"]
                result.rationales[model][PAIRWISE_METRIC][i] = detail.get("rationale")
                if detail["value"] is None:
                    unscored += 1
                else:
                    scored += 1

    agreement_stats: dict[str, Any] = {}
    if spec.human_labels is not None:
        for c in spec.criteria:
            if c.name not in spec.human_labels.scores:
                continue
            judged: list[float | None] = []
            human: list[float | None] = []
            for r, (row, _) in enumerate(label_rows):
                g = next(g for g, group in enumerate(groups) if c in group)
                call = calls[label_keys[r, g]]
                entry = call.parsed.scores.get(c.name) if isinstance(call.parsed, PointwiseParse) else None
                judged.append(entry.score if entry else None)
                human.append(row["labels"][c.name])
            agreement_stats[c.name] = agreement(judged, human, spec.human_labels.method)
        if not label_rows:
            judge.log(f"judge · {judge.suite.name}: no labelled item is among the evaluated examples")

    consistent, inconsistent = pair_stats["consistent"], pair_stats["inconsistent"]
    s = judge.stats
    result.stats = {
        "judge": f"{spec.backend}:{spec.model}",
        "calls": len(calls),
        "requests": s.requests,
        "retries": s.retries,
        "failures": s.failures,
        "errors": dict(sorted(s.errors.items())),
        "reasks": judge.reasks,
        "cached": judge.cached,
        "scored": scored,
        "unscored": unscored,
        "pairwise": pair_stats if pair_keys else None,
        "swap_consistency": round(consistent / (consistent + inconsistent), 4) if consistent + inconsistent else None,
        "agreement": agreement_stats or None,
        "tokens": {"prompt": s.prompt_tokens, "completion": s.completion_tokens},
        "budget_exhausted": judge.budget.exhausted,
        "wall_s": round(time.monotonic() - started, 3),
    }
    result.provenance = judge_fingerprint(judge.suite) or {}
    judge.log(_summary(judge.suite.name, result.stats))
    return result


def _was_cached(call: _Call) -> bool:
    last = call.reask_reply or call.reply
    return bool(last and last.cached)


RAW_LIMIT = 4000  # characters kept per unusable reply; enough to see what went wrong


def _raw(call: _Call) -> str | None:
    if not call.raw:
        return None
    kept = [r if len(r) <= RAW_LIMIT else f"{r[:RAW_LIMIT]}... [{len(r) - RAW_LIMIT} more characters]"
            for r in call.raw]
    return redact("\n----- re-ask -----\n".join(kept))


def _pair_outcome(base_first: _Call, adapter_first: _Call, counts: dict[str, int]) -> dict[str, Any]:
    """Combine the two orders into one score; positions are mapped back to models first."""
    pb, pa = base_first.parsed, adapter_first.parsed
    if not (isinstance(pb, PairwiseParse) and pb.winner and isinstance(pa, PairwiseParse) and pa.winner):
        counts["unscored"] += 1
        failed = [c for c in (base_first, adapter_first) if not (isinstance(c.parsed, PairwiseParse) and c.parsed.winner)]
        return {"value": None, "error": "; ".join(c.error or "not scored" for c in failed),
                "raw": "\n===== other order =====\n".join(r for r in (_raw(c) for c in failed) if r)}
    # base-first: A is base, B is the adapter; adapter-first: the other way round.
    pref_1 = {"A": "base", "B": "adapter", "tie": "tie"}[pb.winner]
    pref_2 = {"A": "adapter", "B": "base", "tie": "tie"}[pa.winner]
    detail: dict[str, Any] = {"verdicts": {"base_first": pb.winner, "adapter_first": pa.winner},
                              "rationale": f"base shown first: {pb.rationale or '-'} | adapter shown first: "
                                           f"{pa.rationale or '-'}",
                              "cached": _was_cached(base_first) and _was_cached(adapter_first)}
    if pref_1 == pref_2:
        counts["consistent"] += 1
        detail["consistent"] = True
        if pref_1 == "adapter":
            counts["adapter_preferred"] += 1
            detail["value"] = 1.0
        elif pref_1 == "base":
            counts["base_preferred"] += 1
            detail["value"] = 0.0
        else:
            counts["ties"] += 1
            detail["value"] = 0.5
    else:
        counts["inconsistent"] += 1
        counts["ties"] += 1  # a preference that flips with position is no preference
        detail["consistent"] = False
        detail["value"] = 0.5
    return detail


def _summary(name: str, st: dict[str, Any]) -> str:
    parts = [f"judge · {name}: {st['scored']} scored, {st['unscored']} unscored",
             f"{st['requests']} requests ({st['retries']} retries, {st['failures']} failed, {st['reasks']} re-asks)",
             f"{st['cached']} from cache"]
    if st.get("swap_consistency") is not None:
        parts.append(f"swap consistency {100 * st['swap_consistency']:.0f}%")
    if st.get("budget_exhausted"):
        parts.append(f"budget: {st['budget_exhausted']}")
    parts.append(f"{st['wall_s']:.1f}s")
    return ", ".join(parts)


# --------------------------------------------------------------------------- run-log glue


def judge_records(suite: Any, examples: Sequence[Any], records: list[dict[str, Any]],
                  aggregates: dict[str, dict[str, Any]], log: Callable[[str], None] | None = None, *,
                  use_cache: bool = True, base_reference: bool = True) -> JudgeResult:
    """Judge one suite's run-log records and write the results into them, in place.

    Each record of the suite gets its judge metrics in `scores` and the per-metric details
    (raw level, rationale, verdicts; error and raw reply when unscored) under `judge`; each
    model's aggregates get the means over scored items (None when nothing was scored).

    With `base_reference`, the base's records and aggregates carry `judge:pairwise` = 0.5,
    the score of the base against itself, so paired base-vs-adapter statistics test the
    adapter's preference rate against "no preference" like any other metric.

    Args:
        suite: The loaded suite (with a `judge:` block).
        examples: The examples that were evaluated, in order.
        records: items.jsonl records; those with this suite's `task` are judged.
        aggregates: model -> aggregate dict of this suite (updated in place).
        log: One-line progress messages.
        use_cache: As in `judge_suite`.
        base_reference: Give the base the pairwise reference value (see above).

    Returns:
        The JudgeResult (for run.json: `.stats`, `.metrics`, `.provenance`).
    """
    index = {ex.id: i for i, ex in enumerate(examples)}
    mine = [r for r in records if r.get("task") == suite.name and r.get("kind", "suite") == "suite"]
    models = sorted({r["model"] for r in mine}, key=lambda m: (m != "base", m))
    preds: dict[str, list[str | None]] = {m: [None] * len(examples) for m in models}
    for r in mine:
        if r["item_id"] not in index:
            raise HarnessError(f"judge: record '{r['item_id']}' of {suite.name} is not among the evaluated examples")
        preds[r["model"]][index[r["item_id"]]] = str(r.get("prediction") or "")
    for model, values in preds.items():
        if any(v is None for v in values):
            raise HarnessError(f"judge: model '{model}' has no prediction for some items of {suite.name}")
    result = judge_suite(suite, examples, {m: [str(v) for v in vs] for m, vs in preds.items()}, log,
                         use_cache=use_cache)
    reference = base_reference and PAIRWISE_METRIC in result.metrics
    for r in mine:
        i, model = index[r["item_id"]], r["model"]
        scores = r.setdefault("scores", {})
        for metric, values in result.scores.get(model, {}).items():
            scores[metric] = values[i]
        r["judge"] = result.details[model][i]
        if reference and model == "base":
            scores[PAIRWISE_METRIC] = 0.5
            r["judge"][PAIRWISE_METRIC] = {"value": 0.5, "reference": True}
    for model, agg in aggregates.items():
        agg.update(result.aggregates(model))
        if reference and model == "base":
            agg[PAIRWISE_METRIC] = 0.5
    return result
