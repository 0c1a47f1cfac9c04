"""The chunked argmax of greedy decoding picks exactly the index ``torch.argmax`` picks,
first maximum on ties included, whatever the vocabulary's remainder after whole chunks."""

import pytest
import torch

from lmforge.generation.search import ARGMAX_CHUNK, greedy_tokens


@pytest.mark.parametrize("vocab", [16 * ARGMAX_CHUNK, 50257, 16 * ARGMAX_CHUNK + 1])
def test_greedy_tokens_equal_argmax(vocab):
    g = torch.Generator().manual_seed(vocab)
    scores = torch.randn(9, vocab, generator=g)
    scores[1, [5, vocab - 1]] = 100.0  # tie across chunks: the first wins
    scores[2, [ARGMAX_CHUNK + 3, ARGMAX_CHUNK + 4]] = 100.0  # tie inside a chunk
    scores[3, vocab - 1] = 100.0  # the maximum in the (possibly short) last chunk
    scores[4, -2:] = 100.0
    scores[5] = 0.0  # all equal: index 0
    scores[6, 0] = 100.0
    scores[7, vocab - vocab % ARGMAX_CHUNK - 1] = 100.0  # the last column of the last whole chunk
    expected = scores.argmax(dim=-1)
    assert expected[1] == 5 and expected[5] == 0  # the cases above are what they claim
    assert torch.equal(greedy_tokens(scores), expected)
