"""ALBERT's n-gram masking and fairseq's RoBERTa masking: statistics over large samples,
the budget and overlap rules, and seeding."""

import numpy as np
import pytest

from lmforge.objectives.base import IGNORE_INDEX
from lmforge.objectives.mlm import fairseq_mask_tokens, mask_tokens, ngram_choice, ngram_probabilities

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = frozenset({PAD, CLS, SEP, MASK})
VOCAB = 1000
# Word starts over the vocabulary: ids below 500 open a word, the rest continue one.
WORD_START = np.arange(VOCAB) < 500


def _sequence(rng: np.random.Generator, length: int) -> np.ndarray:
    ids = rng.integers(5, VOCAB, size=length)
    ids[0], ids[-1] = CLS, SEP
    return ids


def _words(ids: np.ndarray) -> list[list[int]]:
    """Positions of each whole word (specials excluded), as the reference groups them."""
    words: list[list[int]] = []
    for position, token in enumerate(ids.tolist()):
        if token in SPECIALS:
            continue
        if WORD_START[token] or not words:
            words.append([position])
        else:
            words[-1].append(position)
    return words


def test_ngram_probabilities_favor_shorter_ngrams():
    assert np.allclose(ngram_probabilities(3), [6 / 11, 3 / 11, 2 / 11])
    assert np.allclose(ngram_probabilities(3).round(3), [0.545, 0.273, 0.182])


def test_ngram_lengths_follow_one_over_n():
    """Drawn n over ~40k windows: shares within 1 point of 6/11, 3/11, 2/11."""
    drawn: list[int] = []
    for i in range(1000):
        rng = np.random.default_rng([3, i])
        ngram_choice(np.arange(512), 77, rng, None, max_ngram=3, drawn_lengths=drawn)
    shares = np.bincount(drawn, minlength=4)[1:] / len(drawn)
    assert len(drawn) > 30_000
    assert np.abs(shares - ngram_probabilities(3)).max() < 0.01, shares


def test_ngram_masking_takes_whole_word_ngrams_without_overlap_within_budget():
    data_rng = np.random.default_rng(0)
    spans = {1: 0, 2: 0, 3: 0}
    for i in range(500):
        ids = _sequence(data_rng, int(data_rng.integers(60, 200)))
        _, labels = mask_tokens(ids, np.random.default_rng([9, i]), vocab_size=VOCAB, mask_id=MASK,
                                     special_ids=SPECIALS, max_predictions=20, word_start=WORD_START, max_ngram=3)
        picked = labels != IGNORE_INDEX
        n = min(20, max(1, round(len(ids) * 0.15)))
        assert 0 < picked.sum() <= n
        assert not picked[[0, len(ids) - 1]].any()
        words = _words(ids)
        word_picked = [bool(picked[w].all()) for w in words]
        for positions in words:  # whole words only
            assert picked[positions].all() or not picked[positions].any(), (i, positions)
        # runs of consecutive picked words: no run is longer than what non-overlapping
        # n-grams of at most 3 words can form, and the run lengths show shorter n dominate
        run = 0
        for flag in [*word_picked, False]:
            if flag:
                run += 1
            elif run:
                spans[min(run, 3)] += 1
                run = 0
    assert spans[1] > spans[2] > 0 and spans[3] > 0


def test_budget_tries_shorter_ngrams_before_skipping():
    # One window of three 1-token units and a budget of 2: a drawn 3-gram shrinks to a 2-gram.
    for seed in range(50):
        chosen = ngram_choice(np.arange(3), 2, np.random.default_rng(seed), None, max_ngram=3)
        assert len(chosen) == 2 and len(set(chosen.tolist())) == 2
    # A word longer than the whole budget is skipped, a shorter one still fits.
    starts = np.array([True, False, False, True])  # words [0, 1, 2] and [3]
    for seed in range(20):
        assert ngram_choice(np.arange(4), 1, np.random.default_rng(seed), starts, max_ngram=3).tolist() == [3]


def test_ngram_masking_replaces_80_10_10():
    data_rng = np.random.default_rng(1)
    mask = kept = other = 0
    for i in range(400):
        ids = _sequence(data_rng, 256)
        masked, labels = mask_tokens(ids, np.random.default_rng([5, i]), vocab_size=VOCAB, mask_id=MASK,
                                     special_ids=SPECIALS, max_predictions=None, max_ngram=3)
        picked = labels != IGNORE_INDEX
        assert picked.sum() == round(256 * 0.15)  # token n-grams always fill the budget here
        mask += (masked[picked] == MASK).sum()
        kept += (masked[picked] == ids[picked]).sum()
        other += ((masked[picked] != MASK) & (masked[picked] != ids[picked])).sum()
    total = mask + kept + other
    assert abs(mask / total - 0.8) < 0.01 and abs(kept / total - 0.1) < 0.01 and abs(other / total - 0.1) < 0.01


def _fairseq(ids, rng, **kwargs):
    return fairseq_mask_tokens(ids, rng, vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIALS, **kwargs)


def test_fairseq_mask_count_is_floor_of_p_len_plus_uniform():
    """At 103 tokens 0.15 * 103 = 15.45: 15 or 16 masks, 16 with p 0.45; mean exactly 15.45."""
    data_rng = np.random.default_rng(2)
    counts = []
    for i in range(6000):
        ids = _sequence(data_rng, 103)
        _, labels = _fairseq(ids, np.random.default_rng([11, i]))
        counts.append(int((labels != IGNORE_INDEX).sum()))
    counts = np.asarray(counts)
    assert set(counts.tolist()) == {15, 16}
    assert abs(counts.mean() - 15.45) < 0.02
    _, labels = _fairseq(_sequence(data_rng, 512), np.random.default_rng(0))
    assert (labels != IGNORE_INDEX).sum() in (76, 77)  # floor(76.8 + U)


def test_fairseq_positions_are_uniform_specials_included_and_80_10_10():
    data_rng = np.random.default_rng(4)
    chosen_at = np.zeros(64)
    mask = kept = other = 0
    for i in range(8000):
        ids = _sequence(data_rng, 64)
        masked, labels = _fairseq(ids, np.random.default_rng([13, i]))
        picked = labels != IGNORE_INDEX
        assert np.array_equal(labels[picked], ids[picked]) and np.array_equal(masked[~picked], ids[~picked])
        chosen_at += picked
        mask += (masked[picked] == MASK).sum()
        kept += (masked[picked] == ids[picked]).sum()
        randomised = picked & (masked != MASK) & (masked != ids)
        other += randomised.sum()
        assert not np.isin(masked[randomised], list(SPECIALS)).any()  # random tokens are ordinary
    share = chosen_at / 8000
    assert abs(share[0] - 0.15) < 0.015 and abs(share[-1] - 0.15) < 0.015  # <s> and </s> are candidates
    assert np.abs(share - share.mean()).max() < 0.02
    total = mask + kept + other
    assert abs(mask / total - 0.8) < 0.01 and abs(kept / total - 0.1) < 0.01 and abs(other / total - 0.1) < 0.01


def test_fairseq_whole_words_count_words_and_keep_them_whole():
    data_rng = np.random.default_rng(6)
    for i in range(300):
        ids = _sequence(data_rng, 120)
        ids[1] = 7  # a word start: fairseq would join a leading continuation to <s>'s unit
        masked, labels = _fairseq(ids, np.random.default_rng([17, i]), word_start=WORD_START)
        picked = labels != IGNORE_INDEX
        words = _words(ids)
        units = len(words) + 2  # fairseq's specials are words of their own
        picked_words = sum(bool(picked[w].any()) for w in words) + int(picked[0]) + int(picked[-1])
        assert picked_words in (int(0.15 * units), int(0.15 * units) + 1)
        for positions in words:
            assert picked[positions].all() or not picked[positions].any()
            if picked[positions].all():  # one decision per word: all <mask>, all kept or all random
                kinds = {"mask" if m == MASK else "kept" if m == o else "random"
                         for m, o in zip(masked[positions], ids[positions])}
                assert len(kinds - {"kept"}) <= 1


@pytest.mark.parametrize("scheme", ["bert-ngram", "fairseq"])
def test_masks_repeat_for_a_seed_and_differ_between_seeds(scheme):
    ids = _sequence(np.random.default_rng(0), 300)

    def draw(seed):
        rng = np.random.default_rng(seed)
        if scheme == "fairseq":
            return _fairseq(ids, rng)
        return mask_tokens(ids, rng, vocab_size=VOCAB, mask_id=MASK, special_ids=SPECIALS,
                           word_start=WORD_START, max_ngram=3)

    first, again, other = draw([1, 0, 5]), draw([1, 0, 5]), draw([1, 1, 5])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
