"""Robust extraction of the judge's JSON verdicts from free-form model replies.

Judges wrap JSON in prose, code fences, or a provider's JSON-mode envelope, restate the
requested format before answering, and small models emit Python-style dicts. The parser
tries every JSON object in the reply (the last one that fits wins, since models tend to
answer after restating), repairs the common near-misses, and reports *why* nothing fit so
the re-ask can say so. It never invents a score: no fit means an error, not a 0.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness.evaluate.judges.spec import CriterionSpec

_DECODER = json.JSONDecoder()
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(?:/\s*\d+(?:\.\d+)?)?\s*$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")
_WINNER_KEYS = ("winner", "preference", "preferred", "better", "choice", "verdict")
_RATIONALE_KEYS = ("rationale", "reason", "reasoning", "explanation", "justification", "comment")
_WRAPPER_KEYS = ("scores", "criteria", "ratings", "results", "evaluation", "response", "output", "result")


@dataclass
class CriterionScore:
    """One criterion's verdict: the raw level on the rubric's scale and the judge's reason."""

    score: float
    rationale: str | None


@dataclass
class PointwiseParse:
    """What could be read from one pointwise reply; `error` says what is still missing."""

    scores: dict[str, CriterionScore] = field(default_factory=dict)
    error: str | None = None


@dataclass
class PairwiseParse:
    """'A', 'B' or 'tie' (positions as shown to the judge), or an error."""

    winner: str | None = None
    rationale: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- JSON candidates


def json_candidates(text: str) -> list[Any]:
    """Every JSON object or array found in `text`, in order of appearance.

    Strict JSON is tried at each opening brace; spans that are not strict JSON get one
    lenient pass (Python literals, single quotes, trailing commas). String values that
    themselves hold JSON (a JSON-mode envelope around the real answer) are unpacked too.
    """
    out: list[Any] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] not in "{[":
            i += 1
            continue
        try:
            obj, end = _DECODER.raw_decode(text, i)
        except ValueError:
            repaired = _lenient(text, i)
            if repaired is None:
                i += 1
                continue
            obj, end = repaired
        out.append(obj)
        out.extend(_nested_json(obj))
        i = end
    return out


def _nested_json(obj: Any, depth: int = 0) -> Iterable[Any]:
    if depth > 2:
        return []
    found: list[Any] = []
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    for value in values:
        if isinstance(value, str) and ("{" in value or "[" in value):
            for inner in json_candidates(value):
                found.append(inner)
        elif isinstance(value, (dict, list)) and depth < 2:
            found.extend(_nested_json(value, depth + 1))
    return found


def _balanced_end(text: str, start: int) -> int | None:
    """Index after the bracket closing the one at `start`, skipping quoted strings."""
    opening = text[start]
    closing = "}" if opening == "{" else "]"
    depth = 0
    quote: str | None = None
    escaped = False
    for j in range(start, min(len(text), start + 20000)):
        ch = text[j]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch == opening:
            depth += 1
        elif ch == closing:
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def _lenient(text: str, start: int) -> tuple[Any, int] | None:
    end = _balanced_end(text, start)
    if end is None:
        return None
    span = text[start:end]
    fixed = _TRAILING_COMMA.sub(r"\1", span)
    fixed = _PY_LITERALS.sub(lambda m: {"True": "true", "False": "false", "None": "null"}[m.group(1)], fixed)
    for attempt in (fixed, _single_to_double_quotes(fixed)):
        try:
            return json.loads(attempt), end
        except ValueError:
            continue
    return None


def _single_to_double_quotes(text: str) -> str:
    """Swap quote styles outside of double-quoted strings ({'a': 'it"s'} -> {"a": "it\\"s"})."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is None:
            if ch in "\"'":
                quote = ch
                out.append('"')
            else:
                out.append(ch)
            continue
        if escaped:
            escaped = False
            out.append(ch)
        elif ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == quote:
            quote = None
            out.append('"')
        elif ch == '"' and quote == "'":
            out.append('\\"')
        else:
            out.append(ch)
    return "".join(out)


# --------------------------------------------------------------------------- pointwise


def _key(text: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(text).strip().lower())


def coerce_score(value: Any, criterion: CriterionSpec) -> tuple[float | None, str | None]:
    """A rubric level from an int, float or numeric string ("4", "4/5"), checked against the scale."""
    if isinstance(value, bool) or value is None:
        return None, f"{criterion.name}: score {value!r} is not a number"
    if isinstance(value, str):
        m = _NUMBER.match(value)
        if not m:
            return None, f"{criterion.name}: score {value[:40]!r} is not a number"
        value = float(m.group(1))
    if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
        return None, f"{criterion.name}: score {value!r} is not a number"
    scale = criterion.scale
    if not scale.min <= value <= scale.max:
        return None, f"{criterion.name}: score {value:g} is outside {scale.min}..{scale.max}"
    return float(value), None


def _rationale(obj: dict[str, Any]) -> str | None:
    for k, v in obj.items():
        if _key(k) in _RATIONALE_KEYS and isinstance(v, str):
            return v.strip()
    return None


def _entries(obj: Any, names: set[str]) -> dict[str, Any]:
    """criterion -> raw entry (a dict or a bare score) from one decoded candidate."""
    found: dict[str, Any] = {}
    if isinstance(obj, list):
        for element in obj:
            if isinstance(element, dict):
                label = next((_key(element[k]) for k in ("criterion", "name", "criteria", "metric")
                              if isinstance(element.get(k), str)), None)
                if label in names:
                    found[label] = element
        return found
    if not isinstance(obj, dict):
        return found
    for k, v in obj.items():
        if _key(k) in names:
            found[_key(k)] = v
    if not found:
        for k, v in obj.items():
            if _key(k) in _WRAPPER_KEYS and isinstance(v, (dict, list)):
                found = _entries(v, names)
                if found:
                    break
    return found


def _read_candidate(obj: Any, criteria: Sequence[CriterionSpec]) -> tuple[dict[str, CriterionScore], list[str]]:
    by_key = {c.name: c for c in criteria}
    entries = _entries(obj, set(by_key))
    if not entries and len(criteria) == 1 and isinstance(obj, dict):
        # One criterion asked: a flat {"score": .., "rationale": ..} is unambiguous.
        if any(_key(k) == "score" for k in obj):
            entries = {criteria[0].name: obj}
    scores: dict[str, CriterionScore] = {}
    problems: list[str] = []
    for name, entry in entries.items():
        crit = by_key[name]
        if isinstance(entry, dict):
            raw = next((v for k, v in entry.items() if _key(k) in ("score", "rating", "value", "level")), None)
            rationale = _rationale(entry)
            if raw is None:
                problems.append(f"{name}: no 'score' field")
                continue
        else:
            raw = entry
            rationale = _rationale(obj) if isinstance(obj, dict) else None
        value, problem = coerce_score(raw, crit)
        if problem:
            problems.append(problem)
        else:
            scores[name] = CriterionScore(value, rationale)  # type: ignore[arg-type]
    return scores, problems


def parse_pointwise(text: str | None, criteria: Sequence[CriterionSpec]) -> PointwiseParse:
    """Read {criterion: {score, rationale}} for every criterion from a judge reply.

    The candidate covering the most criteria wins (the later one on ties). Criteria that no
    candidate scores validly are named in `error`, and are the caller's to re-ask or mark
    unscored; they are never filled in.
    """
    names = [c.name for c in criteria]
    if not text or not text.strip():
        return PointwiseParse(error="empty reply")
    best: dict[str, CriterionScore] = {}
    best_problems: list[str] = []
    any_json = False
    for candidate in json_candidates(text):
        any_json = True
        scores, problems = _read_candidate(candidate, criteria)
        if (scores or problems) and len(scores) >= len(best):
            best, best_problems = scores, problems
    if not any_json:
        return PointwiseParse(error="no valid JSON object in the reply")
    missing = [n for n in names if n not in best]
    if not missing:
        return PointwiseParse(scores=best)
    detail = "; ".join(best_problems) if best_problems else ""
    what = f"no valid score for {', '.join(missing)}"
    return PointwiseParse(scores=best, error=f"{what} ({detail})" if detail else what)


# --------------------------------------------------------------------------- pairwise


def _winner(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    v = _key(value).strip("[]().'\"_ ")
    v = v.removeprefix("response_").removeprefix("assistant_").removeprefix("output_").strip("_")
    if v in ("a", "1", "first"):
        return "A"
    if v in ("b", "2", "second"):
        return "B"
    if v in ("tie", "draw", "equal", "same", "both", "neither", "none", "c"):
        return "tie"
    return None


def parse_pairwise(text: str | None) -> PairwiseParse:
    """Read {"winner": "A"|"B"|"tie", "rationale": ...} from a judge reply (last fit wins)."""
    if not text or not text.strip():
        return PairwiseParse(error="empty reply")
    result: PairwiseParse | None = None
    seen_json = False
    problem = "no 'winner' field"
    for candidate in json_candidates(text):
        seen_json = True
        if not isinstance(candidate, dict):
            continue
        for k, v in candidate.items():
            if _key(k) in _WINNER_KEYS:
                winner = _winner(v)
                if winner is None:
                    problem = f"winner {str(v)[:40]!r} is not A, B or tie"
                else:
                    result = PairwiseParse(winner=winner, rationale=_rationale(candidate))
                break
    if result is not None:
        return result
    if not seen_json:
        return PairwiseParse(error="no valid JSON object in the reply")
    return PairwiseParse(error=problem)
