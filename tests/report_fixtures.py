"""Synthetic run folders for the HTML report tests (built on tests/runlog_factory.py).

`rich_run` has every section the report knows: a suite with word-level changes, judge
scores and rationales, leak labels with leaks.jsonl evidence, MMLU subjects, HellaSwag,
a training block and, optionally, a gate verdict. `payloads=True` plants HTML/script
injection strings in outputs, references, rationales, ids, task and subject names.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable

from harness.log.folder import LEAKS, RunFolder
from harness.log.schema import LeakRecord, RunMeta
from tests.runlog_factory import TaskSpec, binary_pair, write_run

# Each payload sets window.__pwned if the page ever runs it as code.
PAYLOADS = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "'><svg onload=window.__pwned=1>",
    "javascript:window.__pwned=1",
    "</script><script>window.__pwned=1</script>",
    "<!--<script>window.__pwned=1</script>-->",
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
]
PLANTED = "zebra-quokka-7731"  # a string that appears in exactly one adapter output

WORDS = ("the a river city model answer paris france capital blue quickly seven report data north "
         "engine table light summer winter ocean train value method result simple language history").split()

POLICY = """version: 1
rules:
  - {name: squad-f1-no-drop, task: squad-qa, metric: f1, max_drop: 1.0}
  - {name: mmlu-subjects, task: mmlu, metric: acc, per_subject_max_drop: 10.0}
"""


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _patch_items(run: Path, patch: Callable[[dict[str, Any], int], None]) -> None:
    folder = RunFolder(run)
    lines = [r.model_dump(exclude_unset=True) for r in folder.read_items()]
    for n, rec in enumerate(lines):
        patch(rec, n)
    folder.write_run(folder.read_meta(), lines)


def _patch_meta(run: Path, **keys: Any) -> None:
    folder = RunFolder(run)
    meta = folder.read_meta().model_dump(exclude_unset=True)
    folder.write_meta(RunMeta.model_validate({**meta, **keys}))


def suite_task(n: int, *, name: str = "squad-qa", worse: int = 6, better: int = 3, seed: int = 0,
               payloads: bool = False, words: int = 12, judge: bool = True) -> TaskSpec:
    """A generative suite: EM flips (worse/better), F1 following EM, outputs that differ by words."""
    rng = random.Random(seed)
    em_b, em_a = binary_pair(n, 0.5, worse, better, seed=seed + 1)
    refs, base_p, ft_p = [], [], []
    for i in range(n):
        ref = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
        filler = _sentence(rng, words)
        b = ref if em_b[i] else f"{filler} {i}"
        if em_a[i]:
            a = ref
        elif em_b[i] == em_a[i]:  # both wrong: the adapter adds a word
            a = f"{filler} {rng.choice(WORDS)} {i}"
        else:  # a flip: a different answer
            a = f"{_sentence(rng, 4)} {filler}"
        refs.append([ref])
        base_p.append(b)
        ft_p.append(a)
    f1_b = [1.0 if e else 0.25 for e in em_b]
    f1_a = [1.0 if e else 0.25 for e in em_a]
    if payloads:
        for k, p in enumerate(PAYLOADS):
            base_p[k] = f"base says {p}"
            ft_p[k] = f"adapter says {p} and more"
            refs[k] = [p, f"alt {p}"]
    ft_p[n - 1] = f"{ft_p[n - 1]} {PLANTED}"
    base = {"exact_match": em_b, "f1": f1_b}
    ft = {"exact_match": em_a, "f1": f1_a}
    if judge:
        base["judge:helpfulness"] = [0.5 + 0.5 * e for e in em_b]
        ft["judge:helpfulness"] = [0.5 + 0.5 * e for e in em_a]
        ft["judge:pairwise"] = [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in zip(em_a, em_b, strict=True)]
    leak = ["contaminated" if i % 11 == 3 else "suspect" if i % 7 == 2 else "clean" for i in range(n)]
    ids = [f"q{i:05d}" for i in range(n)]
    if payloads:
        ids[1] = PAYLOADS[1]
    return TaskSpec(name=name, scores={"base": base, "ft": ft}, predictions={"base": base_p, "ft": ft_p},
                    references=refs, leak=leak, item_ids=ids)


def mmlu_task(per_subject: int = 20, subjects: list[str] | None = None, seed: int = 3) -> TaskSpec:
    subjects = subjects or ["abstract_algebra", "anatomy", "astronomy", "college_biology", "virology"]
    names = [s for s in subjects for _ in range(per_subject)]
    n = len(names)
    base, ft = binary_pair(n, 0.45, 0, 0, seed=seed)
    # The first subject loses a lot (a forgetting story), the last one gains a little.
    for i, s in enumerate(names):
        if s == subjects[0] and base[i] == 1.0 and i % 3:
            ft[i] = 0.0
        if s == subjects[-1] and base[i] == 0.0 and i % 4 == 0:
            ft[i] = 1.0
    # The answer key is choice 0; wrong answers pick another choice.
    preds = {"base": ["0" if v else "2" for v in base], "ft": ["0" if v else "3" for v in ft]}
    return TaskSpec(name="mmlu", kind="bench", scores={"base": {"acc": base}, "ft": {"acc": ft}}, subjects=names,
                    predictions=preds, references=[["0"]] * n,
                    item_ids=[f"{s}:{i}" for i, s in enumerate(names)])


def hellaswag_task(n: int = 40, seed: int = 5) -> TaskSpec:
    acc = binary_pair(n, 0.4, 3, 1, seed=seed)
    norm = binary_pair(n, 0.5, 2, 2, seed=seed + 1)
    preds = {m: [str(int(v)) for v in acc[k]] for k, m in enumerate(("base", "ft"))}
    return TaskSpec(name="hellaswag", kind="bench", scores={"base": {"acc": acc[0], "acc_norm": norm[0]},
                                                            "ft": {"acc": acc[1], "acc_norm": norm[1]}},
                    predictions=preds, references=[["1"]] * n)


TRAINING = {
    "adapter": "ft",
    "loss_curve": [{"step": s, "loss": 2.6 * (0.985 ** s) + 0.4,
                    **({"val_loss": 2.7 * (0.987 ** s) + 0.5} if s % 50 == 0 else {})} for s in range(0, 401, 10)],
    "hyperparameters": {"learning_rate": 2e-4, "lora": {"r": 8, "alpha": 16}, "epochs": 2, "batch_size": 16},
    "data_hash": "5f1d0c3a" * 8,
    "wall_s": 812.4,
    "tokens_per_s": 1534.2,
}


def rich_run(out: Path, *, n: int = 60, payloads: bool = False, gate: bool = True, training: bool = True,
             leaks: bool = True) -> Path:
    """A comparison run with every report section (see the module docstring)."""
    suite = suite_task(n, payloads=payloads)
    mmlu = mmlu_task()
    if payloads:
        suite.name = "squad-qa" + PAYLOADS[0]
        mmlu.subjects = [PAYLOADS[2] if s == "anatomy" else s for s in mmlu.subjects]
    tasks = [suite, mmlu, hellaswag_task()]
    if not leaks:
        suite.leak = None
    write_run(out, tasks)
    rng = random.Random(11)

    def patch(rec: dict[str, Any], _: int) -> None:
        if rec["kind"] == "suite":
            rec["latency_s"] = round(rng.uniform(0.2, 0.6) * (1.3 if rec["model"] == "ft" else 1.0), 4)
            rec["new_tokens"] = len(rec["prediction"].split()) + 2
            if "judge:helpfulness" in rec["scores"]:
                why = "answers the question directly" if rec["scores"]["judge:helpfulness"] == 1 else "misses the point"
                if payloads and rec["item_id"] == "q00000":
                    why += " " + PAYLOADS[4]
                rec["rationales"] = {"judge:helpfulness": why}
                if rec["model"] == "ft":
                    rec["rationales"]["judge:pairwise"] = "prefers the more specific answer"

    _patch_items(out, patch)
    extra: dict[str, Any] = {}
    if training:
        extra["training"] = TRAINING
    if leaks:
        labels = suite.leak or []
        counts = {lab: labels.count(lab) for lab in ("clean", "suspect", "contaminated")}
        extra["leaks"] = {"schema_version": 1, "label_rule": "contaminated: 50%+ of the item's 8-grams in training",
                          "training": {"sha256": "ab" * 32, "files": []},
                          "counts": {suite.name: {"kind": "suite", "n": n, **counts}}, "totals": {"n": n, **counts}}
        records = []
        for i, lab in enumerate(labels):
            ev = [] if lab == "clean" else [{"detector": "ngram", "source": "train.jsonl", "row": 100 + i,
                                              "match_tokens": 13, "item_tokens": [0, 13],
                                              "span": (PAYLOADS[3] + " ") * payloads + f"quoted training text {i}"}]
            records.append(LeakRecord(task=suite.name, item_id=suite.item_ids[i], kind="suite", label=lab,
                                      evidence=ev))
        RunFolder(out).write_text(LEAKS, "".join(r.model_dump_json(exclude_unset=True) + "\n" for r in records))
    if extra:
        _patch_meta(out, **extra)
    if gate:
        from harness.pipeline import gate_run

        policy = out.parent / f"{out.name}-policy.yaml"
        policy.write_text(POLICY.replace("squad-qa", suite.name) if not payloads else
                          POLICY.replace("task: squad-qa", f"task: {json.dumps(suite.name)}"))
        gate_run(out, policy)
    return out


def big_run(out: Path, n: int = 10_000, words: int = 40) -> Path:
    """A 10k-item suite comparison with realistic output lengths (about 40 words each)."""
    write_run(out, [suite_task(n, worse=n // 20, better=n // 40, words=words, judge=False)])
    return out


def base_only_run(out: Path, n: int = 12) -> Path:
    """A `harness run` folder: one model, no comparison."""
    task = suite_task(n, judge=False)
    task.scores = {"base": task.scores["base"]}
    task.predictions = {"base": task.predictions["base"]}
    task.leak = None
    write_run(out, [task])
    return out
