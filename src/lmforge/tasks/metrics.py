"""Helpers shared by the tasks' metrics (``classification``, ``ner``, ``qa``): paired gold and
predicted values, and F1 from counts. Every metric takes the gold values first, like
scikit-learn and seqeval, and returns fractions in [0, 1].
"""

from __future__ import annotations

from typing import Any


def as_list(values: Any) -> list:
    """Plain Python values: tensors and arrays compare and hash by value only after tolist()."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def paired(gold: Any, predicted: Any) -> tuple[list, list]:
    gold, predicted = as_list(gold), as_list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold values but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no values to score")
    return gold, predicted


def f1_from_counts(true_positives: int, gold_count: int, predicted_count: int) -> float:
    """2PR / (P + R) = 2TP / (gold + predicted), 0 when there is nothing to score."""
    total = gold_count + predicted_count
    return 2 * true_positives / total if total else 0.0
