"""From folded detector results to a LeakReport: per-item records, labels, summary, files.

Labels combine the detectors as follows (LABEL_RULE, also written to the log):

* contaminated: PaLM 8-gram coverage >= 70%, or Llama 2 token coverage > 80% (dirty),
  or > 80% Llama 2 coverage of a gold answer of >= 10 tokens on its own (a reference
  summary or the correct ending copied as a training target), or a MinHash
  near-duplicate (estimated Jaccard >= 0.5) of the item in training, or an exact
  (normalised) copy of the item or of one of its inputs with an answer, or of an input
  covering > 80% of the item (harness.leaks.exact; what finds items under 8 tokens);
* suspect: not contaminated, but a 13-gram match (GPT-3 rule), or Llama 2 token coverage
  >= 20% (not clean), or an exact copy of an input covering >= 20% of the item, or a
  Min-K% membership outlier (adapter vs base);
* clean: none of these.

A contaminated item also records which kind of contamination was found (`contamination`:
`input_only` or `input_answer`, the rule in harness.leaks.contamination) and, for
`input_answer`, the first training row holding its input with a gold answer (`answer_row`).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.leaks.blocks import Accumulator, Partial
from harness.leaks.contamination import KINDS as CONTAMINATION
from harness.leaks.fields import FieldMap
from harness.leaks.index import EvalIndex, LeakConfig
from harness.leaks.io import Source

SCHEMA_VERSION = 1
LABELS = ("clean", "suspect", "contaminated")
LABEL_RULE = (
    "contaminated: PaLM {palm_n}-gram coverage >= {palm_threshold:.0%} or Llama-2 token coverage "
    "(matches >= {llama_min_match} tokens) > {llama_dirty:.0%} of the item or of a gold answer of >= "
    "{llama_min_match} tokens, or MinHash near-duplicate (estimated Jaccard >= {minhash_threshold}), or an exact "
    "normalised copy of the item or of an input with its answer (a whole training row, or inside one when >= "
    "{exact_min_tokens} and < {palm_n} tokens), or a row equal to an input covering > {llama_dirty:.0%} of the item; "
    "suspect: otherwise a {gpt3_n}-gram match (GPT-3), Llama-2 coverage >= {llama_clean:.0%}, a row equal to "
    "an input covering >= {llama_clean:.0%}, or a Min-K% "
    "membership outlier (robust z >= {membership_z}); clean: none"
)


@dataclass
class LeakReport:
    """Result of a scan.

    Attributes:
        records: One dict per eval item, in item order: task, item_id, kind, label,
            detectors, evidence (see `write_leaks` for the schema).
        summary: Counts per task and label, detector stats, training hashes (sha256 of
            each file's bytes; `training.sha256` is the file's own for one file, else the
            sha256 of their `sha256sum`-style lines), config; meant for run.json under `leaks`.
    """

    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def label_map(self) -> dict[tuple[str, str], str]:
        return label_map(self)


def label_map(report: LeakReport) -> dict[tuple[str, str], str]:
    """{(task, item_id): label}. Items sharing a key (HellaSwag's duplicate `ind`) get the
    worse of their labels, so a clean subset never keeps a possibly leaked item."""
    rank = {lab: i for i, lab in enumerate(LABELS)}
    out: dict[tuple[str, str], str] = {}
    for r in report.records:
        key = (r["task"], r["item_id"])
        if key not in out or rank[r["label"]] > rank[out[key]]:
            out[key] = r["label"]
    return out


def item_tags(report: LeakReport) -> dict[tuple[str, str], dict[str, str]]:
    """{(task, item_id): tags} for items.jsonl lines: `leak`, and `contamination` and
    `temporal` where the scan set them. Items sharing a key get the worse of each tag
    (input_answer over input_only, at_risk over the others), as `label_map` does."""
    worse = {"leak": {lab: i for i, lab in enumerate(LABELS)},
             "contamination": {"input_only": 0, "input_answer": 1},
             "temporal": {"undated": 0, "after_cutoff": 1, "at_risk": 2}}
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in report.records:
        tags = out.setdefault((r["task"], r["item_id"]), {})
        for key, rank in worse.items():
            value = r["label"] if key == "leak" else r.get(key)
            if value is not None and (key not in tags or rank[value] > rank[tags[key]]):
                tags[key] = value
    for tags in out.values():
        if tags["leak"] != "contaminated":  # a duplicate key whose worse label is not contaminated
            tags.pop("contamination", None)
    return out


def label_of(det: dict[str, Any]) -> str:
    """The label for one item's detector verdicts (the rule in the module doc)."""
    exact = det.get("exact", {}).get("category")
    if (det["palm"]["hit"] or det["llama2"]["category"] == "dirty" or det.get("minhash", {}).get("hit")
            or det.get("answer", {}).get("hit") or exact == "dirty"):
        return "contaminated"
    if (det["gpt3"]["hit"] or det["llama2"]["category"] == "not-clean" or det.get("min_k", {}).get("flagged")
            or exact == "not-clean"):
        return "suspect"
    return "clean"


def _segment_counts(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    cs = np.zeros(len(mask) + 1, np.int64)
    np.cumsum(mask, out=cs[1:])
    return cs[offsets[1:]] - cs[offsets[:-1]]


def _resolve_rows(acc_rows: dict[tuple[int, int], tuple[int, int]]) -> dict[tuple[int, int], int]:
    """(source, seq) -> first row id; byte-range blocks get it from the blocks before them."""
    out: dict[tuple[int, int], int] = {}
    running: dict[int, int] = {}
    for (src, seq) in sorted(acc_rows):
        start, n = acc_rows[(src, seq)]
        if start < 0:
            start = running.get(src, 0)
        out[(src, seq)] = start
        running[src] = start + n
    return out


def _category(coverage: float, cfg: LeakConfig) -> str:
    """Llama 2's three-way split of a token coverage (also used for exact copies)."""
    return "dirty" if coverage > cfg.llama_dirty else ("clean" if coverage < cfg.llama_clean else "not-clean")


def item_records(acc: Accumulator, index: EvalIndex, sources: list[Source]) -> list[dict[str, Any]]:
    cfg = index.config
    ntok = np.diff(index.offsets)
    palm_hits = _segment_counts(acc.palm, index.offsets)
    llama_hits = _segment_counts(acc.llama, index.offsets)
    row0 = _resolve_rows(acc.rows)
    # Gold answers (references, correct option/ending) on their own: Llama-2-style coverage.
    answers: dict[int, list[float]] = {}
    if len(index.ans_item):
        cs = np.zeros(len(acc.llama) + 1, np.int64)
        np.cumsum(acc.llama, out=cs[1:])
        cov = (cs[index.ans_end] - cs[index.ans_start]) / (index.ans_end - index.ans_start)
        for it, c in zip(index.ans_item.tolist(), cov.tolist()):
            answers.setdefault(it, []).append(c)
    records = []
    for i, item in enumerate(index.items):
        informative = int(index.informative[i])
        palm_cov = float(palm_hits[i]) / informative if informative else 0.0
        llama_cov = float(llama_hits[i]) / int(ntok[i]) if ntok[i] else 0.0
        category = _category(llama_cov, cfg)
        longest = int(acc.longest[i])
        det: dict[str, Any] = {
            "gpt3": {"n": cfg.gpt3_n, "longest_match": longest, "hit": longest >= cfg.gpt3_n},
            "palm": {"n": cfg.palm_n, "coverage": round(palm_cov, 4),
                     "hit": informative > 0 and palm_cov >= cfg.palm_threshold},
            "llama2": {"min_match": cfg.llama_min_match, "coverage": round(llama_cov, 4), "category": category},
            "exact": {"coverage": round(float(acc.exact[i]), 4), "category": _category(float(acc.exact[i]), cfg)},
        }
        if i in answers:
            cov = max(answers[i])
            det["answer"] = {"min_match": cfg.llama_min_match, "coverage": round(cov, 4), "hit": cov > cfg.llama_dirty}
        if index.minhash is not None:
            jac = float(acc.minhash[i])
            det["minhash"] = {"jaccard": round(jac, 4),
                              "hit": bool(index.minhash.indexed[i]) and jac >= cfg.minhash_threshold}
        evidence = []
        for e in acc.evidence.get(i, []):
            src = sources[e.source]
            row = row0.get((e.source, e.seq), 0) + e.row
            ev: dict[str, Any] = {"detector": e.detector, "source": src.path, "row": row}
            if src.format in ("jsonl", "text"):
                ev["line"] = row + 1  # what an editor shows
            if e.detector == "ngram":
                ev["match_tokens"] = int(e.score)
                ev["item_tokens"] = list(e.item_tokens or ())
            elif e.detector == "exact":
                ev["match"] = e.match
                ev["coverage"] = e.score
            else:
                ev["jaccard"] = e.score
            ev["span"] = e.span
            evidence.append(ev)
        label = label_of(det)
        rec = {"task": item.task, "item_id": item.item_id, "kind": item.kind, "label": label}
        if label == "contaminated":
            rec["contamination"] = "input_answer" if i in acc.answers else "input_only"
            if i in acc.answers:
                src_i, seq, r = acc.answers[i]
                rec["answer_row"] = _where(sources[src_i], row0.get((src_i, seq), 0) + r)
        rec.update({"tokens": int(ntok[i]), "detectors": det, "evidence": evidence})
        if item.meta:
            rec["meta"] = dict(item.meta)
        records.append(rec)
    return records


def _where(src: Source, row: int) -> dict[str, Any]:
    """A training location as evidence records give it: source, 0-based row, 1-based line."""
    out: dict[str, Any] = {"source": src.path, "row": row}
    if src.format in ("jsonl", "text"):
        out["line"] = row + 1
    return out


def scan_summary(records: list[dict[str, Any]], cfg: LeakConfig, sources: list[Source], hashes: dict[int, str],
             acc: Accumulator, wall: float, workers: int, index_s: float) -> dict[str, Any]:
    counts: dict[str, dict[str, Any]] = {}
    totals = collections.Counter()
    det_stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        c = counts.setdefault(r["task"], {"kind": r["kind"], "n": 0, **{lab: 0 for lab in LABELS},
                                          **dict.fromkeys(CONTAMINATION, 0)})
        c["n"] += 1
        c[r["label"]] += 1
        if r.get("contamination") in CONTAMINATION:
            c[r["contamination"]] += 1
            totals[r["contamination"]] += 1
        totals[r["label"]] += 1
        d = r["detectors"]
        det_stats["gpt3"]["hit"] += d["gpt3"]["hit"]
        det_stats["palm"]["hit"] += d["palm"]["hit"]
        det_stats["llama2"][d["llama2"]["category"]] += 1
        if "exact" in d:
            det_stats["exact"][d["exact"]["category"]] += 1
        if "answer" in d:
            det_stats["answer"]["hit"] += d["answer"]["hit"]
        if "minhash" in d:
            det_stats["minhash"]["hit"] += d["minhash"]["hit"]
        if "min_k" in d:
            det_stats["min_k"]["flagged"] += bool(d["min_k"].get("flagged"))
    size = sum(s.size for s in sources)
    files = []
    row_counts = collections.Counter()
    for (src, _seq), (_start, n) in acc.rows.items():
        row_counts[src] += n
    for s in sources:
        files.append({**s.describe(), "sha256": hashes.get(s.index), "rows": row_counts.get(s.index, 0)})
    # One file: its sha256. Several: sha256 of their `sha256sum`-style lines, in order.
    combined = hashes.get(0) if len(sources) == 1 else hashlib.sha256(
        "".join(f"{hashes.get(s.index)}  {s.path}\n" for s in sources).encode()).hexdigest()
    st = acc.stats
    return {
        "schema_version": SCHEMA_VERSION,
        "label_rule": LABEL_RULE.format(**cfg.as_dict()),
        "config": cfg.as_dict(),
        "training": {"sha256": combined, "files": files},
        "counts": counts,
        "totals": {"n": len(records), **{lab: totals[lab] for lab in LABELS},
                   **{k: totals[k] for k in CONTAMINATION}},
        "detectors": {k: dict(v) for k, v in det_stats.items()},
        "stats": {"rows": st["rows"], "empty_rows": st["empty_rows"], "bytes": size, "tokens": st["tokens"],
                  "prefilter_candidates": st["prefilter_candidates"], "prefilter_hits": st["prefilter_hits"],
                  "ngram_runs": st["ngram_runs"], "minhash_segments": st["minhash_segments"],
                  "exact_hits": st["exact_hits"],
                  "index_s": round(index_s, 3), "wall_s": round(wall, 3),
                  "mb_per_s": round(size / 1e6 / wall, 2) if wall > 0 else None, "workers": workers},
    }


def finish(partials: Iterable[Partial], index: EvalIndex, sources: Sequence[str | Source],
           hashes: dict[int, str] | None = None, wall_s: float = 0.0, workers: int = 0) -> LeakReport:
    """Fold map-step partials into a LeakReport (the driver side of a distributed scan).

    Args:
        partials: Results of `scan_block` (or already merged ones), in any order.
        index: The index the partials were computed against.
        sources: Training source names (or Sources) by the `source` number given to
            `scan_block`.
        hashes: Optional sha256 per source number.
        wall_s: Scan time, for the stats.
        workers: Parallelism, for the stats.
    """
    srcs = [s if isinstance(s, Source) else Source(str(s), "external", FieldMap(), (), 0, False, i)
            for i, s in enumerate(sources)]
    acc = Accumulator(index)
    for p in partials:
        acc.add(p)
    records = item_records(acc, index, srcs)
    return LeakReport(records, scan_summary(records, index.config, srcs, hashes or {}, acc, wall_s, workers, 0.0))


# --------------------------------------------------------------------------- membership


def add_membership(report: LeakReport, result: Any) -> LeakReport:
    """Fold Min-K% membership results into the records and relabel.

    Args:
        report: A scan's report (changed in place and returned).
        result: `harness.leaks.membership.MembershipResult`.
    """
    # Positional when the result was computed over the report's own items (duplicate
    # keys stay apart), by (task, item_id) otherwise.
    aligned = len(result.per_item) == len(report.records) and all(
        (r["task"], r["item_id"]) == it.key for r, it in zip(report.records, result.items))
    lookup = result.scores
    for pos, r in enumerate(report.records):
        m = result.per_item[pos] if aligned else lookup.get((r["task"], r["item_id"]))
        if m is None:
            continue
        r["detectors"]["min_k"] = dict(m)
        if m.get("flagged"):
            r["evidence"].append({"detector": "min_k", **{k: m[k] for k in ("base", "adapter", "shift", "z")}})
        r["label"] = label_of(r["detectors"])
    counts = report.summary["counts"]
    for c in counts.values():
        for lab in LABELS:
            c[lab] = 0
    totals = collections.Counter()
    flagged = 0
    for r in report.records:
        counts[r["task"]][r["label"]] += 1
        totals[r["label"]] += 1
        flagged += bool(r["detectors"].get("min_k", {}).get("flagged"))
    report.summary["totals"].update({lab: totals[lab] for lab in LABELS})
    report.summary["detectors"]["min_k"] = {"flagged": flagged}
    report.summary["membership"] = result.summary
    return report


# --------------------------------------------------------------------------- files


def write_leaks(out_dir: str | os.PathLike, report: LeakReport) -> tuple[Path, Path]:
    """Write DIR/leaks.jsonl (one record per item) and DIR/leaks.json (the summary).

    Each leaks.jsonl line: `task`, `item_id`, `kind`, `label` (clean/suspect/contaminated),
    for contaminated items `contamination` (input_only/input_answer) and, for input_answer,
    `answer_row` {source, row, line}; `date` and `temporal` (at_risk/after_cutoff/undated)
    when the scan had dates (harness.leaks.temporal); `tokens`, `detectors` (per detector:
    gpt3 {longest_match, hit}, palm {coverage, hit}, llama2 {coverage, category}, answer
    {coverage, hit} for items with a gold answer of >= 10 tokens, minhash {jaccard, hit}, exact {coverage, category}, min_k {base,
    adapter, shift, z, flagged} when run) and `evidence` (list of {detector, source, row
    (0-based; `line`, 1-based, for JSONL/text), match_tokens + item_tokens | jaccard |
    match + coverage (exact), span} and, for min_k, the scores).

    Returns:
        (path of leaks.jsonl, path of leaks.json).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = out / "leaks.jsonl"
    summ = out / "leaks.json"
    tmp = lines.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in report.records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, lines)
    tmp = summ.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, summ)
    return lines, summ


def load_leaks(out_dir: str | os.PathLike) -> LeakReport:
    """Read what `write_leaks` wrote.

    Raises:
        HarnessError: missing or corrupt files.
    """
    out = Path(out_dir)
    try:
        summary = json.loads((out / "leaks.json").read_text(encoding="utf-8"))
        with open(out / "leaks.jsonl", encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError as exc:
        raise HarnessError(f"{out}: no leak scan results ({Path(exc.filename).name} missing)",
                           "run `harness leaks --train FILE ... --out DIR` first") from None
    except ValueError as exc:
        raise HarnessError(f"{out}: leak scan results are corrupt ({exc})", "re-run `harness leaks`") from None
    return LeakReport(records, summary)
