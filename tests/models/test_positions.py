"""Positions come from the layout and the attention mask (D4): a left-padded batch gives every
real token the position it has alone, on the padded and the unpadded path alike (the padded
path once counted the pads, moving outputs by up to 2.4), and cached tokens continue the count."""

import torch

import lmforge
from lmforge.families.bert import bert_config
from lmforge.models.layout import JaggedLayout, PaddedLayout

CONFIG = bert_config(2, 32, 4, vocab_size=50, intermediate_size=64, max_positions=16, hidden_dropout=0.0,
                     attention_dropout=0.0)


def test_left_padding_moves_no_position():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    ids = torch.ones_like(mask)
    padded = PaddedLayout.from_inputs(ids, mask).position_ids(torch.device("cpu"))
    assert padded.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 3, 4]]
    jagged = JaggedLayout.from_mask(mask).position_ids(torch.device("cpu"))
    assert jagged.tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 0, 1]
    # A decode step after 5 cached tokens: the new token's position counts real tokens only.
    step = PaddedLayout.from_inputs(ids[:, :1], torch.cat([mask, torch.ones(3, 1, dtype=torch.long)], 1), 5)
    assert step.position_ids(torch.device("cpu")).tolist() == [[3], [5], [5]]


def test_bert_left_padded_equals_alone():
    model = lmforge.build(CONFIG, task="backbone", seed=0).eval()
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, 50, (n,), generator=g) for n in (6, 3, 1)]
    ids = torch.zeros(3, 6, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, 6 - len(seq):], mask[row, 6 - len(seq):] = seq, 1
    with torch.no_grad():
        for unpad in (False, True):
            out = model(ids, mask, unpad=unpad)
            hidden = out.padded()
            for row, seq in enumerate(seqs):
                alone = model(seq[None])
                diff = (hidden[row][mask[row].bool()] - alone.last_hidden_state[0]).abs().max()
                assert diff <= 1e-5, (unpad, row, float(diff))
                assert (out.pooled[row] - alone.pooled[0]).abs().max() <= 1e-5  # [CLS] is the first real token
