"""Corpus BLEU and chrF from sacrebleu, with sentence-level scores per item for diffs.

sacrebleu reports 0..100; everything here is divided by 100 to keep the 0..1 convention.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from harness.evaluate.metrics.base import Metric, check_inputs, register_metric


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """Transposes per-item reference lists into sacrebleu's reference streams.

    sacrebleu wants one stream per reference position, each as long as the corpus. Items
    with fewer references are padded with None, which sacrebleu skips for that item (an
    empty string would instead count as a real, empty reference and lower the score).

    Args:
        references: For each item, its list of references.

    Returns:
        `max(len(refs))` streams, each with one entry per item.
    """
    width = max((len(refs) for refs in references), default=0)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


def _unit(score: float) -> float:
    # sacrebleu's 0..100 to 0..1; clamped because a perfect match can come out as
    # 100.00000000000004 after its log/exp arithmetic.
    return min(1.0, max(0.0, score / 100))


class _SacreMetric(Metric):
    """Shared plumbing: sentence scores per item, corpus score as aggregate."""

    corpus_level = True

    def _sentence_metric(self) -> Any:
        raise NotImplementedError

    def _corpus_metric(self) -> Any:
        raise NotImplementedError

    def score_items(self, predictions: list[str], references: list[list[str]]) -> list[float]:
        check_inputs(self.name, predictions, references)
        metric = self._sentence_metric()
        return [
            _unit(metric.sentence_score(p, list(refs)).score)
            for p, refs in zip(predictions, references)
        ]

    def score_item(self, prediction: str, references: list[str]) -> float:
        return self.score_items([prediction], [references])[0]

    def aggregate(
        self, predictions: list[str], references: list[list[str]], item_scores: list[float]
    ) -> float:
        # item_scores are sentence-level and deliberately unused: corpus BLEU/chrF pool
        # n-gram statistics over all items, which is not the mean of sentence scores.
        check_inputs(self.name, predictions, references, item_scores)
        streams = reference_streams([list(r) for r in references])
        return _unit(self._corpus_metric().corpus_score(list(predictions), streams).score)

    def corpus_statistics(self, predictions: list[str], references: list[list[str]]) -> Any:
        """Per-item sufficient statistics (n-gram counts), one row per item.

        Their column sums determine the corpus score (`score_from_statistics`), so a
        bootstrap resample is a weighted sum of rows instead of a re-scoring from text.
        """
        streams = reference_streams([list(r) for r in references])
        # sacrebleu's documented hook for statistical tests (its own paired bootstrap uses it).
        return self._scorer._extract_corpus_statistics(list(predictions), streams)

    def score_from_statistics(self, sums: Any) -> float:
        """The 0..1 corpus score of summed `corpus_statistics` rows (the same as `aggregate`)."""
        return _unit(self._scorer._compute_score_from_stats(sums).score)

    @cached_property
    def _scorer(self) -> Any:
        # One scorer per metric: the statistics path calls it thousands of times per comparison.
        return self._corpus_metric()


@register_metric("bleu")
class Bleu(_SacreMetric):
    """sacrebleu BLEU (13a tokenisation). Items use effective order, as sentence_bleu does,
    so a short sentence without 4-gram matches does not score 0."""

    def _sentence_metric(self) -> Any:
        from sacrebleu.metrics import BLEU

        return BLEU(effective_order=True)

    def _corpus_metric(self) -> Any:
        from sacrebleu.metrics import BLEU

        return BLEU()


@register_metric("chrf")
class ChrF(_SacreMetric):
    """sacrebleu chrF (character 6-grams, beta 2)."""

    def _sentence_metric(self) -> Any:
        from sacrebleu.metrics import CHRF

        return CHRF()

    def _corpus_metric(self) -> Any:
        from sacrebleu.metrics import CHRF

        return CHRF()
