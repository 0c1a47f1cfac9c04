"""Metrics against hand-computed values, and entity F1 against seqeval on random tag sequences."""

import random

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score, precision_score, recall_score
from sklearn.metrics import f1_score as sk_f1
from sklearn.metrics import matthews_corrcoef as sk_mcc

from lmforge.errors import UserError
from lmforge.tasks.classification import accuracy, f1_binary, f1_macro, matthews_corrcoef
from lmforge.tasks.ner import entities, entity_scores
from lmforge.tasks.qa import QAExample, normalize_answer, squad_exact_match, squad_f1, squad_scores

# TP = 2 (0, 3), TN = 1 (4), FP = 1 (1), FN = 1 (2)
GOLD = [1, 0, 1, 1, 0]
PRED = [1, 1, 0, 1, 0]


def test_accuracy_and_binary_f1_by_hand():
    assert accuracy(GOLD, PRED) == pytest.approx(3 / 5)
    # P = 2/3, R = 2/3
    assert f1_binary(GOLD, PRED) == pytest.approx(2 / 3)
    # Class 0 as positive: TP 1, FP 1, FN 1 -> 1/2
    assert f1_binary(GOLD, PRED, positive=0) == pytest.approx(1 / 2)
    assert f1_binary([0, 0], [0, 0]) == 0.0  # no positives anywhere


def test_macro_f1_by_hand():
    gold = ["a", "a", "b", "c", "c", "c"]
    pred = ["a", "b", "b", "c", "c", "a"]
    # a: TP 1, gold 2, pred 2 -> 1/2; b: TP 1, gold 1, pred 2 -> 2/3; c: TP 2, gold 3, pred 2 -> 4/5
    assert f1_macro(gold, pred) == pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
    assert f1_macro(gold, pred) == pytest.approx(sk_f1(gold, pred, average="macro"))


def test_matthews_by_hand_and_against_sklearn():
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6
    assert matthews_corrcoef(GOLD, PRED) == pytest.approx(1 / 6)
    assert matthews_corrcoef(GOLD, GOLD) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert matthews_corrcoef([1, 0, 1], [1, 1, 1]) == 0.0  # one predicted class: undefined -> 0
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert matthews_corrcoef(gold, pred) == pytest.approx(sk_mcc(gold, pred), abs=1e-12)


def test_tensors_and_arrays_are_values_not_objects():
    assert accuracy(torch.tensor(GOLD), torch.tensor(PRED)) == pytest.approx(3 / 5)
    assert f1_binary(np.array(GOLD), torch.tensor(PRED)) == pytest.approx(2 / 3)
    assert matthews_corrcoef(torch.tensor(GOLD), torch.tensor(PRED)) == pytest.approx(1 / 6)
    with pytest.raises(ValueError):
        accuracy([1, 0], [1])


# ---------------------------------------------------------------------------------------
# Entities


def test_entity_chunks_follow_conlleval():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entities(["B-PER", "B-PER"]) == {("PER", 0, 0), ("PER", 1, 1)}
    # I- after O or after another type opens an entity (IOB1 style), as conlleval does
    assert entities(["O", "I-ORG", "I-ORG"]) == {("ORG", 1, 2)}
    assert entities(["B-PER", "I-LOC", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}
    # IOBES: E- closes, S- is a single
    assert entities(["B-MISC", "E-MISC", "S-LOC", "I-LOC"]) == {("MISC", 0, 1), ("LOC", 2, 2), ("LOC", 3, 3)}
    assert entities(["O", "O"]) == set()
    with pytest.raises(UserError, match="BIO/IOBES"):
        entities(["PER"])


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-MISC"]]
    # gold 3 entities, predicted 3, correct 2 (PER 0-1, ORG 0-0)
    scores = entity_scores(gold, pred)
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # A boundary error is a miss: PER 0-0 is not PER 0-1
    assert entity_scores([["B-PER", "I-PER"]], [["B-PER", "O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_entities_do_not_cross_sentences():
    # One sentence ends in I-PER and the next starts with I-PER: two entities, not one.
    gold = [["O", "B-PER"], ["I-PER", "O"]]
    assert entity_scores(gold, gold)["f1"] == 1.0
    assert entity_scores(gold, [["O", "B-PER"], ["O", "O"]]) == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3}
    )


@pytest.mark.parametrize("prefixes", ["BIO", "BIOES"])
def test_entity_scores_match_seqeval_on_random_tags(prefixes):
    rng = random.Random(1234)
    tags = ["O"] + [f"{p}-{t}" for p in prefixes if p != "O" for t in ("PER", "LOC", "ORG")]

    def sentence(length):
        # mostly O, so that entities are sparse as in real data; invalid sequences included
        return [rng.choice(tags) if rng.random() < 0.4 else "O" for _ in range(length)]

    for _ in range(20):
        lengths = [rng.randint(1, 12) for _ in range(30)]
        gold = [sentence(n) for n in lengths]
        # Predictions: the gold tags with some noise, so scores are neither 0 nor 1.
        pred = [[rng.choice(tags) if rng.random() < 0.25 else t for t in s] for s in gold]
        ours = entity_scores(gold, pred)
        assert ours["precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
        assert ours["recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
        assert ours["f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)


# ---------------------------------------------------------------------------------------
# SQuAD


def test_squad_normalisation():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("  24–10 ") == "24–10"  # the en dash is not ASCII punctuation


def test_squad_em_and_f1_by_hand():
    assert squad_exact_match("the Denver Broncos", "Denver Broncos.") == 1.0
    assert squad_exact_match("Denver", "Denver Broncos") == 0.0
    # pred [denver, broncos, team], gold [denver, broncos]: P 2/3, R 1 -> F1 0.8
    assert squad_f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # repeated tokens count once per match: pred [a_, a_, b_] vs gold [a_, b_, b_] -> overlap 2
    assert squad_f1("x x y", "x y y") == pytest.approx(2 / 3)
    assert squad_f1("", "") == 0.0  # v1.1: no common token -> 0
    assert squad_f1("Carolina", "Denver") == 0.0


def test_squad_scores_take_the_best_gold_and_count_missing_as_zero():
    def example(id_, *answers):
        return QAExample(id_, "q", "c", [{"text": a, "answer_start": 0} for a in answers])

    examples = [
        example("1", "Denver Broncos", "the Broncos"),
        example("2", "Santa Clara, California", "Santa Clara"),
        example("3", "gold"),
    ]
    predictions = {"1": "Broncos team", "2": "Santa Clara"}
    # 1: EM 0; F1 vs "denver broncos" 1/2, vs "broncos" (P 1/2, R 1) 2/3 -> 2/3.
    # 2: EM 1, F1 1. 3: no prediction -> 0, 0.
    assert squad_scores(examples, predictions) == pytest.approx({"exact_match": 1 / 3, "f1": (2 / 3 + 1) / 3})
