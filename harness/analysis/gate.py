"""The gate: apply a policy's rules to a run's comparison and decide pass / fail / inconclusive.

Decisions use one-sided bounds of the gain (adapter - base, turned so that positive is an
improvement) at the rule's confidence c, in points:

- `max_drop: m` (non-inferiority): pass when the lower bound >= -m; fail when even the
  upper bound < -m; otherwise inconclusive (the run cannot tell).
- `min_gain: g`: pass when the lower bound >= g; fail when the upper bound < g; otherwise
  inconclusive.
- `per_subject_max_drop: m`: a subject fails when it dropped by more than m points and its
  one-sided test (McNemar, or sign-flip for continuous metrics) of "the adapter is worse"
  is significant at alpha = 1 - c after Holm correction across the task's subjects. The
  rule fails when any subject fails; it is inconclusive when no subject is large enough to
  detect an m-point drop even at the first Holm step (alpha / subjects).

Verdict: fail if any rule fails, else inconclusive if any is, else pass. Exit code 1 when
a rule fails or is inconclusive with `on_inconclusive: fail` (the default); 0 otherwise;
errors (bad policy, incomparable runs) exit 2 through HarnessError.

Runs of `harness ab --vs` also get a B-vs-A section (harness.analysis.arm_gate): per task
and metric, win / no-win / loss of arm B over arm A, where a difference within k seed
standard deviations is never a win; the policy's `b_vs_a.rules` make chosen metrics block.

A rule with `severity: warn` is decided the same way but only warns: it never blocks and
never enters the verdict. When it fails, its reason starts with "warning (severity: warn,
does not block)" and a `rule_warning` flag (severity "warning") names it.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Any, Iterable

from harness.analysis.comparison import Comparison
from harness.analysis.deltas import DeltaRow, Flag
from harness.analysis.noise import NoiseFloor, load_noise
from harness.analysis.pairing import LEAK_CLEAN, TaskData
from harness.analysis.policy import Policy, Rule, load_policy
from harness.analysis.stats import holm
from harness.analysis.verdict import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    SKIPPED,
    RuleResult,
    Verdict,
)
from harness.errors import ConfigError
from harness.fmt import mde as _mde
from harness.fmt import pts, pval

NO_EFFECT_RULE = "adapter-has-effect"
WARN_PREFIX = "warning (severity: warn, does not block)"


def _numbers(row: DeltaRow, lo: float, hi: float, mde: float) -> dict[str, Any]:
    return {"n": row.n, "base": row.base, "score": row.score, "delta": row.delta, "gain": row.gain,
            "gain_low": lo, "gain_high": hi, "p_value": row.p_value, "p_worse": row.p_worse, "test": row.test,
            "mde": mde, "worse": row.worse, "better": row.better,
            **({"against": row.against} if row.against != "base" else {})}  # `base` is then the arm's score


def _resolve(rule: Rule, comparison: Comparison, policy: Policy) -> TaskData | None:
    """The task a rule selects; raises ConfigError for selections the run cannot satisfy."""
    src = policy.source or "policy"
    where = f"{src}: rule '{rule.name}'"
    matches = [t for t in comparison.tasks() if t.task == rule.task and (rule.kind is None or t.kind == rule.kind)]
    if len(matches) > 1:
        raise ConfigError(f"{where}: '{rule.task}' is both a suite and a benchmark in this run",
                          "add `kind: suite` or `kind: bench` to the rule")
    if not matches:
        if rule.optional:
            return None
        have = ", ".join(f"{t.kind} {t.task}" for t in comparison.tasks()) or "nothing"
        flag = "--bench" if rule.kind == "bench" else "--suite/--bench"
        raise ConfigError(f"{where} selects {rule.kind or 'task'} '{rule.task}', which {comparison.run_dir} "
                          f"did not evaluate (it has: {have})",
                          f"evaluate it ({flag} {rule.task}), fix the name, or mark the rule `optional: true`")
    data = matches[0]
    if rule.metric not in data.metrics:
        close = difflib.get_close_matches(rule.metric, data.metrics, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"{where}: {data.kind} '{data.task}' has no metric '{rule.metric}' "
                          f"(it has: {', '.join(data.metrics)})", f"{guess}set `metric:` to one of those")
    if rule.check == "per_subject_max_drop" and not data.has_subjects:
        raise ConfigError(f"{where}: {data.kind} '{data.task}' has no subjects, so per_subject_max_drop cannot apply",
                          "use max_drop for tasks without subjects")
    unknown = [a for a in rule.adapters or [] if a not in comparison.adapters]
    if unknown:
        raise ConfigError(f"{where} names adapter '{unknown[0]}', which the run does not have "
                          f"(it has: {', '.join(comparison.adapters)})", "fix `adapters:` or drop it")
    if rule.against and (rule.against not in comparison.baselines or rule.against not in data.lines):
        if rule.optional:
            return None
        have = ", ".join(b for b in comparison.baselines if b in data.lines) or "none"
        raise ConfigError(f"{where} compares against '{rule.against}', which {comparison.run_dir} did not evaluate "
                          f"on {data.kind} '{data.task}' (its baselines there: {have})",
                          f"add {_baseline_flag(rule.against)} to the compare command, fix `against:`, "
                          "or mark the rule `optional: true`")
    return data


def _baseline_flag(name: str) -> str:
    """The compare option that adds the baseline arm `name`."""
    if name.startswith("base+system:"):
        return "--baseline system:FILE"
    if name.startswith("base+"):
        return f"--baseline {name[len('base+'):]}"
    return f"--baseline-model {name}=MODEL"


def _subset(rule: Rule, policy: Policy, data: TaskData, adapter: str, flags: list[Flag]) -> str:
    if policy.decide_on_of(rule) != LEAK_CLEAN:
        return "all"
    if data.clean is None:
        flags.append(Flag("no_leak_labels", "warning",
                          f"rule '{rule.name}' decides on clean items, but {data.kind} '{data.task}' has no leak "
                          "labels; it was decided on all items (run the leak check to label items)",
                          adapter=adapter, task=data.task))
        return "all"
    return LEAK_CLEAN


def _interval_rule(rule: Rule, row: DeltaRow, c: float) -> tuple[str, str, dict[str, Any]]:
    lo, hi = row.gain_bounds(c)
    t = rule.threshold
    mde = row.mde_at(1.0 - c)
    nums = _numbers(row, lo, hi, mde)
    vs = f" against {row.against}" if row.against != "base" else ""
    head = (f"{row.metric} on {row.label}{vs}: {pts(row.delta, True)} points ({pts(row.base)} -> "
            f"{pts(row.score)}), one-sided {c:.0%} bounds of the gain {pts(lo, True)}..{pts(hi, True)}, "
            f"n={row.n}, p={pval(row.p_value)} ({row.test})")
    if rule.check == "max_drop":
        if lo >= -t:
            return PASS, f"{head}; lower bound {pts(lo, True)} >= -{t:.2f} (max_drop)", nums
        if hi < -t:
            return FAIL, f"{head}; even the upper bound {pts(hi, True)} is below -{t:.2f}: dropped more than max_drop", nums
        small = f"; with n={row.n} only drops of {_mde(mde)} points are detectable (power 0.8)" if mde > t else ""
        return INCONCLUSIVE, f"{head}; the bounds straddle -{t:.2f} (max_drop){small}", nums
    if lo >= t:
        return PASS, f"{head}; lower bound {pts(lo, True)} >= {pts(t, True)} (min_gain)", nums
    if hi < t:
        return FAIL, f"{head}; even the upper bound {pts(hi, True)} is below the required gain {pts(t, True)}", nums
    return INCONCLUSIVE, f"{head}; the bounds straddle the required gain {pts(t, True)} (min_gain)", nums


def _subject_rule(rule: Rule, rows: list[DeltaRow], c: float) -> tuple[str, str, dict[str, Any], list[dict]]:
    m = rule.threshold
    alpha = 1.0 - c
    adjusted = holm([r.p_worse for r in rows])
    first_step = alpha / max(len(rows), 1)  # the bar the most significant subject must clear
    failing, small = [], []
    for r, p in zip(rows, adjusted):
        mde = r.mde_at(first_step)
        entry = {"subject": r.subject, "n": r.n, "base": r.base, "score": r.score, "delta": r.delta,
                 "gain": r.gain, "p_worse": r.p_worse, "p_holm": float(p), "mde": mde}
        if r.gain < -m and p < alpha:
            failing.append(entry)
        elif mde > m:
            small.append(entry)
    nums = {"subjects": len(rows), "failing": len(failing), "too_small": len(small), "alpha": alpha,
            "worst_gain": min((r.gain for r in rows), default=None)}
    if failing:
        failing.sort(key=lambda e: e["gain"])
        listed = ", ".join(f"{e['subject']} {pts(e['delta'], True)} (n={e['n']}, Holm p={pval(e['p_holm'])})"
                           for e in failing[:5])
        more = f" and {len(failing) - 5} more" if len(failing) > 5 else ""
        return FAIL, (f"{len(failing)} of {len(rows)} subjects dropped more than {m:.2f} points, significant after "
                      f"Holm at alpha {alpha:.2g}: {listed}{more}"), nums, failing + small
    if rows and len(small) == len(rows):
        smallest = min(e["mde"] for e in small)
        return INCONCLUSIVE, (f"none of the {len(rows)} subjects has enough items to detect a {m:.2f}-point drop "
                              f"after Holm correction (smallest detectable: {_mde(smallest)} points)"), nums, small
    note = f"; {len(small)} subjects too small to detect a {m:.2f}-point drop" if small else ""
    worst = min(rows, key=lambda r: r.gain)
    return PASS, (f"no subject dropped more than {m:.2f} points significantly (Holm over {len(rows)} subjects, "
                  f"alpha {alpha:.2g}); worst: {worst.subject} {pts(worst.delta, True)}{note}"), nums, small


def _noise_flags(rule: Rule, data: TaskData, adapter: str, comparison: Comparison, noise: NoiseFloor) -> list[Flag]:
    entry = noise.lookup(data.kind, data.task, rule.metric)
    if entry is None:
        return []
    run_fp = comparison.meta.fingerprint(data.kind, data.task)
    if not noise.same_version(entry.fingerprint, run_fp):
        return [Flag("noise_floor_version", "warning",
                     f"the noise floor for {data.kind} '{data.task}' in {noise.path} was measured on another prompt or "
                     "data version; it is not compared with rule thresholds", adapter=adapter, task=data.task)]
    t = rule.threshold
    if t < entry.drift_points:
        return [Flag("noise_floor", "warning",
                     f"rule '{rule.name}': {rule.check} {t:.2f} points is below the noise floor of {rule.metric} on "
                     f"{data.task} ({entry.drift_points:.2f} points between two scorings of the same model): noise "
                     "alone can decide this rule", adapter=adapter, task=data.task)]
    return []


def _no_effect_results(comparison: Comparison, many: bool) -> list[RuleResult]:
    """The built-in rule of `on_no_effect: fail`: one result per adapter."""
    no_effect = {f.adapter for f in comparison.flags if f.code == "no_effect"}
    out = []
    for adapter in comparison.adapters:
        bad = adapter in no_effect
        out.append(RuleResult(
            name=f"{NO_EFFECT_RULE}[{adapter}]" if many else NO_EFFECT_RULE, rule=NO_EFFECT_RULE, adapter=adapter,
            kind="", task="", metric="", check="has_effect", threshold=None, confidence=None, subset="all",
            status=FAIL if bad else PASS, blocking=bad,
            reason=(f"adapter '{adapter}' has no effect (its logits equal the base's); a no-op adapter would pass "
                    "every non-inferiority rule" if bad else f"adapter '{adapter}' changes the base model")))
    return out


def _evaluate_rule(rule: Rule, data: TaskData | None, adapter: str, comparison: Comparison, policy: Policy,
                   noise: NoiseFloor | None, many: bool) -> tuple[RuleResult, list[Flag]]:
    """One rule for one adapter: its result and the flags it raises."""
    c = policy.confidence_of(rule)
    head = dict(name=f"{rule.name}[{adapter}]" if many else rule.name, rule=rule.name, adapter=adapter,
                check=rule.check, threshold=rule.threshold, confidence=c)
    if data is None:
        missing = f"baseline '{rule.against}' on '{rule.task}'" if rule.against and comparison.task(
            rule.task, rule.kind) is not None else f"'{rule.task}'"
        return RuleResult(**head, kind=rule.kind or "", task=rule.task, metric=rule.metric, subset="all",
                          status=SKIPPED, blocking=False,
                          reason=f"skipped: the run did not evaluate {missing} (optional rule)"), []
    flags: list[Flag] = []
    subset = _subset(rule, policy, data, adapter, flags)
    if noise is not None:
        flags.extend(_noise_flags(rule, data, adapter, comparison, noise))
    subjects: list[dict] = []
    if rule.check == "per_subject_max_drop":
        rows = comparison.subjects_of(adapter, data.task, rule.metric, kind=data.kind, subset=subset,
                                      against=rule.against)
        if not rows:
            status, reason, nums = INCONCLUSIVE, f"no {subset} items scored for both models", {}
        else:
            status, reason, nums, subjects = _subject_rule(rule, rows, c)
            if nums["too_small"]:
                flags.append(Flag("too_few_items", "warning",
                                  f"rule '{rule.name}' [{adapter}]: {nums['too_small']} of {nums['subjects']} subjects "
                                  f"of {data.task} are too small to detect a {rule.threshold:.2f}-point drop",
                                  adapter=adapter, task=data.task))
    else:
        row = comparison.row(adapter, data.task, rule.metric, kind=data.kind, subset=subset, against=rule.against)
        if row is None:
            status, nums = INCONCLUSIVE, {}
            reason = f"{rule.metric} on {data.task}: no {subset} items scored for both models"
        else:
            status, reason, nums = _interval_rule(rule, row, c)
            if rule.check == "max_drop" and nums["mde"] > rule.threshold:
                # A decided rule only gets a note: its interval already settled it.
                flags.append(Flag("too_few_items", "warning" if status == INCONCLUSIVE else "info",
                                  f"rule '{rule.name}' [{adapter}]: n={row.n} is too few for max_drop "
                                  f"{rule.threshold:.2f}: the minimum detectable effect of {rule.metric} on "
                                  f"{row.label} is {_mde(nums['mde'])} points (one-sided alpha {1 - c:.2g}, power 0.8)",
                                  adapter=adapter, task=data.task))
    blocking = status == FAIL or (status == INCONCLUSIVE and policy.on_inconclusive_of(rule) == "fail")
    if rule.advisory:
        blocking = False
        if status == FAIL:
            flags.append(Flag("rule_warning", "warning",
                              f"rule '{rule.name}' [{adapter}] failed; it only warns (severity: warn): {reason}",
                              adapter=adapter, task=data.task))
            reason = f"{WARN_PREFIX}: {reason}"
    result = RuleResult(**head, kind=data.kind, task=data.task, metric=rule.metric, subset=subset, status=status,
                        blocking=blocking, reason=reason, numbers=nums, subjects=subjects)
    return result, flags


def evaluate(comparison: Comparison, policy: Policy, noise: NoiseFloor | None = None) -> Verdict:
    """Applies every rule of `policy` to `comparison`.

    Args:
        comparison: The run's comparison (built with the policy's confidence and bootstrap).
        policy: The gate policy.
        noise: A noise floor to compare thresholds with.

    Returns:
        The verdict.

    Raises:
        ConfigError: A rule selects a task, metric, subject set or adapter the run lacks.
    """
    started = time.perf_counter()
    many = len(comparison.adapters) > 1
    resolved = [(rule, _resolve(rule, comparison, policy)) for rule in policy.rules]  # every error before any work
    from harness.analysis.arm_gate import arm_section

    arms, arm_results = arm_section(comparison, policy)  # `ab --vs` runs: B against A (None otherwise)
    flags = list(comparison.flags)
    results = _no_effect_results(comparison, many) if policy.on_no_effect == "fail" else []
    results += arm_results
    deciding = list(results)  # results that decide the verdict: not those of `severity: warn` rules
    for rule, data in resolved:
        for adapter in rule.adapters or comparison.adapters:
            result, raised = _evaluate_rule(rule, data, adapter, comparison, policy, noise, many)
            results.append(result)
            if not rule.advisory:
                deciding.append(result)
            flags.extend(raised)
    statuses = {r.status for r in deciding}
    verdict = FAIL if FAIL in statuses else INCONCLUSIVE if INCONCLUSIVE in statuses else PASS
    exit_code = 1 if any(r.blocking for r in results) else 0
    return Verdict(verdict=verdict, exit_code=exit_code, rules=results, flags=flags, comparison=comparison,
                   policy=policy, noise_floor=str(noise.path) if noise else None,
                   elapsed_s=time.perf_counter() - started, b_vs_a=arms)


def preflight(policy: Policy, suites: Iterable[str] = (), benches: Iterable[str] = (),
              baselines: Iterable[str] = ()) -> None:
    """Before a run: checks that every required rule selects a task the run will evaluate.

    `harness compare --policy` calls this before loading models, so a policy that names a
    benchmark the command line forgot fails in a second rather than after the evaluation.

    Args:
        policy: The loaded policy.
        suites: Suite names the run will evaluate (resolved names, as in suite.yaml).
        benches: Benchmark names the run will evaluate.
        baselines: Names of the baseline arms the run will evaluate (`compare --baseline`).

    Raises:
        ConfigError: A non-optional rule selects a task outside `suites` and `benches`, or
            compares against a baseline arm the run will not have.
    """
    arms = set(baselines)
    for rule in policy.rules:
        if rule.against and rule.against not in arms and not rule.optional:
            raise ConfigError(f"{policy.source or 'policy'}: rule '{rule.name}' compares against '{rule.against}', "
                              f"which this run will not evaluate (its baselines: {', '.join(sorted(arms)) or 'none'})",
                              f"add {_baseline_flag(rule.against)}, or mark the rule `optional: true`")
    have = {("suite", s) for s in suites} | {("bench", b) for b in benches}
    for rule in [*policy.rules, *(policy.b_vs_a.rules if policy.b_vs_a else [])]:
        kinds = [rule.kind] if rule.kind else ["suite", "bench"]
        if getattr(rule, "optional", False) or any((k, rule.task) in have for k in kinds):
            continue
        listed = ", ".join(f"{k} {t}" for k, t in sorted(have)) or "nothing"
        flag = "--bench" if rule.kind == "bench" else "--suite" if rule.kind == "suite" else "--suite/--bench"
        raise ConfigError(f"{policy.source or 'policy'}: rule '{rule.name}' selects {rule.kind or 'task'} "
                          f"'{rule.task}', which this run will not evaluate (it evaluates: {listed})",
                          f"add {flag} {rule.task}, or mark the rule `optional: true`")


def _check_bench_prompts(policy: Policy, meta, run_dir) -> None:
    """A policy that fixes how benchmarks are rendered decides only runs rendered that way."""
    if policy.bench_prompts is None or not meta.spec.benches:
        return
    fmt = meta.spec.bench_format
    want, got = policy.bench_prompts.bench_format().record(), fmt.model_dump(exclude_unset=True) if fmt else {}
    if want != got:
        def say(fmt: dict) -> str:
            return "plain prompts" if not fmt else ", ".join(f"{k}={v!r}" for k, v in sorted(fmt.items()))
        raise ConfigError(f"{run_dir}: benchmarks were rendered with {say(got)}, but the policy's bench_prompts "
                        f"require {say(want)}",
                        "re-run compare with the policy (it applies bench_prompts), or with the matching "
                        "--chat-template/--system-instruction flags")


def apply_gate(run_dir: str | Path, policy_path: str | Path | Policy,
               noise: str | Path | None = None) -> tuple[Verdict, int]:
    """Decides a saved run against a policy; writes nothing (see `harness.pipeline.gate_run`).

    Reads only the run log (no models, no torch).

    Args:
        run_dir: The --out folder of `harness compare`.
        policy_path: Policy YAML file (or an already loaded Policy).
        noise: A `harness calibrate` file; overrides the policy's `noise_floor`.

    Returns:
        (verdict, exit code): 0 pass (or allowed inconclusive), 1 fail or blocking inconclusive.

    Raises:
        HarnessError: Exit 2 — invalid policy, missing/corrupt run log, base and adapter
            evaluated on different items or prompts, or rules the run cannot satisfy.
    """
    policy = policy_path if isinstance(policy_path, Policy) else load_policy(policy_path)
    noise_path = Path(noise) if noise else policy.noise_floor_path()
    floor = load_noise(noise_path) if noise_path else None
    comparison = Comparison.from_run_dir(run_dir, **policy.comparison_settings())
    _check_bench_prompts(policy, comparison.meta, run_dir)
    verdict = evaluate(comparison, policy, floor)
    return verdict, verdict.exit_code
