"""Evaluation metrics of the BERT paper's fine-tuning tasks, all returned as fractions in [0, 1].

- GLUE (Wang et al. 2018): accuracy; F1 of the positive class (MRPC, QQP); macro F1;
  Matthews correlation (CoLA), in the multi-class form of Gorodkin (2004) that scikit-learn
  computes, which is the usual binary formula for two classes.
- CoNLL-2003 NER: entity-level micro precision/recall/F1 with the chunk rules of the
  shared task's ``conlleval`` script (as ``seqeval`` in its default mode): an entity is a
  maximal run of tags of one type that starts at B-/S-, or at I-/E- after O or another type,
  and it counts only when its type and both ends match.
- SQuAD v1.1: exact match and token F1 after the official ``evaluate-v1.1.py``
  normalisation (lowercase, drop punctuation, drop the articles a/an/the, squeeze
  whitespace), the best over the gold answers, 0 for a question with no prediction.

Every function takes the gold values first, like scikit-learn and seqeval.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from lmforge.errors import UserError
from lmforge.tasks.readers import QAExample


def _as_list(values: Any) -> list:
    """Plain Python values: tensors and arrays compare and hash by value only after tolist()."""
    return values.tolist() if hasattr(values, "tolist") else list(values)


def _paired(gold: Any, predicted: Any) -> tuple[list, list]:
    gold, predicted = _as_list(gold), _as_list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold values but {len(predicted)} predictions")
    if not gold:
        raise ValueError("no values to score")
    return gold, predicted


def _f1(true_positives: int, gold_count: int, predicted_count: int) -> float:
    """2PR / (P + R) = 2TP / (gold + predicted), 0 when there is nothing to score."""
    total = gold_count + predicted_count
    return 2 * true_positives / total if total else 0.0


# ---------------------------------------------------------------------------------------
# Classification


def accuracy(gold: Sequence, predicted: Sequence) -> float:
    gold, predicted = _paired(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def f1_binary(gold: Sequence, predicted: Sequence, positive: Any = 1) -> float:
    """F1 of the ``positive`` class (GLUE's F1 for MRPC and QQP, positive = paraphrase = 1)."""
    gold, predicted = _paired(gold, predicted)
    true_positives = sum(g == p == positive for g, p in zip(gold, predicted))
    return _f1(true_positives, gold.count(positive), predicted.count(positive))


def f1_macro(gold: Sequence, predicted: Sequence) -> float:
    """Unweighted mean of the per-class F1 over every class seen in gold or predictions."""
    gold, predicted = _paired(gold, predicted)
    classes = set(gold) | set(predicted)
    return sum(f1_binary(gold, predicted, positive=c) for c in classes) / len(classes)


def matthews_corrcoef(gold: Sequence, predicted: Sequence) -> float:
    """(c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)), with s samples,
    c correct, t_k gold and p_k predicted counts of class k; 0 when undefined (one class)."""
    gold, predicted = _paired(gold, predicted)
    samples = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted))
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    covariance = correct * samples - sum(predicted_counts[k] * gold_counts[k] for k in gold_counts)
    predicted_var = samples**2 - sum(n * n for n in predicted_counts.values())
    gold_var = samples**2 - sum(n * n for n in gold_counts.values())
    if predicted_var == 0 or gold_var == 0:
        return 0.0
    return covariance / math.sqrt(predicted_var * gold_var)


# ---------------------------------------------------------------------------------------
# Entities (conlleval)


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I", "E", "S") or not kind:
        raise UserError(f"tag {tag!r} is not in BIO/IOBES form (B-X, I-X, E-X, S-X or O)")
    return prefix, kind


def _ends_chunk(prev_tag: str, tag: str, prev_kind: str, kind: str) -> bool:
    """conlleval's endOfChunk: does the chunk open at the previous token end before this one?"""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I"):
        return tag in ("B", "S", "O") or kind != prev_kind
    return False


def _starts_chunk(prev_tag: str, tag: str, prev_kind: str, kind: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    if tag in ("B", "S"):
        return True
    if tag in ("I", "E"):
        return prev_tag in ("E", "S", "O") or kind != prev_kind
    return False


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entity chunks of one sentence as (type, first token, last token)."""
    chunks = set()
    prev_tag, prev_kind, begin = "O", "", 0
    # A trailing "O" closes a chunk still open at the end of the sentence.
    for position, tag in enumerate([*tags, "O"]):
        prefix, kind = _split_tag(tag)
        if _ends_chunk(prev_tag, prefix, prev_kind, kind):
            chunks.add((prev_kind, begin, position - 1))
        if _starts_chunk(prev_tag, prefix, prev_kind, kind):
            begin = position
        prev_tag, prev_kind = prefix, kind
    return chunks


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over the entities of all sentences."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    true_positives = gold_count = predicted_count = 0
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted")
        gold_chunks, predicted_chunks = entities(gold_tags), entities(predicted_tags)
        true_positives += len(gold_chunks & predicted_chunks)
        gold_count += len(gold_chunks)
        predicted_count += len(predicted_chunks)
    return {
        "precision": true_positives / predicted_count if predicted_count else 0.0,
        "recall": true_positives / gold_count if gold_count else 0.0,
        "f1": _f1(true_positives, gold_count, predicted_count),
    }


# ---------------------------------------------------------------------------------------
# SQuAD


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """evaluate-v1.1.py: lowercase, remove punctuation, remove articles, squeeze whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers (0 when either is empty, as in v1.1)."""
    predicted_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(predicted_tokens) & Counter(gold_tokens)).values())
    return _f1(same, len(gold_tokens), len(predicted_tokens)) if same else 0.0


def squad_scores(examples: Sequence[QAExample], predictions: Mapping[str, str]) -> dict[str, float]:
    """Mean exact match and F1 over all examples, each the max over its gold answers."""
    if not examples:
        raise ValueError("no examples to score")
    exact = f1 = 0.0
    for example in examples:
        if example.id not in predictions:
            continue  # an unanswered question scores 0, as in the official script
        golds = [answer["text"] for answer in example.answers]
        prediction = predictions[example.id]
        exact += max((squad_exact_match(prediction, g) for g in golds), default=0.0)
        f1 += max((squad_f1(prediction, g) for g in golds), default=0.0)
    return {"exact_match": exact / len(examples), "f1": f1 / len(examples)}
