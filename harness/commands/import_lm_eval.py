"""`harness import BASE ADAPTER --out RUN_DIR`: a run log from two lm-eval output folders.

No model is loaded: the per-sample files lm-eval wrote with `--log_samples` become
items.jsonl, so `harness gate` and `harness report` work on runs made elsewhere. With
`--policy` the gate runs right away, as it does after `harness compare`. Top-level imports
stay light.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

import typer


def run_import(base: Path, adapter: Path, *, out: Path, label: str | None = None, policy: Path | None = None,
               noise: Path | None = None, force: bool = False, log: Callable[[str], None] = typer.echo,
               warn: Callable[[str], None] | None = None) -> int:
    """Imports, writes the run folder, gates (with a policy) and writes the report; returns the exit code.

    Every check (folders, the two runs' sameness, the policy against the imported tasks, the
    --out folder) happens before anything is written.
    """
    from harness import pipeline
    from harness.errors import ConfigError
    from harness.evaluate.lm_eval_import import import_lm_eval
    from harness.log.folder import RunFolder
    from harness.outputs.guard import check_dir

    warn = warn or (lambda m: typer.echo(f"warning: {m}", err=True))
    folder = RunFolder(check_dir(out))
    imported = import_lm_eval(base, adapter, label, command=["harness", *sys.argv[1:]])
    gate = pipeline.preflight(policy, noise, benches=imported.tasks)
    spec = imported.meta.model_dump(mode="json", exclude_unset=True)["spec"]
    if folder.has_run() and not force and folder.read_spec() != spec:
        raise ConfigError(f"{out} already holds a run of other models/tasks/settings",
                          "choose another --out folder, or pass --force to replace it")
    for note in imported.notes:
        warn(note)

    def write():
        folder.write_run(imported.meta, imported.records)  # first: a failed write leaves the earlier run whole
        folder.clear_derived()
        return imported.meta

    def summarise(meta):
        _print_deltas(meta, log)
        log(f"run log: {folder.run_json}  (items: {folder.items_jsonl}; {len(imported.records)} lines, "
            "imported from lm-eval)")
        return meta

    _, code = pipeline.run(folder.path, write, gate, log=log, evaluated=summarise)
    return code


def import_if_lm_eval(base: str, adapters: list[str], *, out: Path, policy: Path | None, noise: Path | None,
                      force: bool, evaluation_options: bool) -> bool:
    """`harness compare LM_EVAL_DIR [NAME=]LM_EVAL_DIR`: imports instead of evaluating.

    Returns False (compare evaluates as usual) unless both arguments are lm-eval output;
    raises typer.Exit with a failing gate's code.

    Raises:
        ConfigError: Only one of the two is lm-eval output, or evaluation options were given.
    """
    from harness.errors import ConfigError
    from harness.evaluate.lm_eval_output import is_lm_eval_output

    if len(adapters) != 1:
        return False
    label, _, path = adapters[0].rpartition("=")
    found = [is_lm_eval_output(base), is_lm_eval_output(path)]
    if not any(found):
        return False
    if not all(found):
        lm, other = (base, path) if found[0] else (path, base)
        raise ConfigError(f"{lm} is lm-eval output but {other} is not",
                          "pass two lm-eval --output_path folders to import them, or a model and an adapter to evaluate")
    if evaluation_options:
        raise ConfigError("two lm-eval output folders are imported, not evaluated: --suite, --bench and --train do not apply",
                          "drop them, or use `harness import`")
    code = run_import(Path(base), Path(path), out=out, label=label or None, policy=policy, noise=noise, force=force)
    if code:
        raise typer.Exit(code)
    return True


def _print_deltas(meta, log: Callable[[str], None]) -> None:
    from harness import fmt
    from harness.analysis.headline import aggregate_deltas

    for r in aggregate_deltas(meta):
        log(f"{r.task} · {r.metric} · {r.model} (n={r.n}): base {fmt.pts(r.base)}, adapter {fmt.pts(r.score)}, "
            f"delta {fmt.pts(r.delta, True)}")
    for task, per_model in (meta.aggregates.bench or {}).items():
        for model, agg in per_model.items():
            if model != "base" and agg.flips is not None:
                log(f"{task} · {model}: {agg.flips['right_to_wrong']} right→wrong, "
                    f"{agg.flips['wrong_to_right']} wrong→right")


def import_cmd(base: Path = typer.Argument(..., help="lm-eval --output_path folder of the base model "
                                                     "(or a results_*.json in it), written with --log_samples."),
               adapter: Path = typer.Argument(..., help="The same for the adapter (or fine-tuned model)."),
               label: Optional[str] = typer.Option(None, "--label", help="The adapter's name in the run log "
                                                   "(default: the last part of lm-eval's model name)."),
               out: Path = typer.Option(..., "--out", "-o", help="Run folder for run.json and items.jsonl."),
               policy: Optional[Path] = typer.Option(None, "--policy", "-p",
                                                     help="Gate policy YAML: pass/fail right after the import."),
               noise: Optional[Path] = typer.Option(None, "--noise",
                                                    help="Noise floor from `harness calibrate`, for the gate."),
               force: bool = typer.Option(False, "--force",
                                          help="Replace a run folder that holds a different run.")) -> None:
    """Build a run log from two lm-eval runs (base, adapter): paired statistics, gate and report without re-running.

    Exit codes: 0 imported (and passed, with --policy); 1 failed gate; 2 bad input (not lm-eval
    output, no --log_samples files, the two runs differ in tasks, documents, configs or n-shot).
    """
    code = run_import(base, adapter, out=out, label=label, policy=policy, noise=noise, force=force)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Adds `import` to the harness CLI."""
    app.command("import")(import_cmd)
