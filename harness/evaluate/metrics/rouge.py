"""ROUGE-1, ROUGE-2 and ROUGE-L F-measure (rouge-score, Porter stemming), best over references."""

from __future__ import annotations

from functools import cached_property

from harness.evaluate.metrics.base import Metric, register_metric


class Rouge(Metric):
    """One ROUGE variant's F-measure per item, max over references.

    Args:
        rouge_type: "rouge1", "rouge2" or "rougeL" (sentence-level LCS, no summary splitting).
    """

    def __init__(self, rouge_type: str):
        self.rouge_type = rouge_type
        self.name = rouge_type

    @cached_property
    def _scorer(self):
        # Imported here: rouge_score pulls in nltk, which costs seconds on every CLI start.
        from rouge_score import rouge_scorer

        return rouge_scorer.RougeScorer([self.rouge_type], use_stemmer=True)

    def score_item(self, prediction: str, references: list[str]) -> float:
        # rouge-score takes (target, prediction); the order matters for precision vs recall
        # but not for F-measure — kept right anyway.
        return max(
            self._scorer.score(ref, prediction)[self.rouge_type].fmeasure for ref in references
        )


for _rouge_type in ("rouge1", "rouge2", "rougeL"):
    register_metric(_rouge_type)(Rouge(_rouge_type))
