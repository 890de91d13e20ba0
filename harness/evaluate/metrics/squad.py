"""SQuAD-style exact match and token F1, best over references.

Normalisation follows the SQuAD v1.1 definition: lowercase, drop punctuation, drop the
articles a/an/the, collapse whitespace. One deliberate difference from the v1.1 script:
when prediction and reference both normalise to nothing, F1 is 1.0 (as in SQuAD v2.0),
so F1 is never below exact match for the same pair.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from harness.evaluate.metrics.base import Metric, register_metric

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Normalises an answer the SQuAD v1.1 way.

    Args:
        text: Raw answer text.

    Returns:
        Lowercased text without ASCII punctuation or articles, single-spaced.
    """
    text = text.lower()
    # Punctuation goes before articles so "the," still counts as an article.
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall after normalisation.

    Tokens are whitespace-split; overlap counts repeated tokens at most as often as they
    occur in both (multiset intersection).

    Args:
        prediction: Model answer.
        reference: Gold answer.

    Returns:
        F1 in 0..1.
    """
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


@register_metric("exact_match")
class ExactMatch(Metric):
    """SQuAD exact match, max over references."""

    def score_item(self, prediction: str, references: list[str]) -> float:
        return max(exact_match(prediction, ref) for ref in references)


@register_metric("f1")
class TokenF1(Metric):
    """SQuAD token F1, max over references."""

    def score_item(self, prediction: str, references: list[str]) -> float:
        return max(token_f1(prediction, ref) for ref in references)
