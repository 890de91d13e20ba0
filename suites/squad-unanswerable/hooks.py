"""squad-unanswerable: each SQuAD question paired with a background that cannot answer it.

`transform(record)` keeps the question and swaps its context for another one, picked
deterministically (seeded by the question id) among the asset's distinct contexts that

- come from another article (title) than the question's own, and
- contain none of the question's gold answers, compared case-insensitively as whole words:
  neither in the raw text ("23" is found in "by 23 years", not in "1923") nor after SQuAD
  normalisation of both (lowercase, no punctuation or articles: "U.S." is found in "the US").
  A gold answer that normalises to nothing (SQuAD has a '.') is skipped.

The walk starts at sha256(SEED | id) modulo the pool size and takes the first context that
passes. The pool is read once from the same asset file as the suite's `data:` (squad.jsonl);
this file's bytes are in the suite fingerprint, so a change of SEED or of the rule changes it.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from harness.evaluate.metrics.squad import normalize_answer
from harness.evaluate.suites.lookup import asset_path
from harness.io import read_records

SEED = "squad-unanswerable/1"
ASSET, PATH = "squad", "squad.jsonl"  # must match the suite's data: asset/path
REFERENCE = "unanswerable"


def pool() -> tuple[tuple[str, str, str], ...]:
    """(title, context, id of the first question asked on it) per distinct context, file order."""
    path = asset_path(ASSET) / PATH
    stat = path.stat()
    return _pool(str(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _pool(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, str, str], ...]:
    seen: dict[str, tuple[str, str, str]] = {}
    for _, rec in read_records(path, "jsonl"):
        seen.setdefault(rec["context"], (rec["title"], rec["context"], str(rec["id"])))
    return tuple(seen.values())


def contains_answer(context: str, answers: list[str]) -> bool:
    """Whether any gold answer occurs in the context as whole words (raw, or both SQuAD-normalised)."""
    low = context.casefold()
    norm = f" {normalize_answer(context)} "
    for answer in answers:
        words = normalize_answer(answer)
        if not words:  # blank or punctuation-only gold (SQuAD has a '.'): no answer to hide
            continue
        raw = re.compile(r"(?<!\w)" + re.escape(answer.strip().casefold()) + r"(?!\w)")
        if raw.search(low) or f" {words} " in norm:
            return True
    return False


def pair(question_id: str, title: str, answers: list[str]) -> tuple[str, str, str]:
    """(title, context, source id) of the background paired with this question.

    Raises:
        ValueError: no context in the pool qualifies (never the case for the SQuAD asset).
    """
    contexts = pool()
    start = int(hashlib.sha256(f"{SEED}|{question_id}".encode()).hexdigest(), 16) % len(contexts)
    for k in range(len(contexts)):
        cand = contexts[(start + k) % len(contexts)]
        if cand[0] != title and not contains_answer(cand[1], answers):
            return cand
    raise ValueError(f"no context without the answers of question {question_id}")


def transform(record: dict) -> dict:
    qid = str(record["id"])
    title, context, source = pair(qid, record["title"], list(record["answers"]))
    return {
        "id": qid,
        "question": record["question"],
        "context": context,
        "context_from": source,
        "context_title": title,
        "answers": list(record["answers"]),  # the gold answers of the original pairing: absent here
        "reference": REFERENCE,
    }
