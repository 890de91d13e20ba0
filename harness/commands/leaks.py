"""`harness leaks`: which eval items did the adapter see in training?

    harness leaks --train train.jsonl --suite data2text --bench mmlu,hellaswag --out runs/leaks
    harness leaks --train a.parquet --train b.jsonl --field prompt=question --field completion=answer \\
        --suite squad-qa --out runs/leaks --model smollm2-135m --adapter path/to/lora   # + Min-K%
    harness leaks --train train.jsonl --suite news-qa --train-cutoff 2024-06-30 --out runs/leaks  # dated items

Writes DIR/leaks.jsonl (one line per item) and DIR/leaks.json (summary). The scan needs
no model; torch is imported only for `--membership` (implied by --model/--adapter).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

LABEL_COLOURS = {"clean": "green", "suspect": "yellow", "contaminated": "red"}


def print_report(report, console=None) -> None:
    """Counts per task and label, then detector totals."""
    from rich.console import Console
    from rich.table import Table

    from harness.leaks import LABELS

    console = console or Console()
    table = Table(title="leak scan (items per label)")
    table.add_column("task")
    table.add_column("kind")
    for lab in LABELS:
        table.add_column(lab, justify="right")
    table.add_column("n", justify="right")
    for task, c in report.summary["counts"].items():
        table.add_row(task, c["kind"], *[f"[{LABEL_COLOURS[lab]}]{c[lab]}[/{LABEL_COLOURS[lab]}]" if c[lab] else "0"
                                         for lab in LABELS], str(c["n"]))
    t = report.summary["totals"]
    table.add_row("total", "", *[str(t[lab]) for lab in LABELS], str(t["n"]))
    console.print(table)
    # contaminated items split by what the training row held (harness.leaks.contamination)
    for task, c in report.summary["counts"].items():
        if c["contaminated"]:
            console.print(f"contaminated · {task}: {c.get('input_only', 0)} input only, "
                          f"{c.get('input_answer', 0)} input + answer", markup=False, highlight=False)
    temporal = report.summary.get("temporal")
    if temporal:
        _print_temporal(console, temporal)
    d = report.summary["detectors"]
    parts = [f"13-gram {d.get('gpt3', {}).get('hit', 0)}", f"8-gram>=70% {d.get('palm', {}).get('hit', 0)}",
             f"llama2 dirty {d.get('llama2', {}).get('dirty', 0)} / not clean {d.get('llama2', {}).get('not-clean', 0)}"]
    if "exact" in d:  # short items: whole copies the n-gram windows are too long to see
        parts.append(f"exact copies {d['exact'].get('dirty', 0)}")
    if "answer" in d:
        parts.append(f"gold answer copied {d['answer'].get('hit', 0)}")
    if "minhash" in d:
        parts.append(f"minhash {d['minhash'].get('hit', 0)}")
    if "min_k" in d:
        parts.append(f"min-k% outliers {d['min_k'].get('flagged', 0)}")
    st = report.summary["stats"]
    console.print(f"detectors: {', '.join(parts)}")
    console.print(f"training: {st['rows']} rows, {st['bytes'] / 1e6:.1f} MB in {st['wall_s']:.1f}s "
                  f"({st['mb_per_s'] or 0:.1f} MB/s, {st['workers']} workers), "
                  f"sha256 {str(report.summary['training']['sha256'])[:16]}…")


def _print_temporal(console, temporal: dict) -> None:
    """The cutoff, then items per date status and task (harness.leaks.temporal)."""
    from rich.table import Table

    console.print(temporal_line(temporal), markup=False, highlight=False)
    keys = [k for k in ("at_risk", "after_cutoff", "undated", "dated") if k in temporal["totals"]]
    table = Table(title="temporal leakage (items per date status)")
    table.add_column("task")
    for k in keys:
        table.add_column(k.replace("_", " "), justify="right")
    table.add_column("n", justify="right")
    for task, c in temporal["counts"].items():
        table.add_row(task, *[str(c[k]) for k in keys], str(c["n"]))
    console.print(table)


def temporal_line(temporal: dict) -> str:
    """One line on the cutoff: its date and where it came from, or why there is none."""
    if temporal.get("cutoff"):
        return (f"temporal: cutoff {temporal['cutoff']} (from {temporal.get('cutoff_source')}); items dated on or "
                "before it are at risk")
    return ("temporal: items are dated but there is no cutoff (no --train-cutoff and no dated training row); "
            "pass --train-cutoff YYYY-MM-DD")


def run_leak_lines(leaks) -> list[str]:
    """Terminal lines for a run's `LeakSummary` beyond the label counts: the cutoff, items
    per date status, and adapter-minus-base deltas (points) on each leak subset."""
    from harness.analysis.leak_subsets import SUBSETS

    lines = []
    if leaks.temporal is not None:
        lines.append(temporal_line(leaks.temporal.model_dump()))
        for task, c in leaks.temporal.counts.items():
            if leaks.temporal.cutoff:
                lines.append(f"temporal · {task}: {c.at_risk} at risk, {c.after_cutoff} after cutoff, "
                             f"{c.undated} undated of {c.n}")
    lines += subset_delta_lines("clean subset", leaks.clean_aggregates)
    for subset, kinds in leaks.subset_aggregates.items():
        lines += subset_delta_lines(SUBSETS.get(subset, subset), kinds)
    return lines


def subset_delta_lines(label: str, kinds: dict) -> list[str]:
    """'LABEL · task · model (n=N): metric +x.xx, ...': adapter minus base on one subset of items."""
    lines = []
    for tasks in kinds.values():
        for task, per_model in tasks.items():
            base = per_model.get("base", {})
            for model, agg in per_model.items():
                if model == "base":
                    continue
                parts = [f"{m} {100 * (v - base[m]):+.2f}" for m, v in agg.items()
                         if m != "n" and isinstance(v, (int, float)) and isinstance(base.get(m), (int, float))]
                if parts:
                    lines.append(f"{label} · {task} · {model} (n={agg['n']}): " + ", ".join(parts))
    return lines


def _progress_bar(total_label: str):
    import os

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(total_label), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True,
                    disable=os.environ.get("HARNESS_PROGRESS") == "0" or not sys.stderr.isatty())


def leaks(train: List[Path] = typer.Option(..., "--train", "-t", help="Training data: .jsonl/.txt(.gz), .csv, .parquet, "
                                           ".arrow or a save_to_disk folder; repeatable."),
          field: Optional[List[str]] = typer.Option(None, "--field", "-f", help="Field mapping ROLE=NAME, roles text, "
                                                    "prompt, completion, messages (e.g. --field prompt=question "
                                                    "--field completion=answer); repeatable. Default: detected."),
          suite: Optional[List[str]] = typer.Option(None, "--suite", "-s", help="Suite name or folder; repeatable."),
          bench: Optional[List[str]] = typer.Option(None, "--bench", "-b", help="Benchmarks, comma-separated: "
                                                    "mmlu, hellaswag, arc_easy, arc_challenge; repeatable."),
          limit: Optional[int] = typer.Option(None, "--limit-per-task", "-n", help="First N items of each suite and "
                                              "benchmark task (for mmlu: of each subject)."),
          out: Path = typer.Option(..., "--out", "-o", help="Folder for leaks.jsonl and leaks.json."),
          workers: int = typer.Option(2, "--workers", "-j", help="Processes for the scan."),
          no_minhash: bool = typer.Option(False, "--no-minhash", help="Skip the MinHash near-duplicate detector."),
          membership: bool = typer.Option(False, "--membership", help="Also compute the Min-K% shift of every item "
                                          "under adapter vs base (needs --model and --adapter)."),
          model: Optional[str] = typer.Option(None, "--model", "-m", help="Base model for --membership."),
          adapter: Optional[str] = typer.Option(None, "--adapter", "-a", help="The adapter trained on --train."),
          dtype: str = typer.Option("float32", "--dtype", help="float32 | bfloat16 | float16 (membership)."),
          device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (membership)."),
          allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickle checkpoints (membership)."),
          trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
          trust_code: Optional[List[Path]] = typer.Option(None, "--trust-code", help="Suite folder whose python hook "
                                                          "may run; repeatable."),
          train_cutoff: Optional[str] = typer.Option(None, "--train-cutoff", help="Last day (YYYY-MM-DD) the training "
                                                     "data covers: items dated on or before it are at risk. Default: "
                                                     "the latest `date` of the training rows."),
          force: bool = typer.Option(False, "--force", help="Replace the scan already in --out.")) -> None:
    """Scan training data for copies of eval items; label each item clean / suspect / contaminated."""
    from harness.errors import ConfigError
    from harness.leaks import LeakConfig, eval_items, parse_field_specs, scan, write_leaks
    from harness.leaks import add_membership
    from harness.leaks.temporal import parse_cutoff

    cutoff = parse_cutoff(train_cutoff)  # a bad date fails before the scan
    fields = parse_field_specs(field)
    if (model or adapter) and not membership:
        membership = True
    if membership and not (model and adapter):
        raise ConfigError("--membership needs the base model and the adapter trained on this data",
                          "pass --model BASE --adapter PATH (or drop --membership)")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}", "pass --workers 2")
    from harness.log.folder import LEAK_SUMMARY, LEAKS
    from harness.outputs.guard import check_dir

    check_dir(out)
    earlier = [n for n in (LEAKS, LEAK_SUMMARY) if (out / n).exists()]
    if earlier and not force:
        raise ConfigError(f"--out {out} already holds a leak scan ({earlier[0]})",
                          "pass --force to replace it, or choose another --out folder")
    placement = None
    if membership:
        from harness.evaluate.devices import resolve

        placement = resolve(device, dtype)  # before the scan: a missing GPU is said at once
    items = eval_items(list(suite or []), list(bench or []), limit, trust_code)
    cfg = LeakConfig(minhash=not no_minhash)
    with _progress_bar("scanning training data") as bar:
        tid = bar.add_task("scan", total=1)

        def progress(done: int, total: int) -> None:
            bar.update(tid, completed=done, total=max(total, 1))

        report = scan([str(p) for p in train], items, cfg, fields=fields, workers=workers, progress=progress,
                      train_cutoff=cutoff)
    if membership:
        from harness.evaluate import models
        from harness.leaks.membership import membership as min_k

        bundle = models.load(model, [adapter], placement=placement, allow_pickle=allow_pickle,
                             trust_remote_code=trust_remote_code, probe=False)
        name = next(iter(bundle.adapters))
        with _progress_bar("min-k% scoring") as bar:
            tid = bar.add_task("min-k", total=2 * len(items))
            seen = {"base": 0, name: 0}

            def tick(model_name: str, done: int, total: int) -> None:
                seen[model_name] = done
                bar.update(tid, completed=sum(seen.values()))

            result = min_k(bundle, items, name, k=cfg.membership_k, z_threshold=cfg.membership_z, progress=tick)
        add_membership(report, result)
    lines, summ = write_leaks(out, report)
    print_report(report)
    typer.echo(f"wrote {lines} and {summ}")


def register(app: typer.Typer) -> None:
    app.command("leaks")(leaks)
