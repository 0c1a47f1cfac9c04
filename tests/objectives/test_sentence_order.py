"""ALBERT's sentence-order prediction pairs: balance over a large sample, swapped order on
positives, the single-sentence fallback (the reference's quirk) and its "skip" option."""

import numpy as np
import pytest

from lmforge.objectives.sentence_pairs import (
    A_END, A_START, B_END, B_START, IS_RANDOM_NEXT, build_instances,
)


@pytest.fixture(scope="module")
def corpus():
    """5000 documents of 2..60 sentences of 5..40 tokens, as shard offsets."""
    rng = np.random.default_rng(0)
    sentences_per_doc = rng.integers(2, 61, size=5000)
    lengths = rng.integers(5, 41, size=int(sentences_per_doc.sum()))
    sentence_offsets = np.concatenate([[0], np.cumsum(lengths)])
    document_offsets = np.concatenate([[0], np.cumsum(sentences_per_doc)])
    return sentence_offsets, document_offsets


def _document_of(corpus, token):
    sentence_offsets, document_offsets = corpus
    sentence = np.searchsorted(sentence_offsets, token, side="right") - 1
    return np.searchsorted(document_offsets, sentence, side="right") - 1


def _sop(corpus, single_sentence, seed=7, dupe_round=0):
    return build_instances(*corpus, seed=seed, dupe_round=dupe_round, max_seq_length=128,
                           pair_task="sop", single_sentence=single_sentence)


def test_sop_labels_are_balanced_and_positives_are_swapped(corpus):
    rows = _sop(corpus, "skip")
    assert len(rows) > 25_000
    share = rows[:, IS_RANDOM_NEXT].mean()
    assert abs(share - 0.5) < 0.01, share
    for row in rows[:: 7]:
        same_document = _document_of(corpus, row[A_START]) == _document_of(corpus, row[B_START])
        assert same_document
        if row[IS_RANDOM_NEXT]:  # swapped: the first segment is the later text
            assert row[A_START] > row[B_START] and row[B_END] <= row[A_START]
        else:
            assert row[A_START] < row[B_START] and row[A_END] <= row[B_START]
    # without truncation the two segments are adjacent: B then A, or A then B
    untruncated = rows[(rows[:, A_END] - rows[:, A_START]) + (rows[:, B_END] - rows[:, B_START]) < 100]
    swapped = untruncated[untruncated[:, IS_RANDOM_NEXT] == 1]
    ordered = untruncated[untruncated[:, IS_RANDOM_NEXT] == 0]
    assert (swapped[:, B_END] == swapped[:, A_START]).mean() > 0.9
    assert (ordered[:, A_END] == ordered[:, B_START]).mean() > 0.9


def test_reference_fallback_gives_one_sentence_chunks_a_random_document(corpus):
    rows = _sop(corpus, "random_next")
    skipped = _sop(corpus, "skip")
    fallback = rows[[_document_of(corpus, r[A_START]) != _document_of(corpus, r[B_START]) for r in rows]]
    assert len(fallback) > 0 and (fallback[:, IS_RANDOM_NEXT] == 1).all()
    # every other instance is a consecutive pair, so the positives exceed half by the fallbacks
    assert len(rows) > len(skipped)
    assert rows[:, IS_RANDOM_NEXT].mean() > 0.5
    consecutive = len(rows) - len(fallback)
    assert abs(rows[:, IS_RANDOM_NEXT].sum() - len(fallback) - consecutive / 2) < 0.02 * consecutive


def test_sop_is_reproducible_per_seed_and_round(corpus):
    small = (corpus[0], corpus[1][:200])
    first = _sop(small, "random_next")
    assert np.array_equal(first, _sop(small, "random_next"))
    assert not np.array_equal(first, _sop(small, "random_next", dupe_round=1))
    assert not np.array_equal(first, _sop(small, "random_next", seed=8))


def test_nsp_is_unchanged_by_the_sop_options(corpus):
    small = (corpus[0], corpus[1][:200])
    default = build_instances(*small, seed=3, dupe_round=0)
    assert np.array_equal(default, build_instances(*small, seed=3, dupe_round=0, pair_task="nsp",
                                                   single_sentence="skip"))


def test_unknown_pair_task_is_rejected(corpus):
    with pytest.raises(ValueError):
        build_instances(*corpus, seed=1, dupe_round=0, pair_task="order")
