"""Orchestration: stream training files through the detectors, label every eval item.

The work splits into three pure pieces, which is what lets the same scan run on a
cluster engine (docs/leaks-at-scale.md):

* `build_index(items, config)`: the eval-side index, built once, broadcast;
* `scan_block(texts, index, source, seq) -> Partial` (harness.leaks.blocks): the map
  step, one block of training rows against the index;
* `Partial.merge`: associative, commutative reduce (set unions, maxima, top-k evidence).

`scan()` runs the map step over local files on a process pool (both cores by default),
folds the partials into dense per-item arrays, and turns them into per-item records with
a label (harness.leaks.report, where the labelling rule is).

"contaminated" needs most of the item to be in training (copied, lightly edited or
reordered); "suspect" is partial or statistical evidence worth a look, and the clean
subset used for deltas excludes both.
"""

from __future__ import annotations

import collections
import datetime
import os
import sys
import threading
import time
from typing import Callable, Iterable, Sequence

from harness.errors import HarnessError
from harness.hashing import sha256_files
from harness.leaks.blocks import Accumulator, Partial, scan_block
from harness.leaks.fields import FieldMap
from harness.leaks.index import EvalIndex, LeakConfig, build_index
from harness.leaks.io import Source, open_source
from harness.leaks.items import EvalItem
from harness.leaks.report import LeakReport, item_records, scan_summary
from harness.leaks.tasks import BadRecord, Task, line_of_offset, plan_tasks, read_task
from harness.leaks.temporal import add_temporal, parse_cutoff, resolve_cutoff

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------- workers

_WORKER_INDEX: EvalIndex | None = None


def _init_worker(index: EvalIndex) -> None:
    import signal

    global _WORKER_INDEX
    _WORKER_INDEX = index
    # Ctrl-C is the parent's to handle (it cancels the pool); workers would only print
    # one traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_task(task: Task, index: EvalIndex | None = None) -> Partial:
    index = index if index is not None else _WORKER_INDEX
    assert index is not None, "worker started without an index"
    block = read_task(task)
    part = scan_block(block.texts, index, task.source.index, task.seq)
    part.rows[(task.source.index, task.seq)] = (-1 if task.row_start is None else task.row_start, block.n_rows)
    part.stats.update(bytes=task.size, empty_rows=block.empty_rows)
    return part


def _pool(workers: int, index: EvalIndex):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    methods = mp.get_all_start_methods()
    # fork shares the index copy-on-write at no cost; once torch is loaded its thread
    # pools make fork unsafe, so a model-holding caller gets forkserver (index pickled once per worker).
    if "fork" in methods and "torch" not in sys.modules:
        ctx = mp.get_context("fork")
    elif "forkserver" in methods:
        ctx = mp.get_context("forkserver")
    else:
        ctx = mp.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(index,))


def _bad_record(exc: BadRecord) -> HarnessError:
    where = exc.path
    if exc.byte_offset >= 0:
        try:
            where = f"{exc.path}:{line_of_offset(exc.path, exc.byte_offset)}"
        except OSError:
            where = f"{exc.path} (byte {exc.byte_offset})"
    return HarnessError(f"training data {where}: {exc.reason}", "fix or remove that line")


def scan(train: str | os.PathLike | Sequence[str | os.PathLike], items: Iterable[EvalItem],
         config: LeakConfig | None = None, *, fields: FieldMap | None = None, workers: int = 2,
         progress: ProgressFn | None = None, index: EvalIndex | None = None,
         train_cutoff: str | datetime.date | None = None) -> LeakReport:
    """Scan training files for every eval item and label each one.

    Args:
        train: One or more training files or `save_to_disk` folders (see harness.leaks.io).
        items: Eval items (`suite_items`, `bench_items`).
        config: Detector settings (defaults: the published rules, MinHash on).
        fields: Field mapping for every file; None to detect it per file.
        workers: Processes for the map step; 1 runs in this process.
        progress: Called as progress(done_bytes, total_bytes) after every block.
        index: A prebuilt index over `items` (its config wins), to scan several
            training sets against the same items.
        train_cutoff: The last day the training data covers (`--train-cutoff`); None to
            take the latest `date` of the training rows when some item is dated
            (harness.leaks.temporal).

    Returns:
        LeakReport with one record per item, in item order.

    Raises:
        HarnessError: unreadable training data, unknown field, malformed record, bad date.
    """
    t0 = time.perf_counter()
    cutoff = parse_cutoff(train_cutoff)
    paths = [train] if isinstance(train, (str, os.PathLike)) else list(train)
    if not paths:
        raise HarnessError("no training data given", "pass --train FILE (repeatable)")
    sources = [open_source(p, fields, i) for i, p in enumerate(paths)]
    if index is None:
        index = build_index(list(items), config)
    cfg = index.config
    index_s = time.perf_counter() - t0
    acc = Accumulator(index)
    total = sum(s.size for s in sources)
    done = 0

    def step(part: Partial, size: int) -> None:
        nonlocal done
        acc.add(part)
        done = min(done + size, total)
        if progress is not None:
            progress(done, total)

    workers = max(1, int(workers))
    hashes = _run(sources, index, workers, step)
    records = item_records(acc, index, sources)
    summary = scan_summary(records, cfg, sources, hashes, acc, time.perf_counter() - t0, workers, index_s)
    report = LeakReport(records, summary)
    cutoff, cutoff_source, found = resolve_cutoff(cutoff, index.items, sources)
    if cutoff is not None or found is not None:
        add_temporal(report, index.items, cutoff, cutoff_source, found)
    return report


def _run(sources: list[Source], index: EvalIndex, workers: int, step: Callable[[Partial, int], None]) -> dict[int, str]:
    """Every task of every source through the map step, folded by `step`, while a thread
    hashes the files; returns sha256 per source number.

    Raises:
        HarnessError: a malformed record, or a file that could not be hashed.
    """
    hashes: dict[int, str] = {}
    hash_err: list[BaseException] = []

    def hash_all() -> None:
        try:
            for s in sources:
                hashes[s.index] = sha256_files(s.files)
        except BaseException as exc:  # reported after the scan
            hash_err.append(exc)

    tasks = (task for s in sources for task in plan_tasks(s, index.config.chunk_bytes))
    hasher = threading.Thread(target=hash_all, daemon=True)
    try:
        if workers == 1:
            hasher.start()
            for task in tasks:
                step(_run_task(task, index), task.size)
        else:
            _run_pool(tasks, index, workers, step, hasher)
        hasher.join()
    except BadRecord as exc:
        raise _bad_record(exc) from None
    if hash_err:
        raise HarnessError(f"training data could not be hashed: {hash_err[0]}", "check the file is readable")
    return hashes


def _run_pool(tasks: Iterable[Task], index: EvalIndex, workers: int, step: Callable[[Partial, int], None],
              hasher: threading.Thread) -> None:
    pool = _pool(workers, index)
    # The hashing thread starts after the pool: forking a process with live threads is
    # unsafe. hashlib releases the GIL, so it overlaps the scan.
    try:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append((pool.submit(_run_task, task), task.size))
            if hasher.ident is None:
                hasher.start()
            # Bounded read-ahead: parents that ship batches must not buffer a file.
            while len(pending) >= 2 * workers:
                fut, size = pending.popleft()
                step(fut.result(), size)
        while pending:
            fut, size = pending.popleft()
            step(fut.result(), size)
        if hasher.ident is None:
            hasher.start()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
