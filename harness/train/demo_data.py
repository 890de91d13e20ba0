"""The demo's disjoint train / validation / eval split of the offline SQuAD items.

    from harness.train.demo_data import make_demo_split
    split = make_demo_split("runs/demo/data")        # -> DemoSplit
    split.train_file, split.suite_dir, split.eval_ids

    python -m harness.train.demo_data --out runs/demo/data

How the 1,000 SQuAD v1.1 validation questions of the `squad` asset are split:

* Questions are grouped by their background paragraph (`context`): SQuAD asks up to 5
  questions about one paragraph, and a model trained on one of them has read the
  paragraph the others are answered from. A whole group goes to one side, so no eval
  context is ever seen in training (different paragraphs of one article may fall on
  different sides; they share a title, not text).
* Groups are ordered by sha256("harness-demo-split:" + context), a fixed pseudo-random
  order that does not depend on the file order, and dealt out in that order: the first
  groups to the eval side until it holds `n_eval` questions, the next ones to
  validation until `n_val`, the next ones to training until `n_train`. The rest is
  unused. Sizes are therefore "at least n" by whole groups.

Files written to OUT:

* train.jsonl, val.jsonl: chat records `{"id", "messages": [user, assistant]}` whose user
  turn is the bundled squad-qa prompt rendered by the suite itself
  (`load_suite("squad-qa").render`), so training and evaluation prompts are identical
  token for token, and whose assistant turn is the shortest gold answer (EM and F1 take
  the best match over all gold answers, so the shortest span is a correct target and
  the briefest style to learn).
* squad-qa-heldout/suite.yaml + eval.jsonl: a suite identical to squad-qa (same prompt,
  generation and metrics) over the eval questions only, in squad.jsonl's record format;
  its few-shot pool (fewshot.jsonl, for `compare --baseline fewshot:K`) is the val side.
  Pass the folder to `--suite`; `harness train --eval-suite` on it refuses training
  data that contains its items.
* split.json: sizes, seeds, and the ids and contexts (hashes) of every side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

SALT = "harness-demo-split:"
SUITE = "squad-qa"
HELDOUT_SUITE = "squad-qa-heldout"
# Sized so that SmolLM2-135M learns the short-answer style in about two minutes of CPU
# training (see DEMO_TRAIN_CONFIG) with a held-out set large enough for paired statistics.
N_TRAIN = 192
N_VAL = 24
N_EVAL = 200

# Hyperparameters measured on the demo split (2-core CPU, bf16 autocast); `harness train`
# options or a YAML file with these keys reproduce them. 24 optimizer steps of 8 sequences
# (one epoch), in micro-batches of 4 so activations stay near 4 GB; max_length 640 keeps
# the longest prompt (574 tokens) whole.
DEMO_TRAIN_CONFIG: dict[str, Any] = {
    "rank": 8, "alpha": 16, "dropout": 0.0, "lr": 1.0e-3, "epochs": 1, "batch_size": 4, "grad_accum": 2,
    "scheduler": "linear", "warmup_steps": 2, "max_length": 640, "eval_every": 8, "dtype": "bfloat16", "seed": 0,
}


@dataclass
class DemoSplit:
    """Paths and ids of a written split.

    Attributes:
        out: The folder.
        train_file: Chat JSONL for `harness train --data`.
        val_file: Chat JSONL for `val_data`.
        suite_dir: The held-out suite folder (for `--suite` / `--eval-suite`).
        eval_ids: SQuAD ids of the eval questions, in file order.
        train_ids: SQuAD ids of the training questions.
        config_file: YAML with DEMO_TRAIN_CONFIG plus data and val_data.
    """

    out: Path
    train_file: Path
    val_file: Path
    suite_dir: Path
    eval_ids: list[str]
    train_ids: list[str]
    config_file: Path


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the prompt template) as readable `|` blocks."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value.strip() else ('"' if "\n" in value else None)  # a stop "\n" stays "\n"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


def _order_key(context: str) -> str:
    return hashlib.sha256((SALT + context).encode("utf-8")).hexdigest()


def split_groups(records: list[dict[str, Any]], n_eval: int, n_val: int, n_train: int) -> dict[str, list[dict]]:
    """Deal whole context groups to eval, val and train (see the module doc)."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["context"], []).append(r)
    sides: dict[str, list[dict]] = {"eval": [], "val": [], "train": []}
    wanted = [("eval", n_eval), ("val", n_val), ("train", n_train)]
    side = 0
    for context in sorted(groups, key=_order_key):
        while side < len(wanted) and len(sides[wanted[side][0]]) >= wanted[side][1]:
            side += 1
        if side == len(wanted):
            break
        sides[wanted[side][0]].extend(groups[context])
    for name, n in wanted:
        if len(sides[name]) < n:
            raise ConfigError(f"the SQuAD data has too few questions for the demo split ({name}: "
                              f"{len(sides[name])} < {n})", "ask for smaller sizes")
    return sides


def _chat_record(suite, example) -> dict[str, Any]:
    prompt = suite.render(example)
    turns = [{"role": r, "content": c} for r, c in prompt.messages] if prompt.messages else \
        [{"role": "user", "content": prompt.text}]
    answer = min(example.references, key=lambda a: (len(a), a))
    return {"id": example.id, "messages": turns + [{"role": "assistant", "content": answer}]}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def make_demo_split(out_dir: str | Path, n_train: int = N_TRAIN, n_val: int = N_VAL, n_eval: int = N_EVAL) -> DemoSplit:
    """Write the demo's train/val/eval files (deterministic; rewriting gives identical bytes).

    Args:
        out_dir: Folder to write into (created).
        n_train, n_val, n_eval: Minimum questions per side (whole context groups).

    Raises:
        AssetError: the `squad` asset is not pulled (`harness assets pull squad`).
    """
    from harness.evaluate.suites import load_suite

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suite = load_suite(SUITE)
    raw = [json.loads(line) for line in suite.data_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    sides = split_groups(raw, n_eval, n_val, n_train)
    # every record, the suite's few-shot pool included: the demo deals from the whole file
    examples = {ex.id: ex for ex in suite.examples() + (suite.fewshot_pool() if suite.has_fewshot_pool else [])}

    _write_jsonl(out / "train.jsonl", [_chat_record(suite, examples[r["id"]]) for r in sides["train"]])
    _write_jsonl(out / "val.jsonl", [_chat_record(suite, examples[r["id"]]) for r in sides["val"]])

    suite_dir = out / HELDOUT_SUITE
    suite_dir.mkdir(exist_ok=True)
    _write_jsonl(suite_dir / "eval.jsonl", sides["eval"])
    # the few-shot pool of `compare --baseline fewshot:K` is the validation side: solved, never evaluated
    _write_jsonl(suite_dir / "fewshot.jsonl", sides["val"])
    doc = yaml.safe_load(suite.yaml_path.read_text(encoding="utf-8"))
    doc.update(name=HELDOUT_SUITE, data={"file": "eval.jsonl"},
               description=f"squad-qa on the {len(sides['eval'])} demo eval questions (contexts never in training)",
               fewshot={"file": "fewshot.jsonl", "disjoint_on": ["context"]})
    (suite_dir / "suite.yaml").write_text(
        "# Written by harness.train.demo_data: the squad-qa suite over the demo's held-out questions.\n"
        + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True), encoding="utf-8")

    config = dict(DEMO_TRAIN_CONFIG, data="train.jsonl", val_data="val.jsonl")
    (out / "train.yaml").write_text("# harness train settings for the demo split (paths relative to this file)\n"
                                    + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    info = {
        "source": {"asset": "squad", "file": str(suite.data_path), "sha256": suite.data_hash,
                   "questions": len(raw), "contexts": len({r["context"] for r in raw})},
        "rule": "whole context groups ordered by sha256('harness-demo-split:' + context), dealt to eval, val, "
                "train in that order until each reaches its size",
        "sizes": {k: len(v) for k, v in sides.items()},
        "contexts": {k: len({r["context"] for r in v}) for k, v in sides.items()},
        "ids": {k: [r["id"] for r in v] for k, v in sides.items()},
        "prompt": f"rendered by load_suite('{SUITE}').render(example); assistant turn = shortest gold answer",
    }
    (out / "split.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return DemoSplit(out=out, train_file=out / "train.jsonl", val_file=out / "val.jsonl", suite_dir=suite_dir,
                     eval_ids=info["ids"]["eval"], train_ids=info["ids"]["train"], config_file=out / "train.yaml")


def main(argv: list[str] | None = None) -> None:
    """`python -m harness.train.demo_data --out DIR`: write the split, print where."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--n-train", type=int, default=N_TRAIN)
    ap.add_argument("--n-val", type=int, default=N_VAL)
    ap.add_argument("--n-eval", type=int, default=N_EVAL)
    args = ap.parse_args(argv)
    split = make_demo_split(args.out, args.n_train, args.n_val, args.n_eval)
    print(f"train: {split.train_file} ({len(split.train_ids)} questions)")
    print(f"eval suite: {split.suite_dir} ({len(split.eval_ids)} questions)")
    print(f"settings: {split.config_file}")


if __name__ == "__main__":
    main()
