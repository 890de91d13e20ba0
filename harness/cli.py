"""Command line: parse, call the library, turn HarnessError into one line and exit 2.

Heavy libraries (torch, transformers) are imported inside the commands that need them, so
`harness --help`, `harness suites list` and the log-reading commands start fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import List, Optional

# lm-eval and datasets draw tqdm bars of their own; ours are rich bars on stderr. tqdm reads
# this variable when it is first imported, so it must be set before any of them loads.
os.environ.setdefault("TQDM_DISABLE", "1")

import typer  # noqa: E402

from harness.errors import ConfigError, HarnessError  # noqa: E402
from harness.outputs import trackers  # noqa: E402  (light: names, help and checks; MLflow loads on use)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate LoRA adapters against their base model: task suites, forgetting, gates, reports.")
suites_app = typer.Typer(no_args_is_help=True, help="Task suites.")
assets_app = typer.Typer(no_args_is_help=True, help="Offline models and data (fetched from package registries).")
app.add_typer(suites_app, name="suites")
app.add_typer(assets_app, name="assets")

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _default_out() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


SuiteOpt = typer.Option(None, "--suite", "-s", help="Suite name (see `harness suites list`) or folder; repeatable.")
BenchOpt = typer.Option(None, "--bench", "-b", help="lm-eval tasks or groups, comma-separated (e.g. mmlu,hellaswag); repeatable.")
FewshotOpt = typer.Option(0, "--num-fewshot", help="Few-shot examples for benchmarks (from the dev split, as lm-eval does).")
PerSubjectOpt = typer.Option(None, "--limit-per-subject", help="Seeded sample of N items per benchmark subject/task.")
LimitOpt = typer.Option(None, "--limit", "-n", help="First N items of each suite and of each benchmark task.")
OutOpt = typer.Option(None, "--out", "-o", help="Run folder for run.json and items.jsonl (default: runs/TIME).")
BatchOpt = typer.Option(16, "--batch-size", help="Prompts decoded together.")
DtypeOpt = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 elsewhere) | float32 | bfloat16 | float16.")
DeviceOpt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N | mps (auto: cuda, then mps, then cpu).")
DeviceMapOpt = typer.Option(None, "--device-map", help="auto: spread a base larger than one GPU over GPUs and CPU RAM (accelerate).")
LoadInOpt = typer.Option(None, "--load-in", help="4bit | 8bit: quantize the base with bitsandbytes (evaluate QLoRA adapters on it).")
EngineOpt = typer.Option("transformers", "--engine", help="transformers | vllm (base loaded once, one LoRARequest per adapter).")
TPOpt = typer.Option(1, "--tensor-parallel", help="vLLM: GPUs one model is split over.")
SeedOpt = typer.Option(0, "--seed")
NoCacheOpt = typer.Option(False, "--no-cache", help="Recompute every item and write nothing to the result cache.")
JudgeOpt = typer.Option(True, "--judge/--no-judge", help="Run the suites' rubric judges (HARNESS_JUDGE=off also skips them).")
ForceOpt = typer.Option(False, "--force", help="Replace a run folder that holds a different run.")
PickleOpt = typer.Option(False, "--allow-pickle", help="Allow pickle checkpoints (.bin/.pt), which can run code.")
RemoteOpt = typer.Option(False, "--trust-remote-code", help="Allow models that ship their own Python code.")
TrustOpt = typer.Option(None, "--trust-code", help="Suite folder whose python hook may run; repeatable.")
CutoffOpt = typer.Option(None, "--train-cutoff", help="Last day (YYYY-MM-DD) the training data covers: eval items dated on or before it are at risk of temporal leakage. Default: the latest `date` of the training rows.")
ChatOpt = typer.Option(False, "--chat-template", help="Render benchmark prompts through the base's chat template (lm-eval's apply_chat_template).")
MultiturnOpt = typer.Option(True, "--fewshot-as-multiturn/--fewshot-single-turn", help="With --chat-template: few-shot examples as earlier turns (default) or in one user turn.")
SystemOpt = typer.Option(None, "--system-instruction", help="System instruction for benchmark prompts: TEXT, or @FILE.")
PerturbOpt = typer.Option(0, "--perturb", help="Re-ask each suite item under K seeded prompt variants (task SUITE~perturbed, metric consistent).")
LogToOpt = typer.Option(None, "--log-to", help=trackers.LOG_TO_HELP)
BaselineOpt = typer.Option(None, "--baseline", help="Extra arm: the base prompted with fewshot:K examples from the suite's pool, or system:FILE; repeatable.")
BaselineModelOpt = typer.Option(None, "--baseline-model", help="Extra arm: another model, [NAME=]PATH|ASSET or [NAME=]openai:MODEL@URL, on the same items; repeatable.")
MlflowUriOpt = typer.Option(None, "--mlflow-uri", help=trackers.MLFLOW_URI_HELP)


def _benches(values) -> list[str]:
    return [b.strip() for v in values or [] for b in v.split(",") if b.strip()]


def _run_config(base, adapters, suite, bench, num_fewshot, limit_per_subject, limit, out, batch_size, dtype, seed,
                no_cache, force, allow_pickle, trust_remote_code, trust_code, include_base, judge=True, train=None,
                perturb=0, chat_template=False, fewshot_as_multiturn=True, system_instruction=None, **hardware):
    """A `RunConfig` from the shared options; `hardware`: device, device_map, load_in, engine, tensor_parallel."""
    from harness.evaluate.devices import check_syntax
    from harness.evaluate.run import RunConfig

    check_syntax(hardware.get("device", "auto"), dtype, hardware.get("device_map"), hardware.get("load_in"))
    from harness.evaluate.forgetting.chat_format import BenchFormat, system_text

    bench_format = BenchFormat(chat_template=chat_template, fewshot_as_multiturn=fewshot_as_multiturn,
                               system_instruction=system_text(system_instruction))

    return RunConfig(base=base, adapters=list(adapters or []), suites=list(suite or []), benches=_benches(bench),
                     num_fewshot=num_fewshot, limit_per_subject=limit_per_subject, limit=limit,
                     out=Path(out) if out else _default_out(), include_base=include_base, batch_size=batch_size,
                     dtype=dtype, seed=seed, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code,
                     trust_code=[Path(p) for p in trust_code or []], use_cache=not no_cache, judge=judge, force=force,
                     train_files=[Path(p) for p in train or []], perturb=perturb, bench_format=bench_format,
                     command=["harness", *sys.argv[1:]], **hardware)


def _evaluate(cfg):
    """Runs `cfg` and writes its run log; returns the `RunMeta`."""
    from harness.evaluate.run import execute

    return execute(cfg, warn=lambda m: _err(f"warning: {m}"))


def _print_summary(cfg, meta) -> None:
    """The terminal summary of a finished run (`meta` is its `RunMeta`): deltas, flips, leaks, cost."""
    from rich.console import Console

    from harness.log.folder import RunFolder

    console = Console()
    _print_scores(console, meta)
    _print_baselines(console, meta)
    for task, per_model in (meta.aggregates.bench or {}).items():
        for model, agg in per_model.items():
            if model != "base" and agg.flips is not None:
                f = agg.flips
                console.print(f"{task} · {model}: {f['right_to_wrong']} right→wrong, {f['wrong_to_right']} wrong→right")
    for task, (cut, _) in meta.aggregates.truncated().items():
        _err(f"warning: {cut} prompts of '{task}' were cut on the left to fit the model's context "
             "(items.jsonl: truncated_tokens)")
    folder = RunFolder(cfg.out)
    if meta.leaks:
        _print_leaks(console, meta.leaks)
        console.print(f"leak evidence: {folder.leaks_jsonl}")
    t = meta.timing
    console.print(f"items computed: {t.items_computed}, from cache: {t.items_cached}, wall {t.total_s:.1f}s")
    console.print(f"run log: {folder.run_json}  (items: {folder.items_jsonl})")


def _print_scores(console, meta) -> None:
    """Base-vs-adapter deltas from run.json's aggregates, or each model's scores when there is no base."""
    from harness import fmt
    from harness.analysis.headline import aggregate_deltas

    rows = aggregate_deltas(meta)
    if not rows:
        for _, tasks in meta.aggregates.sections():
            for task, per_model in tasks.items():
                for model, agg in per_model.items():
                    scores = ", ".join(f"{k}={fmt.pts(100 * v)}" for k, v in agg.metric_values().items()
                                       if isinstance(v, float))
                    console.print(f"{task} · {model} (n={agg.n}): {scores}")
        return
    console.print(_delta_table("base vs adapter (points = 100 x score)", ("adapter", "base", "adapter score"), rows))


def _delta_table(title: str, names: tuple[str, str, str], rows):
    """A terminal table of headline deltas; `names`: the model, reference and score columns."""
    from rich.table import Table

    from harness import fmt

    model, ref, score = names
    table = Table(title=title)
    for col in ("task", "metric", model, "n", ref, score, "delta"):
        table.add_column(col, justify="right" if col in ("n", ref, score, "delta") else "left")
    for r in rows:
        colour = {True: "green", False: "red", None: "white"}[r.improved]
        table.add_row(r.task, r.metric, r.model, str(r.n), fmt.pts(r.base), fmt.pts(r.score),
                      f"[{colour}]{fmt.pts(r.delta, True)}[/{colour}]")
    return table


def _print_baselines(console, meta) -> None:
    """Each adapter against each baseline arm (`--baseline`), from run.json's aggregates."""
    from harness.analysis.headline import baseline_deltas

    rows = baseline_deltas(meta)
    if not rows:
        return
    console.print(_delta_table("adapter vs baseline arms (points = 100 x score)", ("adapter vs arm", "arm", "adapter"),
                               rows))


def _print_leaks(console, leaks) -> None:
    """Leak counts per task, the clean-subset deltas, then contamination and date subsets (a `LeakSummary`)."""
    from harness.commands.leaks import run_leak_lines

    for task, c in leaks.counts.items():
        split = f" ({c.input_only} input only, {c.input_answer} input + answer)" if c.contaminated else ""
        console.print(f"leaks · {task}: {c.contaminated} contaminated{split}, {c.suspect} suspect, "
                      f"{c.clean} clean of {c.n}")
    for line in run_leak_lines(leaks):  # cutoff, date statuses, deltas on the clean and leak subsets
        console.print(line, markup=False, highlight=False)


@app.command()
def run(model: str = typer.Argument(..., help="Base model: folder, .gguf file, asset name or hub id."),
        adapter: Optional[List[str]] = typer.Option(None, "--adapter", "-a", help="PEFT LoRA folder, or NAME=PATH; repeatable."),
        suite: Optional[List[str]] = SuiteOpt, bench: Optional[List[str]] = BenchOpt, num_fewshot: int = FewshotOpt,
        limit_per_subject: Optional[int] = PerSubjectOpt, limit: Optional[int] = LimitOpt, out: Optional[Path] = OutOpt,
        batch_size: int = BatchOpt, dtype: str = DtypeOpt, seed: int = SeedOpt, no_cache: bool = NoCacheOpt, judge: bool = JudgeOpt,
        force: bool = ForceOpt, allow_pickle: bool = PickleOpt, trust_remote_code: bool = RemoteOpt,
        train: Optional[List[Path]] = typer.Option(None, "--train", help="Training data of the model/adapter: label eval items that leaked into it; repeatable."),
        train_cutoff: Optional[str] = CutoffOpt,
        device: str = DeviceOpt, device_map: Optional[str] = DeviceMapOpt,
        load_in: Optional[str] = LoadInOpt, engine: str = EngineOpt, tensor_parallel: int = TPOpt,
        trust_code: Optional[List[Path]] = TrustOpt, perturb: int = PerturbOpt,
        chat_template: bool = ChatOpt, fewshot_as_multiturn: bool = MultiturnOpt, system_instruction: Optional[str] = SystemOpt,
        log_to: Optional[List[str]] = LogToOpt, mlflow_uri: Optional[str] = MlflowUriOpt) -> None:
    """Evaluate one model (with its adapters applied, if any) on suites."""
    targets = trackers.prepare(log_to, mlflow_uri)  # before any model loads
    cfg = _run_config(model, adapter, suite, bench, num_fewshot, limit_per_subject, limit, out, batch_size, dtype, seed,
                      no_cache, force, allow_pickle, trust_remote_code, trust_code, include_base=not adapter, judge=judge,
                      perturb=perturb, device=device, device_map=device_map, load_in=load_in, engine=engine,
                      tensor_parallel=tensor_parallel, chat_template=chat_template,
                      fewshot_as_multiturn=fewshot_as_multiturn, system_instruction=system_instruction)
    cfg.train_files, cfg.train_cutoff = [Path(p) for p in train or []], train_cutoff
    meta = _evaluate(cfg)
    if meta is not None:  # None: another rank of a data-parallel launch (rank 0 prints)
        _print_summary(cfg, meta)
        trackers.publish(targets, cfg.out, log=typer.echo)


@app.command()
def compare(base: str = typer.Argument(..., help="Base model: folder, .gguf file, asset name or hub id."),
            adapters: List[str] = typer.Argument(..., help="PEFT LoRA folders (or NAME=PATH), evaluated against the base."),
            suite: Optional[List[str]] = SuiteOpt, bench: Optional[List[str]] = BenchOpt, num_fewshot: int = FewshotOpt,
            limit_per_subject: Optional[int] = PerSubjectOpt, limit: Optional[int] = LimitOpt, out: Optional[Path] = OutOpt,
            batch_size: int = BatchOpt, dtype: str = DtypeOpt, seed: int = SeedOpt, no_cache: bool = NoCacheOpt, judge: bool = JudgeOpt,
            force: bool = ForceOpt, allow_pickle: bool = PickleOpt, trust_remote_code: bool = RemoteOpt,
            trust_code: Optional[List[Path]] = TrustOpt,
            device: str = DeviceOpt, device_map: Optional[str] = DeviceMapOpt, load_in: Optional[str] = LoadInOpt,
            engine: str = EngineOpt, tensor_parallel: int = TPOpt, perturb: int = PerturbOpt,
            chat_template: bool = ChatOpt, fewshot_as_multiturn: bool = MultiturnOpt,
            system_instruction: Optional[str] = SystemOpt,
            train_cutoff: Optional[str] = CutoffOpt,
            policy: Optional[Path] = typer.Option(None, "--policy", "-p", help="Gate policy YAML (see ci/gate.yaml): pass/fail after the run."),
            noise: Optional[Path] = typer.Option(None, "--noise", help="Noise floor from `harness calibrate`, for the gate."),
            train: Optional[List[Path]] = typer.Option(None, "--train", help="The adapter's training data: label eval items that leaked into it; repeatable."),
            log_to: Optional[List[str]] = LogToOpt, mlflow_uri: Optional[str] = MlflowUriOpt,
            baseline: Optional[List[str]] = BaselineOpt, baseline_model: Optional[List[str]] = BaselineModelOpt) -> None:
    """Evaluate base and adapters in one process (base weights loaded once) and print the deltas."""
    from harness.commands.import_lm_eval import import_if_lm_eval

    if import_if_lm_eval(base, adapters, out=out or _default_out(), policy=policy, noise=noise, force=force,
                         evaluation_options=bool(suite or bench or train)):
        return  # two lm-eval --log_samples folders: imported (harness import), nothing evaluated
    from harness import pipeline
    from harness.evaluate.baselines import parse_all

    targets = trackers.prepare(log_to, mlflow_uri)  # before any model loads
    arms = [a.name for a in parse_all(baseline or [], baseline_model or [])]  # syntax now; pools and models in execute
    gate = pipeline.preflight(policy, noise, suites=suite or [], benches=_benches(bench),
                              trust_code=[Path(p) for p in trust_code or []], perturb=perturb,
                              baselines=arms)  # before minutes of model work
    if gate.policy is not None and gate.policy.b_vs_a and gate.policy.b_vs_a.rules:
        raise ConfigError(f"{gate.policy.source or 'policy'}: b_vs_a rules compare arm B with arm A of "
                          "`harness ab --vs`, and compare has no arms", "gate this run with a policy without "
                          "`b_vs_a.rules`, or run `harness ab --vs CONFIG`")
    cfg = _run_config(base, adapters, suite, bench, num_fewshot, limit_per_subject, limit, out, batch_size, dtype,
                      seed, no_cache, force, allow_pickle, trust_remote_code, trust_code, include_base=True,
                      judge=judge, train=train, perturb=perturb, device=device, device_map=device_map, load_in=load_in, engine=engine,
                      tensor_parallel=tensor_parallel, chat_template=chat_template,
                      fewshot_as_multiturn=fewshot_as_multiturn, system_instruction=system_instruction)
    from harness.evaluate.forgetting.chat_format import with_policy

    cfg.bench_format = with_policy(cfg.bench_format, gate.policy)
    cfg.baselines, cfg.baseline_models = list(baseline or []), list(baseline_model or [])

    cfg.train_cutoff = train_cutoff

    def summarise(meta):
        _print_summary(cfg, meta)
        return meta

    _, code = pipeline.run(cfg.out, lambda: _evaluate(cfg), gate, log=typer.echo, evaluated=summarise,
                           trackers=targets)
    if code:
        raise typer.Exit(code)


@suites_app.command("list")
def suites_list() -> None:
    """Bundled suites and those on HARNESS_SUITES_PATH."""
    from rich.console import Console
    from rich.table import Table

    from harness.evaluate.suites import list_suites

    table = Table()
    for col in ("name", "version", "items", "source", "description"):
        table.add_column(col)
    for s in list_suites():
        items = "?" if s.n_items is None else str(s.n_items)
        table.add_row(s.name, s.version, items, s.source, s.error or s.description)
    Console().print(table)


@assets_app.command("pull")
def assets_pull(names: Optional[List[str]] = typer.Argument(None, help="Assets to fetch [default: all].")) -> None:
    """Download, verify and unpack offline assets into $HARNESS_HOME (idempotent)."""
    from harness.assets import pull

    for path in pull(list(names or []), log=lambda m: _err(m)):
        typer.echo(str(path))


@assets_app.command("path")
def assets_path(name: str) -> None:
    """Print the folder of a pulled asset."""
    from harness.assets import asset_path

    typer.echo(str(asset_path(name)))


@assets_app.command("list")
def assets_list() -> None:
    """Known assets and whether they are pulled."""
    from harness.assets import ASSETS, PACKAGES, is_pulled

    for name, a in ASSETS.items():
        pkg = PACKAGES[a.package]
        state = "pulled" if is_pulled(name) else "not pulled"
        typer.echo(f"{name:14} {state:11} {pkg.name}=={pkg.version}  {a.description}")


def _register_command_modules() -> None:
    import importlib
    import pkgutil

    import harness.commands

    for mod in sorted(pkgutil.iter_modules(harness.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"harness.commands.{mod.name}").register(app)


_register_command_modules()


RESUME = "interrupted: re-run the same command to resume (finished batches are cached)"


def _os_error(exc: OSError) -> str:
    """One line for a failed read or write: which file, why, and what to do."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"error: no space left writing{where} ({exc.strerror}); fix: free disk space (or point --out / "
                "HARNESS_HOME elsewhere) and re-run the same command: finished batches are cached")
    return f"error: cannot access{where}: {exc.strerror or exc}; fix: check the path and its permissions"


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, other click errors) of click and of the copy of click typer may carry."""
    import click

    usage, other = [click.UsageError], [click.ClickException]
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # a typer that uses click itself
        vendored = None
    if vendored is not None:
        usage.append(vendored.UsageError)
        other.append(vendored.ClickException)
    return tuple(usage), tuple(other)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 ok, 1 failed gate, 2 bad input, 130 interrupted. `--debug` adds a
    traceback to an error and never changes the exit code CI sees."""
    import traceback

    import click

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv

    def fail(line: str, code: int) -> None:
        if debug:
            traceback.print_exc()
        _err(line)
        sys.exit(code)

    usage, other = _click_errors()
    try:
        rc = app(args=argv, prog_name="harness", standalone_mode=False)
    except HarnessError as exc:
        fail(f"error: {exc}", exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        fail(RESUME, 130)
    except usage as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `harness CMD`: its help is the answer
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if getattr(exc, "ctx", None) else "harness"
        fail(f"error: {exc.format_message().rstrip('.')}; fix: see `{where} --help`", 2)
    except other as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OSError as exc:  # a file the checks up front could not foresee: disk full, vanished folder
        fail(_os_error(exc), 2)
    if rc == 130:  # typer turns Ctrl-C into a silent Exit(130); the user must still learn how to resume
        _err(RESUME)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
