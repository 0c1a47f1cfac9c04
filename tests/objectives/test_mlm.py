"""BERT MLM masking: the reference's statistics, counts, whole words and seeding."""

import numpy as np
import pytest

from lmforge.objectives.base import IGNORE_INDEX
from lmforge.objectives.mlm import MaskingPolicy, mask_tokens, num_to_predict

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = frozenset({PAD, CLS, SEP, MASK})
VOCAB = 1000


def _sequence(rng: np.random.Generator, length: int) -> np.ndarray:
    """[CLS] a [SEP] b [SEP] with ordinary ids (>= 5)."""
    ids = rng.integers(5, VOCAB, size=length)
    ids[0] = CLS
    ids[length // 2] = SEP
    ids[-1] = SEP
    return ids


def _mask(ids, rng, **kwargs):
    options = dict(vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIALS)
    options.update(kwargs)
    return mask_tokens(ids, rng, **options)


def test_num_to_predict_rounds_half_to_even_like_the_reference():
    assert num_to_predict(128, 0.15, 20) == 19
    assert num_to_predict(512, 0.15, None) == 77
    assert num_to_predict(512, 0.15, 20) == 20
    assert num_to_predict(3, 0.15, 20) == 1  # round(0.45) = 0, but at least one
    assert num_to_predict(10, 0.25, None) == 2  # 2.5 rounds to even
    assert num_to_predict(14, 0.25, None) == 4  # 3.5 rounds to even


def test_masking_statistics_over_many_tokens():
    data_rng = np.random.default_rng(0)
    chosen = masked_as_mask = kept = randomised = total = 0
    random_ids = []
    for i in range(1000):
        length = int(data_rng.integers(100, 300))
        ids = _sequence(data_rng, length)
        masked, labels = _mask(ids, np.random.default_rng([7, i]), max_predictions=None)
        picked = labels != IGNORE_INDEX
        # Exactly the reference's n, and labels hold the original ids.
        assert picked.sum() == round(length * 0.15)
        assert np.array_equal(labels[picked], ids[picked])
        # Specials are never chosen and never changed.
        special = np.isin(ids, list(SPECIALS))
        assert not picked[special].any()
        assert np.array_equal(masked[~picked], ids[~picked])
        total += length
        chosen += picked.sum()
        masked_as_mask += (masked[picked] == MASK).sum()
        kept += (masked[picked] == ids[picked]).sum()
        other = picked & (masked != MASK) & (masked != ids)
        randomised += other.sum()
        random_ids.extend(masked[other].tolist())
    assert total >= 100_000
    assert abs(chosen / total - 0.15) < 0.005
    assert abs(masked_as_mask / chosen - 0.8) < 0.01
    # A random replacement equal to the original (p 1/VOCAB) counts as kept: both stay ~10%.
    assert abs(kept / chosen - 0.1) < 0.01
    assert abs(randomised / chosen - 0.1) < 0.01
    # The random entry is drawn over the whole vocabulary, specials included, as the reference.
    assert min(random_ids) < 5 and max(random_ids) < VOCAB


def test_max_predictions_caps_the_count():
    ids = _sequence(np.random.default_rng(1), 512)
    _, labels = _mask(ids, np.random.default_rng(2), max_predictions=20)
    assert (labels != IGNORE_INDEX).sum() == 20
    _, labels = _mask(ids[:128], np.random.default_rng(2), max_predictions=20)
    assert (labels != IGNORE_INDEX).sum() == 19


def test_no_candidates_masks_nothing():
    ids = np.array([CLS, SEP, SEP])
    masked, labels = _mask(ids, np.random.default_rng(0))
    assert np.array_equal(masked, ids) and (labels == IGNORE_INDEX).all()


def _word_start_table() -> np.ndarray:
    table = np.zeros(VOCAB, dtype=bool)
    table[:500] = True  # ids 500.. are "##" continuation pieces
    return table


def test_whole_word_masking_takes_whole_words():
    word_start = _word_start_table()
    data_rng = np.random.default_rng(3)
    exact = 0
    trials = 300
    for t in range(trials):
        words = [
            [int(data_rng.integers(5, 500))] + data_rng.integers(500, VOCAB, size=data_rng.integers(0, 4)).tolist()
            for _ in range(40)
        ]
        ids = np.array([CLS] + [piece for word in words for piece in word] + [SEP])
        masked, labels = _mask(ids, np.random.default_rng(t), word_start=word_start, max_predictions=None)
        picked = labels != IGNORE_INDEX
        n = num_to_predict(len(ids), 0.15, None)
        assert picked.sum() <= n
        exact += picked.sum() == n
        position = 1
        for word in words:
            span = picked[position : position + len(word)]
            assert span.all() or not span.any(), "a word was masked in part"
            position += len(word)
    # Words that would overflow n are skipped, and single-piece words usually fill it exactly.
    assert exact / trials > 0.95


def test_whole_word_joins_a_leading_piece_to_the_previous_candidate_across_sep():
    # [CLS] w [SEP] ##x [SEP]: the reference attaches ##x to w (its last candidate).
    ids = np.array([CLS, 10, SEP, 600, SEP])
    _, labels = _mask(ids, np.random.default_rng(0), word_start=_word_start_table(), mlm_probability=0.4)
    assert labels.tolist() == [IGNORE_INDEX, 10, IGNORE_INDEX, 600, IGNORE_INDEX]
    # With room for one token only, the two-token word is skipped and nothing is masked.
    _, labels = _mask(ids, np.random.default_rng(0), word_start=_word_start_table(), mlm_probability=0.15)
    assert (labels == IGNORE_INDEX).all()


def test_dynamic_masks_are_reproducible_and_fresh_each_epoch():
    ids = _sequence(np.random.default_rng(4), 128)
    policy = MaskingPolicy(seed=12345, mode="dynamic")

    def labels(p, epoch, index):
        return _mask(ids, p.rng(epoch, index))[1]

    assert np.array_equal(labels(policy, 0, 5), labels(MaskingPolicy(seed=12345), 0, 5))
    assert not np.array_equal(labels(policy, 0, 5), labels(policy, 1, 5))
    assert not np.array_equal(labels(policy, 0, 5), labels(policy, 0, 6))
    assert not np.array_equal(labels(policy, 0, 5), labels(MaskingPolicy(seed=1), 0, 5))
    # Dynamic masks never cycle.
    assert not np.array_equal(labels(policy, 0, 5), labels(policy, 10, 5))


def test_static_masks_repeat_with_period_dupe_factor():
    ids = _sequence(np.random.default_rng(5), 128)
    policy = MaskingPolicy(seed=12345, mode="static", dupe_factor=3)
    masks = [_mask(ids, policy.rng(epoch, 9))[0] for epoch in range(7)]
    assert np.array_equal(masks[0], masks[3]) and np.array_equal(masks[0], masks[6])
    assert np.array_equal(masks[1], masks[4])
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    # Pass e of static masking is pass e % dupe_factor of dynamic masking.
    dynamic = MaskingPolicy(seed=12345, mode="dynamic")
    assert np.array_equal(masks[4], _mask(ids, dynamic.rng(1, 9))[0])


def test_policy_rejects_unknown_mode():
    with pytest.raises(ValueError):
        MaskingPolicy(seed=1, mode="sometimes")
