"""`harness ab`: train adapters under fixed seeds and data, then compare, gate and report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from harness.outputs.trackers import LOG_TO_HELP, MLFLOW_URI_HELP


def register(app: typer.Typer) -> None:
    @app.command("ab")
    def ab(base: str = typer.Argument(..., help="Base model: folder, .gguf file, asset name or hub id."),
           train: Path = typer.Option(..., "--train", help="Training data (JSONL/CSV/Parquet; chat messages or prompt/completion)."),
           suite: Optional[List[str]] = typer.Option(None, "--suite", "-s", help="Suite to evaluate on; repeatable."),
           bench: Optional[List[str]] = typer.Option(None, "--bench", "-b", help="lm-eval tasks/groups, comma-separated."),
           seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds, one adapter each."),
           config: Optional[Path] = typer.Option(None, "--config", help="Training settings YAML (arm A)."),
           vs: Optional[Path] = typer.Option(None, "--vs", help="A second training settings YAML (arm B) to A/B against."),
           epochs: Optional[int] = typer.Option(None, "--epochs"), lr: Optional[float] = typer.Option(None, "--lr"),
           rank: Optional[int] = typer.Option(None, "--rank"), max_steps: Optional[int] = typer.Option(None, "--max-steps"),
           limit: Optional[int] = typer.Option(None, "--limit", "-n", help="First N items per suite and benchmark task."),
           limit_per_subject: Optional[int] = typer.Option(None, "--limit-per-subject"),
           num_fewshot: int = typer.Option(0, "--num-fewshot"),
           policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Gate policy YAML."),
           out: Path = typer.Option(Path("runs/ab"), "--out", "-o", help="Folder for adapters, run log and report."),
           dtype: str = typer.Option("float32", "--dtype"),
           device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (training and evaluation)."),
           trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code"),
           train_cutoff: Optional[str] = typer.Option(None, "--train-cutoff", help="Last day (YYYY-MM-DD) the training data covers; default: its latest row `date`."),
           perturb: int = typer.Option(0, "--perturb", help="Re-ask each suite item under K seeded prompt variants."),
           chat_template: bool = typer.Option(False, "--chat-template", help="Render benchmark prompts through the base's chat template."),
           fewshot_as_multiturn: bool = typer.Option(True, "--fewshot-as-multiturn/--fewshot-single-turn"),
           system_instruction: Optional[str] = typer.Option(None, "--system-instruction", help="TEXT, or @FILE."),
           force: bool = typer.Option(False, "--force", help="Retrain adapters whose folders hold other trainings."),
           log_to: Optional[List[str]] = typer.Option(None, "--log-to", help=LOG_TO_HELP),
           mlflow_uri: Optional[str] = typer.Option(None, "--mlflow-uri", help=MLFLOW_URI_HELP)) -> None:
        """Train one LoRA adapter per seed (and per config with --vs), leak-check, compare, gate, report."""
        from harness.ab import ABConfig, run_ab
        from harness.errors import ConfigError
        from harness.evaluate.forgetting.chat_format import BenchFormat, system_text
        from harness.log.folder import RunFolder
        from harness.outputs.trackers import prepare

        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r} is not a comma-separated list of integers", "pass e.g. --seeds 0,1,2") from None
        cfg = ABConfig(base=base, train=train, out=out, suites=list(suite or []),
                       benches=[b.strip() for v in bench or [] for b in v.split(",") if b.strip()], seeds=seed_list,
                       config=config, vs=vs, overrides={"epochs": epochs, "lr": lr, "rank": rank, "max_steps": max_steps},
                       limit=limit, limit_per_subject=limit_per_subject, num_fewshot=num_fewshot, dtype=dtype, device=device,
                       trust_code=list(trust_code or []), force=force, command=["harness", *sys.argv[1:]],
                       train_cutoff=train_cutoff,
                       perturb=perturb, bench_format=BenchFormat(chat_template, fewshot_as_multiturn,
                                                                 system_text(system_instruction)))
        trackers = prepare(log_to, mlflow_uri)  # before any training
        meta, code = run_ab(cfg, policy=policy, log=lambda m: typer.echo(m, err=True), trackers=trackers)
        _print(meta)
        typer.echo(f"run log: {RunFolder(out).run_json}")
        if code:
            raise typer.Exit(code)


def _print(meta) -> None:
    """The per-seed gain table of a `harness.log.schema.RunMeta` with an `ab` summary."""
    from rich.console import Console
    from rich.table import Table

    from harness import fmt

    rows = meta.ab.summary if meta.ab else []
    if not rows:
        return
    table = Table(title="gain over base per seed (points)")
    for col in ("task", "metric", "arm", "seeds", "gains", "mean", "sd"):
        table.add_column(col)
    for r in rows:
        sd = "-" if r.sd_points is None else fmt.pts(r.sd_points)
        table.add_row(r.task, r.metric, r.arm, str(r.seeds), ", ".join(fmt.pts(g, True) for g in r.gains_points),
                      fmt.pts(r.mean_points, True), sd)
    Console().print(table)
    vs = meta.ab.b_vs_a
    if vs is None:
        return
    table = Table(title=f"B vs A, seed s against seed s (points; win needs |mean| > {vs.spread_k:g} × sd "
                        f"and pooled p < {vs.alpha:g})")
    for col in ("task", "metric", "B − A per seed", "mean", "sd", "p (B better)", "outcome"):
        table.add_column(col)
    for r in vs.rows:
        sd = "-" if r.sd_points is None else fmt.pts(r.sd_points)
        table.add_row(r.task, r.metric, ", ".join(fmt.pts(g, True) for g in r.gains_points),
                      fmt.pts(r.mean_points, True), sd, fmt.pval(r.p_better), r.outcome)
    Console().print(table)
