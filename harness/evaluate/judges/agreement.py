"""Agreement between judge and human labels, per criterion.

Spearman's rho treats levels as ordered scores (the default: rubric levels are ordinal);
Cohen's kappa treats them as categories, optionally with quadratic weights so a 4 vs 5
disagreement costs less than a 1 vs 5. Pairs where either side is missing are dropped, and
the number of pairs used is always reported beside the value.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

METHODS = ("spearman", "kappa", "kappa_quadratic")


def agreement(judge: Sequence[float | None], human: Sequence[float | None], method: str = "spearman") -> dict[str, Any]:
    """Agreement of judge scores with human labels on the same items.

    Args:
        judge: The judge's raw rubric levels (None where unscored).
        human: The human labels on the same scale, aligned with `judge` (None where missing).
        method: "spearman", "kappa" or "kappa_quadratic".

    Returns:
        {"method", "value" (None when undefined: under 2 pairs or a constant side), "n"}.
    """
    if method not in METHODS:
        raise ValueError(f"unknown agreement method '{method}'")
    pairs = [(float(j), float(h)) for j, h in zip(judge, human) if j is not None and h is not None]
    out: dict[str, Any] = {"method": method, "value": None, "n": len(pairs)}
    if len(pairs) < 2:
        out["note"] = "fewer than 2 labelled items were scored"
        return out
    js = [j for j, _ in pairs]
    hs = [h for _, h in pairs]
    if len(set(js)) < 2 or len(set(hs)) < 2:
        # Both statistics are undefined when one rater gives a single value throughout.
        out["note"] = "judge" if len(set(js)) < 2 else "human labels"
        out["note"] += " gave the same score to every item"
        return out
    if method == "spearman":
        from scipy.stats import spearmanr

        value = float(spearmanr(js, hs).statistic)
    else:
        from sklearn.metrics import cohen_kappa_score

        value = float(cohen_kappa_score([round(h) for h in hs], [round(j) for j in js],
                                        weights="quadratic" if method == "kappa_quadratic" else None))
    out["value"] = None if math.isnan(value) else round(value, 4)
    return out
