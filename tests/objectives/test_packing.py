"""FULL-SENTENCES packing: block sizes, greedy fill, document separators, no token lost."""

import numpy as np
import pytest

from lmforge.objectives.packing import assemble_block, pack_blocks

CLS, SEP = 2, 3
MAX = 64


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    documents = [rng.integers(1, 30, size=rng.integers(1, 25)).tolist() for _ in range(200)]
    documents[7][2] = 200  # sentences longer than a block are cut
    documents[50] = [MAX - 2]  # exactly one full block
    documents[51] = [3 * (MAX - 2)]  # exact multiple of the block
    lengths = [n for doc in documents for n in doc]
    sentence_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    document_offsets = np.concatenate(([0], np.cumsum([len(d) for d in documents]))).astype(np.int64)
    tokens = np.arange(10, 10 + sentence_offsets[-1])  # distinct, never CLS/SEP
    document_starts = sentence_offsets[document_offsets[:-1]]
    blocks = pack_blocks(sentence_offsets, document_offsets, MAX)
    assembled = [assemble_block(tokens, s, e, document_starts, cls_id=CLS, sep_id=SEP) for s, e in blocks]
    return sentence_offsets, document_starts, tokens, blocks, assembled


def test_blocks_fit_and_are_framed(corpus):
    *_, assembled = corpus
    for block in assembled:
        assert 3 <= len(block) <= MAX
        assert block[0] == CLS and block[-1] == SEP
        assert (block[1:-1] != CLS).all()


def test_every_token_is_kept_in_order(corpus):
    _, document_starts, tokens, blocks, assembled = corpus
    body = np.concatenate([block[1:-1] for block in assembled])
    assert np.array_equal(body[body != SEP], tokens)
    # One separator per document start inside a block, at that start.
    inner = sum(int(((document_starts > s) & (document_starts < e)).sum()) for s, e in blocks)
    assert (body == SEP).sum() == inner
    starts = set(document_starts.tolist())
    previous = None
    for token in body:
        if token == SEP:
            assert previous is not None
        elif previous == SEP:
            assert token - 10 in starts
        previous = token


def test_blocks_hold_whole_sentences_and_are_filled_greedily(corpus):
    sentence_offsets, document_starts, _, blocks, assembled = corpus
    boundaries = set(sentence_offsets.tolist())
    first_tokens = set(document_starts.tolist())
    lengths = np.diff(sentence_offsets)
    assert blocks[0, 0] == 0 and blocks[-1, 1] == sentence_offsets[-1]
    assert np.array_equal(blocks[1:, 0], blocks[:-1, 1])  # contiguous, in order
    for (start, stop), block in zip(blocks, assembled):
        # A block edge inside a sentence only happens in a sentence longer than a block.
        if start not in boundaries:
            assert lengths[np.searchsorted(sentence_offsets, start, side="right") - 1] > MAX - 2
        if stop not in boundaries:
            assert lengths[np.searchsorted(sentence_offsets, stop, side="right") - 1] > MAX - 2
        elif stop < sentence_offsets[-1]:
            # Greedy: the next sentence (plus a separator if it starts a document) did not fit.
            next_length = lengths[np.searchsorted(sentence_offsets, stop)]
            assert len(block) + next_length + (stop in first_tokens) > MAX


def test_long_sentence_is_cut_into_full_blocks(corpus):
    _, _, _, blocks, _ = corpus
    sizes = blocks[:, 1] - blocks[:, 0]
    assert (sizes == MAX - 2).sum() >= 4  # 200 -> 62 + 62 + 62 + 14, and the 3 x 62 sentence


def test_tiny_limit_is_rejected():
    with pytest.raises(ValueError):
        pack_blocks(np.array([0, 3]), np.array([0, 1]), 2)
