"""NSP instance creation against create_instances_from_document's behaviour."""

import random

import numpy as np
import pytest

from lmforge.objectives.sentence_pairs import (
    A_END,
    A_START,
    B_END,
    B_START,
    IS_RANDOM_NEXT,
    assemble_pair,
    build_instances,
    create_instances_from_document,
    document_rng,
    truncation_counts,
)

CLS, SEP = 2, 3


def _offsets(documents: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Shard offsets of documents given as lists of sentence lengths."""
    lengths = [n for doc in documents for n in doc]
    sentence_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    document_offsets = np.concatenate(([0], np.cumsum([len(doc) for doc in documents]))).astype(np.int64)
    return sentence_offsets, document_offsets


def _random_corpus(seed: int, num_documents: int, sentences: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _offsets([rng.integers(3, 20, size=rng.integers(*sentences)).tolist() for _ in range(num_documents)])


def _document_of(token: int, sentence_offsets: np.ndarray, document_offsets: np.ndarray) -> int:
    sentence = np.searchsorted(sentence_offsets, token, side="right") - 1
    return int(np.searchsorted(document_offsets, sentence, side="right") - 1)


def _reference_truncate(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """truncate_seq_pair's loop, counting what it removes from each side."""
    cut_a = cut_b = 0
    while len_a + len_b > max_num_tokens:
        if len_a > len_b:
            len_a, cut_a = len_a - 1, cut_a + 1
        else:
            len_b, cut_b = len_b - 1, cut_b + 1
    return cut_a, cut_b


def test_truncation_counts_match_the_reference_loop():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        len_a, len_b = (int(x) for x in rng.integers(1, 300, size=2))
        limit = int(rng.integers(2, 300))
        assert truncation_counts(len_a, len_b, limit) == _reference_truncate(len_a, len_b, limit)


@pytest.fixture(scope="module")
def corpus():
    # One-sentence chunks always take a random B, as in the reference: a document's end adds
    # about one (its last chunk shrinks through put-backs), and short targets add many. Long
    # documents and short_seq_prob=0 keep that skew under a point, isolating the 50% coin.
    sentence_offsets, document_offsets = _random_corpus(1, 100, (200, 400))
    instances = build_instances(
        sentence_offsets, document_offsets, seed=12345, dupe_round=0, max_seq_length=128, short_seq_prob=0.0
    )
    return sentence_offsets, document_offsets, instances


def test_labels_are_balanced(corpus):
    _, _, instances = corpus
    assert len(instances) > 2000
    assert abs(instances[:, IS_RANDOM_NEXT].mean() - 0.5) < 0.03


def test_is_next_b_follows_a_in_the_same_document(corpus):
    sentence_offsets, document_offsets, instances = corpus
    starts = set(sentence_offsets.tolist())
    untruncated = 0
    for row in instances[instances[:, IS_RANDOM_NEXT] == 0]:
        document = _document_of(row[A_START], sentence_offsets, document_offsets)
        assert _document_of(row[B_END] - 1, sentence_offsets, document_offsets) == document
        assert row[A_END] <= row[B_START]
        if row[B_END] - row[A_START] < 125:  # truncation would have left exactly 125
            untruncated += 1
            assert row[A_END] == row[B_START]  # B is the very next sentence
            assert {row[A_START], row[A_END], row[B_END]} <= starts  # whole sentences
    assert untruncated > 30  # chunks that end at a document end


def test_random_next_b_comes_from_another_document(corpus):
    sentence_offsets, document_offsets, instances = corpus
    for row in instances[instances[:, IS_RANDOM_NEXT] == 1]:
        a_document = _document_of(row[A_START], sentence_offsets, document_offsets)
        b_document = _document_of(row[B_START], sentence_offsets, document_offsets)
        assert a_document != b_document
        assert _document_of(row[B_END] - 1, sentence_offsets, document_offsets) == b_document


def test_layout_lengths_and_segment_ids(corpus):
    sentence_offsets, _, instances = corpus
    tokens = np.arange(10, 10 + sentence_offsets[-1])
    for row in instances[:500]:
        input_ids, token_type_ids = assemble_pair(tokens, row, cls_id=CLS, sep_id=SEP)
        len_a, len_b = row[A_END] - row[A_START], row[B_END] - row[B_START]
        assert len_a >= 1 and len_b >= 1
        assert len(input_ids) == len_a + len_b + 3 <= 128
        assert input_ids[0] == CLS and input_ids[len_a + 1] == SEP and input_ids[-1] == SEP
        assert np.array_equal(input_ids[1 : len_a + 1], tokens[row[A_START] : row[A_END]])
        assert np.array_equal(input_ids[len_a + 2 : -1], tokens[row[B_START] : row[B_END]])
        assert token_type_ids.tolist() == [0] * (len_a + 2) + [1] * (len_b + 1)


def test_truncation_trims_long_pairs_to_fit():
    # Two documents of one 300-token sentence each: every pair must be cut to 125 tokens.
    sentence_offsets, document_offsets = _offsets([[300], [300], [300]])
    instances = build_instances(sentence_offsets, document_offsets, seed=3, dupe_round=0, max_seq_length=128)
    lengths = (instances[:, A_END] - instances[:, A_START]) + (instances[:, B_END] - instances[:, B_START])
    assert (lengths == 125).all()
    # Equal long sides: B loses the extra token (ties trim B).
    assert ((instances[:, A_END] - instances[:, A_START]) == 63).all()


def test_short_seq_prob_shortens_about_a_tenth_of_documents():
    # One-token sentences make every complete instance exactly the target length, so a
    # document's longest instance reveals its target (62 = 65 - 3 unless shortened).
    sentence_offsets, document_offsets = _offsets([[1] * 150 for _ in range(3000)])
    short = 0
    for d in range(3000):
        rows = create_instances_from_document(
            sentence_offsets, document_offsets, d, document_rng(9, 0, d), max_seq_length=65, short_seq_prob=0.1
        )
        longest = max((r[A_END] - r[A_START]) + (r[B_END] - r[B_START]) for r in rows)
        assert longest <= 62
        short += longest < 62
    # P(short) = 0.1 * 59/60 (randint(2, 62) can return 62 itself).
    assert abs(short / 3000 - 0.1 * 59 / 60) < 0.02


def test_instances_are_reproducible_per_seed_and_round():
    sentence_offsets, document_offsets = _random_corpus(2, 50, (20, 60))

    def build(seed, dupe_round):
        return build_instances(sentence_offsets, document_offsets, seed=seed, dupe_round=dupe_round)

    assert np.array_equal(build(1, 0), build(1, 0))
    assert not np.array_equal(build(1, 0), build(1, 1))
    assert not np.array_equal(build(1, 0), build(2, 0))


def test_single_document_corpus_falls_back_to_itself():
    # With one document the 10 tries fail and B comes from the same document, as in the reference.
    sentence_offsets, document_offsets = _offsets([[5] * 40])
    rows = create_instances_from_document(sentence_offsets, document_offsets, 0, random.Random(0))
    assert rows and all(r[B_END] <= 200 for r in rows)
