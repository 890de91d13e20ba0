"""`harness calibrate`: score one model twice (other batch sizes, shuffled order, no cache) and
write the drift between the two runs as a noise floor (see `harness.analysis.noise`)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from harness.analysis.noise import SCHEMA, drift
from harness.errors import ConfigError


def calibrate(model: str, *, out: Path, suites: list[str], benches: list[str] | None = None,
              adapter: str | None = None, batch_sizes: tuple[int, int] = (16, 3), limit: int | None = None,
              limit_per_subject: int | None = None, num_fewshot: int = 0, dtype: str = "float32", device: str = "auto", seed: int = 0,
              trust_code: list[Path] | None = None, allow_pickle: bool = False, trust_remote_code: bool = False,
              runs_dir: Path | None = None, command: list[str] | None = None,
              warn: Callable[[str], None] | None = None, shuffle: bool = True, force: bool = False) -> dict[str, Any]:
    """Scores one model twice (different batch sizes, no cache) and writes the drift to `out`.

    Args:
        model: Base model (folder, .gguf, asset name or hub id).
        out: JSON file to write.
        suites: Suites to score.
        benches: Benchmarks to score; passed to the run only when given.
        adapter: Calibrate this adapter (on `model`) instead of the bare base.
        batch_sizes: The two batch sizes; they must differ.
        limit: Items per suite/benchmark.
        limit_per_subject: Seeded sample of N items per benchmark subject (benchmarks only).
        num_fewshot: Few-shot examples for benchmarks.
        dtype: Model dtype.
        device: Where the model runs (auto | cpu | cuda | cuda:N | mps).
        seed: Run seed.
        trust_code: Suite folders whose python hook may run.
        allow_pickle: Allow pickle checkpoints.
        trust_remote_code: Allow models that ship code.
        runs_dir: Keep the two run folders here; default: a temporary folder, removed.
        command: The command line, recorded in each run.json.
        warn: Warning printer.
        shuffle: Score the second run in a seeded shuffled item order (batch composition).

    Returns:
        The document written to `out`.
    """
    from harness.evaluate.run import RunConfig, execute

    if batch_sizes[0] == batch_sizes[1]:
        raise ConfigError(f"calibration batch sizes must differ, got {batch_sizes[0]} twice",
                          "pass two different sizes, e.g. --batch-sizes 16,3")
    if not suites and not benches:
        raise ConfigError("nothing to calibrate", "pass --suite NAME and/or --bench NAME")
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    if benches and "benches" not in fields:
        raise ConfigError("this harness build cannot run benchmarks yet (RunConfig has no `benches`)",
                          "calibrate with --suite only, or update harness")
    # Benchmark options travel only with --bench, so a suite-only calibration works on any build.
    bench_options = {"benches": list(benches)} if benches else {}
    if benches and num_fewshot:
        bench_options["num_fewshot"] = num_fewshot
    if benches and limit_per_subject is not None:
        bench_options["limit_per_subject"] = limit_per_subject
    from harness.outputs.guard import check_dir, check_file, starts_with

    out = check_file(out, force=force, ours=starts_with(f'"schema": "{SCHEMA}"'.encode()))
    if runs_dir is not None:
        check_dir(runs_dir, "--keep-runs")
    keep = runs_dir is not None
    root = Path(runs_dir) if keep else Path(tempfile.mkdtemp(prefix="harness-calibrate-"))
    try:
        dirs = []
        for i, bs in enumerate(batch_sizes):
            kwargs: dict[str, Any] = dict(
                base=model, out=root / f"run{i + 1}-bs{bs}", adapters=[adapter] if adapter else [],
                suites=list(suites), limit=limit, include_base=not adapter, batch_size=bs, dtype=dtype, device=device, seed=seed,
                allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, trust_code=list(trust_code or []),
                use_cache=False, force=True, command=list(command or []),
                order_seed=seed + 1 if shuffle and i == 1 else None)
            kwargs.update(bench_options)
            execute(RunConfig(**kwargs), warn=warn)
            dirs.append(kwargs["out"])
        doc = drift(dirs[0], dirs[1])
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    doc = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model": model, "adapter": adapter,
           "limit": limit, "suites": list(suites), "benches": list(benches or []),
           "item_order": ["length-sorted", f"shuffled (seed {seed + 1})" if shuffle else "length-sorted"],
           **{k: v for k, v in bench_options.items() if k != "benches"},
           **{k: v for k, v in doc.items() if k != "schema"}}
    if keep:
        doc["runs"] = [str(d) for d in dirs]
    from harness.log.folder import atomic_write

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, [json.dumps(doc, indent=2) + "\n"])
    return doc
