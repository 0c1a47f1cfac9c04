"""Sequence heads pick their token by ``ModelConfig.pooling``: the first real token (BERT's
[CLS]), the last real token (GPT-2's classifier) or the final EOS (BART's classifier), the same
in right-padded, left-padded and unpadded batches."""

import pytest
import torch

import lmforge
from lmforge.config import ModelConfig
from lmforge.models.layout import JaggedLayout, PaddedLayout

EOS = 2


def batch(side: str):
    rows = [[5, 6, EOS, 7, EOS], [8, EOS], [9, 10, 11]]  # the last row has no EOS: its first token stands in
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, span], mask[i, span] = torch.tensor(row), 1
    return ids, mask


# Token id of the pooled token per row, for each pooling.
EXPECTED = {"first": [5, 8, 9], "last": [EOS, EOS, 11], "eos": [EOS, EOS, None]}


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["first", "last", "eos"])
def test_layouts_pool_the_same_token(side, pooling):
    ids, mask = batch(side)
    hidden = ids.float()[..., None].repeat(1, 1, 3)  # each token's hidden state is its id
    jagged = JaggedLayout.from_mask(mask)
    padded_pool = PaddedLayout.from_inputs(ids, mask).pool(hidden, pooling, ids, EOS)[:, 0]
    jagged_pool = jagged.pool(jagged.unpad(hidden), pooling, jagged.unpad(ids), EOS)[:, 0]
    for row, want in enumerate(EXPECTED[pooling]):
        if want is not None:
            assert padded_pool[row] == want and jagged_pool[row] == want, (row, padded_pool, jagged_pool)


def test_eos_pooling_takes_the_last_eos():
    ids, mask = batch("right")
    hidden = torch.arange(ids.numel(), dtype=torch.float).view(*ids.shape, 1)
    pooled = PaddedLayout.from_inputs(ids, mask).pool(hidden, "eos", ids, EOS)
    assert pooled[0, 0] == hidden[0, 4, 0] and pooled[1, 0] == hidden[1, 1, 0]


def test_decoder_classifier_reads_the_last_real_token():
    """A GPT-2-style classifier: logits of a padded batch equal those of each sequence alone."""
    config = ModelConfig(family="test", architecture="decoder", vocab_size=50, hidden_size=16, num_layers=2,
                         num_heads=2, intermediate_size=32, type_vocab_size=0, norm_placement="pre",
                         embedding_norm=False, final_norm=True, pooler=False, pooling="last", hidden_dropout=0.0,
                         attention_dropout=0.0, labels=("a", "b", "c"))
    model = lmforge.build(config, task="sequence_classification", seed=0).eval()
    for side in ("right", "left"):
        ids, mask = batch(side)
        with torch.no_grad():
            for unpad in (False, True):
                logits = model(ids, mask, unpad=unpad)
                for row in range(ids.shape[0]):
                    alone = model(ids[row][mask[row].bool()][None])
                    assert (logits[row] - alone[0]).abs().max() <= 1e-5
