"""`harness sweep`: train and evaluate a grid of training settings; chart gain against forgetting.

    harness sweep smollm2-135m --train train.jsonl --suite squad-qa --bench hellaswag \\
        --set rank=4,16 --set lr=2e-4,1e-3 --limit 32 --out runs/sweep
    harness sweep smollm2-135m --train train.jsonl --grid grid.yaml --config base.yaml ...

Re-running the same command resumes: finished points are skipped, interrupted ones restart
(see `harness.sweep`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(base: str = typer.Argument(..., help="Base model: folder, .gguf file, asset name or hub id."),
              train: Path = typer.Option(..., "--train", help="Training data (JSONL/CSV/Parquet; chat messages or prompt/completion)."),
              grid: Optional[Path] = typer.Option(None, "--grid", help="YAML: training setting -> list of values."),
              set_: Optional[List[str]] = typer.Option(None, "--set", help="KEY=V1,V2: one grid axis (e.g. rank=4,8); repeatable."),
              config: Optional[Path] = typer.Option(None, "--config", help="Training settings YAML every point starts from."),
              suite: Optional[List[str]] = typer.Option(None, "--suite", "-s", help="Suite to evaluate on; repeatable."),
              bench: Optional[List[str]] = typer.Option(None, "--bench", "-b", help="lm-eval tasks/groups for forgetting, comma-separated."),
              seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds; every point trains each."),
              gain: Optional[str] = typer.Option(None, "--gain", help="TASK:METRIC on the gain axis [first suite's first metric]."),
              limit: Optional[int] = typer.Option(None, "--limit", "-n", help="First N items per suite and benchmark task."),
              limit_per_subject: Optional[int] = typer.Option(None, "--limit-per-subject"),
              num_fewshot: int = typer.Option(0, "--num-fewshot"),
              out: Path = typer.Option(Path("runs/sweep"), "--out", "-o", help="Sweep folder: one run per point, sweep.json, report.html."),
              dtype: str = typer.Option("float32", "--dtype"),
              device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (training and evaluation)."),
              trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code"),
              perturb: int = typer.Option(0, "--perturb", help="Re-ask each suite item under K seeded prompt variants."),
              force: bool = typer.Option(False, "--force", help="Retrain and re-evaluate every point; use a non-empty --out.")) -> None:
        """Train one LoRA adapter per grid point (and seed), evaluate each like `harness ab`, chart gain vs forgetting."""
        from harness.errors import ConfigError
        from harness.sweep import SweepConfig, run_sweep
        from harness.sweep_grid import build_grid

        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {seeds!r} is not a comma-separated list of integers", "pass e.g. --seeds 0,1") from None
        cfg = SweepConfig(base=base, train=train, out=out, grid=build_grid(grid, set_ or [], config),
                          suites=list(suite or []), benches=[b.strip() for v in bench or [] for b in v.split(",") if b.strip()],
                          seeds=seed_list, config=config, gain=gain, limit=limit, limit_per_subject=limit_per_subject,
                          num_fewshot=num_fewshot, dtype=dtype, device=device, trust_code=list(trust_code or []),
                          perturb=perturb, force=force, command=["harness", *sys.argv[1:]])
        doc = run_sweep(cfg, log=lambda m: typer.echo(m, err=True))
        _print(doc)
        typer.echo(f"sweep summary: {out / 'sweep.json'}")


def _print(doc) -> None:
    """One row per point of a `harness.log.schema.SweepDoc`."""
    from rich.console import Console
    from rich.table import Table

    from harness import fmt
    from harness.sweep_grid import value_text

    table = Table(title=f"gain ({doc.gain_task} {doc.gain_metric}) and forgetting per point (points)")
    for col in ("#", *doc.grid, "gain", "forgetting", "Pareto"):
        table.add_column(col)
    for i, p in enumerate(doc.points, 1):
        front = "" if p.on_front is None else ("front" if p.on_front else "dominated")
        table.add_row(str(i), *(value_text(p.settings.get(k)) for k in doc.grid), fmt.pts(p.gain_points, True),
                      fmt.pts(p.forgetting_points, True), front)
    Console().print(table)
