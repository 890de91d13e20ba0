"""`harness gate RUN_DIR --policy FILE` and `harness calibrate MODEL ...`.

`gate` reads only the run log: no model, no torch, so it answers in about a second.
Top-level imports stay light; the work is imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from harness.outputs.trackers import LOG_TO_HELP, MLFLOW_URI_HELP


def _echo_verdict(verdict) -> None:
    from harness.analysis.verdict import format_verdict

    for line in format_verdict(verdict):
        typer.echo(line)


def gate(run_dir: Path = typer.Argument(..., help="Run folder written by `harness compare`."),
         policy: Path = typer.Option(..., "--policy", "-p", help="Gate policy YAML (see ci/gate.yaml)."),
         noise: Optional[Path] = typer.Option(None, "--noise", help="Noise floor from `harness calibrate` "
                                              "(overrides the policy's noise_floor)."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict line."),
         log_to: Optional[List[str]] = typer.Option(None, "--log-to", help=LOG_TO_HELP),
         mlflow_uri: Optional[str] = typer.Option(None, "--mlflow-uri", help=MLFLOW_URI_HELP)) -> None:
    """Decide pass/fail from a saved run log; write summary.md, junit.xml, verdict.json beside it.

    Exit codes: 0 pass (or inconclusive allowed by the policy), 1 fail or inconclusive,
    2 error (bad policy, missing run log, base and adapter evaluated on different items).
    """
    from harness.log.folder import CI_FILES, RunFolder
    from harness.outputs.trackers import prepare, publish
    from harness.pipeline import gate_run

    trackers = prepare(log_to, mlflow_uri)
    verdict, code = gate_run(run_dir, policy, noise)
    if quiet:
        typer.echo(f"gate: {verdict.verdict.upper()} (exit {code})")
    else:
        _echo_verdict(verdict)
        typer.echo("artifacts: " + ", ".join(str(RunFolder(run_dir).file(name)) for name in CI_FILES))
    # a failure is a warning on stderr: the exit code stays the gate's
    publish(trackers, run_dir, log=(lambda _: None) if quiet else typer.echo)
    if code:
        raise typer.Exit(code)


def _batch_sizes(text: str) -> tuple[int, int]:
    from harness.errors import ConfigError

    try:
        a, b = (int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--batch-sizes must be two integers like 16,3, got '{text}'", "pass e.g. --batch-sizes 16,3")
    if a < 1 or b < 1:
        raise ConfigError(f"--batch-sizes must be positive, got '{text}'", "pass e.g. --batch-sizes 16,3")
    return a, b


def calibrate(model: str = typer.Argument(..., help="Base model: folder, .gguf file, asset name or hub id."),
              suite: Optional[List[str]] = typer.Option(None, "--suite", "-s", help="Suite to score; repeatable."),
              bench: Optional[List[str]] = typer.Option(None, "--bench", "-b",
                                                        help="Benchmark(s) to score, e.g. mmlu,hellaswag; repeatable."),
              out: Path = typer.Option(..., "--out", "-o", help="Noise-floor JSON file to write."),
              adapter: Optional[str] = typer.Option(None, "--adapter", "-a",
                                                    help="Calibrate this adapter on MODEL instead of the bare base."),
              batch_sizes: str = typer.Option("16,3", "--batch-sizes", help="The two batch sizes to compare."),
              shuffle: bool = typer.Option(True, "--shuffle/--no-shuffle",
                                           help="Score the second run in a shuffled item order too."),
              limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Items per suite/benchmark."),
              limit_per_subject: Optional[int] = typer.Option(None, "--limit-per-subject",
                                                              help="Seeded sample of N items per benchmark subject."),
              num_fewshot: int = typer.Option(0, "--num-fewshot", help="Few-shot examples for benchmarks."),
              dtype: str = typer.Option("float32", "--dtype"), seed: int = typer.Option(0, "--seed"),
              device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps."),
              keep_runs: Optional[Path] = typer.Option(None, "--keep-runs", help="Keep both run folders here."),
              allow_pickle: bool = typer.Option(False, "--allow-pickle"),
              trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
              trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code"),
              force: bool = typer.Option(False, "--force", help="Replace an --out file that harness did not write.")) -> None:
    """Score one model twice (different batch sizes and item order, no cache) and record the drift: the noise floor.

    `harness gate --noise FILE` then warns about every rule whose threshold is below it.
    """
    from harness.evaluate.calibrate import calibrate as run_calibration

    benches = [b.strip() for item in bench or [] for b in item.split(",") if b.strip()]
    doc = run_calibration(model, out=out, suites=list(suite or []), benches=benches, adapter=adapter,
                          batch_sizes=_batch_sizes(batch_sizes), limit=limit, limit_per_subject=limit_per_subject,
                          num_fewshot=num_fewshot, dtype=dtype, device=device, seed=seed,
                          trust_code=list(trust_code or []), allow_pickle=allow_pickle,
                          trust_remote_code=trust_remote_code, runs_dir=keep_runs,
                          command=["harness", *sys.argv[1:]],
                          warn=lambda m: typer.echo(f"warning: {m}", err=True), shuffle=shuffle, force=force)
    bs = doc.get("batch_sizes")
    for t in doc["tasks"]:
        for metric, m in t["metrics"].items():
            drift = "n/a" if m["drift_points"] is None else f"{m['drift_points']:.2f}"
            share = "n/a" if m["flip_share"] is None else f"{100 * m['flip_share']:.1f}%"
            typer.echo(f"{t['kind']} {t['task']} {metric}: drift {drift} points, {share} of items changed "
                       f"(batch sizes {bs[0]} vs {bs[1]}, order {' vs '.join(doc['item_order'])}, n={t['n']})")
    typer.echo(f"noise floor: {out}")


def register(app: typer.Typer) -> None:
    """Adds `gate` and `calibrate` to the harness CLI."""
    app.command("gate")(gate)
    app.command("calibrate")(calibrate)
