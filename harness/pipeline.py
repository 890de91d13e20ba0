"""One pipeline for `harness compare` and `harness ab`:
preflight -> evaluate -> gate -> CI files -> report.

Preflight loads the gate policy (and noise floor) and checks every required rule against the
suites and benchmarks the run will evaluate, before any model loads or any adapter trains:
a policy that names a task the command line forgot fails in a second. The gate itself
(`harness.analysis.gate.apply_gate`) only decides; this module writes its CI files
(summary.md, junit.xml, verdict.json) and then the report, whose banner shows the verdict.

Nothing here imports torch at module level: `harness gate` uses `gate_run`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from harness.analysis.gate import apply_gate
from harness.analysis.gate import preflight as check_rules
from harness.analysis.noise import load_noise
from harness.analysis.policy import Policy, load_policy
from harness.analysis.verdict import Verdict, format_verdict
from harness.log.folder import RunFolder
from harness.log.schema import RunMeta
from harness.outputs.ci_files import write_ci_files

if TYPE_CHECKING:
    from harness.outputs.trackers import Tracker

Log = Callable[[str], None]


@dataclass(frozen=True)
class GateSetup:
    """What preflight loaded: the policy (None: not gated) and the noise-floor file to use."""

    policy: Policy | None = None
    noise: Path | None = None


def preflight(policy: str | os.PathLike | Policy | None, noise: str | os.PathLike | None = None, *,
              suites: Iterable[str] = (), benches: Iterable[str] = (),
              trust_code: Iterable[Path] = (), perturb: int = 0, baselines: Iterable[str] = ()) -> GateSetup:
    """Loads and checks the gate settings before any model work.

    Args:
        policy: Policy YAML (or a loaded Policy); None for an ungated run.
        noise: A `harness calibrate` file overriding the policy's `noise_floor`.
        suites: Suite names or folders the run will evaluate.
        benches: Benchmark names the run will evaluate.
        trust_code: Suite folders whose python hooks may run (to resolve suite names).
        perturb: `--perturb K`: each suite's `SUITE~perturbed` task is evaluated too.
        baselines: Names of the baseline arms (`compare --baseline/--baseline-model`).

    Raises:
        HarnessError: Invalid policy or noise file, or a required rule selects a task the run
            will not evaluate.
    """
    if policy is None:
        return GateSetup(noise=Path(noise) if noise else None)
    from harness.evaluate.suites import load_suite

    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    names = [load_suite(s, trusted_dirs=list(trust_code)).name for s in suites]
    if perturb:
        from harness.evaluate.perturb import task_name

        names += [task_name(n) for n in names]
    check_rules(loaded, suites=names, benches=list(benches), baselines=list(baselines))
    noise_path = Path(noise) if noise else loaded.noise_floor_path()
    if noise_path:
        load_noise(noise_path)  # a missing or foreign file fails now, not after the evaluation
    return GateSetup(policy=loaded, noise=Path(noise) if noise else None)


def gate_run(run_dir: str | os.PathLike, policy: str | os.PathLike | Policy,
             noise: str | os.PathLike | None = None) -> tuple[Verdict, int]:
    """Gates a saved run and writes summary.md, junit.xml and verdict.json beside it.

    Old CI files are removed first, so a gate that errors never leaves a stale verdict.

    Returns:
        (verdict, exit code) as `apply_gate`.
    """
    RunFolder(run_dir).clear_ci_files()
    verdict, code = apply_gate(run_dir, policy, noise)
    write_ci_files(verdict, run_dir)
    return verdict, code


def finish(run_dir: str | os.PathLike, gate: GateSetup, log: Log, trackers: Sequence[Tracker] = ()) -> int:
    """After evaluation: gate (when a policy is set), CI files, report, then `--log-to`
    trackers (from `harness.outputs.trackers.prepare`); returns the exit code."""
    from harness.outputs.report import render_report

    verdict, code = None, 0
    if gate.policy is not None:
        verdict, code = gate_run(run_dir, gate.policy, gate.noise)
        for line in format_verdict(verdict):
            log(line)
    log(f"report: {render_report(run_dir, verdict=verdict)}")  # after the gate: the banner shows its verdict
    if trackers:  # last, so they get every file; a tracker's failure is a warning, never the exit code
        from harness.outputs.trackers import publish

        publish(trackers, run_dir, log=log)
    return code


def run(out: Path, evaluate: Callable[[], RunMeta | None], gate: GateSetup, *, log: Log,
        evaluated: Callable[[RunMeta], RunMeta] | None = None,
        trackers: Sequence[Tracker] = ()) -> tuple[RunMeta | None, int]:
    """Evaluates (after `preflight` returned `gate`), then gates, writes CI files and the report.

    Args:
        out: The run folder `evaluate` writes.
        evaluate: Loads models (and, for `ab`, trains adapters first) and writes the run log.
        gate: The result of `preflight`.
        log: Where the verdict lines and the report path go.
        evaluated: Called with run.json before the gate (prints the deltas; `ab` adds its
            seed summary); returns the run.json to go on with.
        trackers: `--log-to` targets the finished folder is logged to (see `finish`).

    Returns:
        (run.json, exit code): 0, or 1 for a failing (or blocking inconclusive) gate; (None, 0)
        on the other ranks of a data-parallel launch, which leave the run folder to rank 0.
    """
    meta = evaluate()
    if meta is None:
        return None, 0
    if evaluated is not None:
        meta = evaluated(meta)
    return meta, finish(out, gate, log, trackers)
