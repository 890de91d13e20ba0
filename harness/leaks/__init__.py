"""Leak detection between an adapter's training data and the eval items.

    from harness.leaks import scan, suite_items, bench_items, write_leaks, label_map

    items = suite_items("data2text") + bench_items("mmlu", limit=20)
    report = scan(["train.jsonl"], items, workers=2)
    write_leaks("runs/leaks", report)          # leaks.jsonl + leaks.json
    labels = label_map(report)                 # {(task, item_id): "clean" | "suspect" | "contaminated"}

Modules: `fields` (which fields hold the text), `io` (training sources), `tasks` (blocks
for the workers), `normalize`, `ngrams` (hashed n-grams), `index` (the
eval-side index and LeakConfig), `overlap` (GPT-3 / PaLM / Llama 2 n-gram rules),
`minhash` (near-duplicates), `exact` (normalised exact copies, for items too short for
n-grams; also `harness train`'s overlap check), `membership` (Min-K% under adapter vs base; imports torch
only when called), `blocks` (the map step and its reduce), `scan` (orchestration on a
process pool), `report` (records, labels, summary, files), `items` (eval items),
`contamination` (input-only vs input+answer copies), `temporal` (dates against the
training cutoff).
"""

from harness.leaks.fields import FieldMap, parse_field_specs
from harness.leaks.index import EvalIndex, LeakConfig, build_index
from harness.leaks.items import (BENCH_TASKS, EvalItem, bench_items, eval_items, is_bench_task, parse_bench_list,
                                 suite_items)
from harness.leaks.blocks import Partial, scan_block
from harness.leaks.report import (LABEL_RULE, LABELS, LeakReport, add_membership, finish, label_map, label_of,
                                  load_leaks, write_leaks)
from harness.leaks.scan import scan

__all__ = [
    "BENCH_TASKS", "EvalIndex", "EvalItem", "FieldMap", "LABELS", "LABEL_RULE", "LeakConfig", "LeakReport", "Partial",
    "add_membership", "bench_items", "build_index", "eval_items", "finish", "is_bench_task", "label_map", "label_of",
    "load_leaks", "parse_bench_list", "parse_field_specs", "scan", "scan_block", "suite_items", "write_leaks",
]
