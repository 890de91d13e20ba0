"""Abstention on unanswerable questions: did the reply say it cannot answer?

    abstained        1 when the reply says the question cannot be answered from the text
    answered_anyway  1 when the reply is not empty and did not abstain: the hallucination
                     rate on a suite whose questions have no answer (lower is better)

An empty reply counts in neither, so `abstained + answered_anyway = 1 - share of empty replies`.
References are not used: on an unanswerable suite every correct reply is an abstention.

The rule (documented in docs/structured-output.md): the reply is lowercased, curly quotes
become straight ones, contractions are spelled out (can't -> cannot, doesn't -> does not,
n't -> not), punctuation other than apostrophes becomes spaces and whitespace is collapsed;
then the reply abstains when any of `ABSTAIN_PATTERNS` matches anywhere in it
("unanswerable", "cannot be answered", "no answer", "not in the text", "the background
does not mention", "I do not know", "not enough information", ...), or when the whole
reply is one of `ABSTAIN_REPLIES` ("unknown", "n/a", "no idea", "not sure").
"""

from __future__ import annotations

import re
from typing import Any

from harness.evaluate.metrics.base import Metric, check_inputs, register_metric

_TEXT = r"(?:text|background|context|passage|article|paragraph|document|information given|given text)"
_SAY = r"(?:contain|mention|say|state|specify|provide|give|include|answer|tell)s?"

# Matched on the normalised reply (see `normalize_reply`), word-bounded.
ABSTAIN_PATTERNS: tuple[str, ...] = (
    r"unanswerable",
    r"not answerable",
    r"(?:cannot|unable to|impossible to|not possible to) (?:be )?(?:answer|answered|determine|determined|tell|told|"
    r"know|known|find|found|say|infer|inferred)",
    r"no answer",
    r"no (?:such )?information",
    r"not (?:enough|sufficient) information",
    r"insufficient information",
    r"do not know",
    r"(?:is|are|was|were) not (?:mentioned|stated|specified|given|provided|included|found|known|available)",
    r"not (?:mentioned|stated|specified|given|provided|included|found|present|available) in the " + _TEXT,
    r"not in the " + _TEXT,
    r"(?:the )?" + _TEXT + r" (?:does|do|did) not " + _SAY.replace("s?", ""),
    r"(?:the )?" + _TEXT + r" (?:has|gives|provides|contains) no ",
)
_ABSTAIN = re.compile(r"\b(?:" + "|".join(ABSTAIN_PATTERNS) + r")\b")
# Replies that abstain only when they are the whole (normalised) reply: "Unknown." abstains,
# "the Unknown Soldier" answers.
ABSTAIN_REPLIES: frozenset[str] = frozenset({"unknown", "n a", "na", "no idea", "not sure", "i am not sure"})

_CONTRACTIONS = ((r"\bcan't\b", "cannot"), (r"\bcan not\b", "cannot"), (r"\bwon't\b", "will not"),
                 (r"n't\b", " not"))
_PUNCT = re.compile(r"[^\w\s']+")


def normalize_reply(text: str) -> str:
    """Lowercase, straight apostrophes, contractions spelled out, punctuation -> spaces."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    for pattern, repl in _CONTRACTIONS:
        text = re.sub(pattern, repl, text)
    return " ".join(_PUNCT.sub(" ", text).split())


def abstention(prediction: str) -> str | None:
    """The phrase (in normalised form) by which the reply abstains, or None."""
    text = normalize_reply(prediction)
    if text in ABSTAIN_REPLIES:
        return text
    m = _ABSTAIN.search(text)
    return m.group(0) if m else None


@register_metric("abstained")
class Abstained(Metric):
    """1 when the reply says it cannot answer (see the module's rule), else 0."""

    def score_item(self, prediction: str, references: list[str]) -> float:
        return float(abstention(prediction) is not None)

    def details(self, predictions: list[str], references: list[list[str]]) -> list[dict[str, Any] | None]:
        """Per item, the phrase that counted as abstaining (None when it did not abstain)."""
        check_inputs(self.name, predictions, references)
        return [{"matched": m} if (m := abstention(p)) else None for p in predictions]


@register_metric("answered_anyway", higher_is_better=False)
class AnsweredAnyway(Metric):
    """1 when the reply is not empty and does not abstain: an answer where none exists."""

    higher_is_better = False

    def score_item(self, prediction: str, references: list[str]) -> float:
        return float(bool(prediction.strip()) and abstention(prediction) is None)
