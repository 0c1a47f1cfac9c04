"""Causal-LM blocks and document-boundary masks: the stream of end-of-text-joined documents cut
into blocks loses and adds nothing, targets are the next tokens, and with document attention a
packed block computes exactly what each document computes alone (positions restarting)."""

import math

import numpy as np
import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.models.build import build_model
from lmforge.models.layout import JaggedLayout
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.objectives.clm import CausalLMObjective, assemble_stream_block, separator_positions, shifted_targets

SEP = 0


@pytest.fixture(scope="module")
def stream():
    rng = np.random.default_rng(0)
    documents = [rng.integers(5, 90, size=rng.integers(1, 40)) for _ in range(60)]
    tokens = np.concatenate(documents)
    starts = np.concatenate(([0], np.cumsum([len(d) for d in documents])[:-1]))
    reference = np.concatenate([np.append(d, SEP) for d in documents])  # doc0 <sep> doc1 <sep> ...
    return tokens, starts, reference


@pytest.mark.parametrize("block", [1, 7, 64])
def test_blocks_are_the_joined_stream(stream, block):
    tokens, starts, reference = stream
    separators = separator_positions(starts, len(tokens))
    assert np.array_equal(np.flatnonzero(reference == SEP), separators)
    blocks = [assemble_stream_block(tokens, separators, s, s + block, SEP)
              for s in range(0, len(reference) - block + 1, block)]
    joined = np.concatenate(blocks)
    assert np.array_equal(joined, reference[:len(joined)])  # only the incomplete tail is dropped
    assert len(reference) - len(joined) < block


def test_targets_are_next_tokens_and_stop_at_document_ends():
    ids = np.array([11, 12, SEP, 21, 22, 23, SEP, 31])
    labels, documents = shifted_targets(ids, SEP, document_attention=False)
    assert documents is None
    assert labels.tolist() == [12, SEP, 21, 22, 23, SEP, 31, IGNORE_INDEX]  # the separator predicts the next start
    labels, documents = shifted_targets(ids, SEP, document_attention=True)
    assert labels.tolist() == [12, SEP, IGNORE_INDEX, 22, 23, SEP, IGNORE_INDEX, IGNORE_INDEX]
    assert documents.tolist() == [1, 1, 1, 2, 2, 2, 2, 3]  # a piece ends with its separator


def _decoder(**changes) -> ModelConfig:
    base = dict(family="test", architecture="decoder", vocab_size=97, hidden_size=32, num_layers=2, num_heads=4,
                intermediate_size=64, max_positions=64, type_vocab_size=0, activation="gelu_tanh",
                norm_placement="pre", norm_eps=1e-5, embedding_norm=False, final_norm=True, pooler=False,
                hidden_dropout=0.0, attention_dropout=0.0, pad_token_id=None)
    return ModelConfig(**{**base, **changes})


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_document_attention_equals_each_document_alone(positions):
    extra = {} if positions == "learned" else dict(positions="rotary", norm_type="rmsnorm", feed_forward="gated",
                                                   activation="silu", bias=False, num_kv_heads=2)
    model = build_model(_decoder(**extra), "causal_lm", seed=0).eval()
    rng = np.random.default_rng(1)
    pieces = [[7, 4, 9], [5, 6, 8, 3, 2, 11], [13, 14]], [[21, 22, 23, 24, 25, 26, 27], [31, 32]]
    width = 11
    ids = torch.full((2, width), 1)
    mask = torch.zeros(2, width, dtype=torch.long)
    documents = torch.zeros(2, width, dtype=torch.long)
    for row, row_pieces in enumerate(pieces):
        at = 0
        for number, piece in enumerate(row_pieces, 1):
            ids[row, at:at + len(piece)] = torch.tensor(piece)
            documents[row, at:at + len(piece)] = number
            at += len(piece)
        mask[row, :at] = 1  # row 1 is right-padded
    ids[mask == 0] = int(rng.integers(40, 90))
    with torch.no_grad():
        packed = model(ids, mask, unpad=True, document_ids=documents)
        for row, row_pieces in enumerate(pieces):
            at = 0
            for piece in row_pieces:
                alone = model(torch.tensor([piece]))[0]
                assert torch.allclose(packed[row, at:at + len(piece)], alone, atol=1e-5)
                at += len(piece)
        # Without the document ids the later documents see the earlier ones.
        crossing = model(ids, mask, unpad=True)
        assert not torch.allclose(crossing[0, 3:9], packed[0, 3:9], atol=1e-3)


def test_layout_from_documents_splits_rows_and_restarts_positions():
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    documents = torch.tensor([[1, 1, 2, 2, 2], [1, 1, 1, 0, 0]])
    layout = JaggedLayout.from_documents(mask, documents)
    assert layout.offsets.tolist() == [0, 2, 5, 8]
    assert layout.max_len == 3 and layout.batch_size == 3
    assert layout.position_ids(torch.device("cpu")).tolist() == [0, 1, 0, 1, 2, 0, 1, 2]
    # Equal ids in different rows are different sequences.
    same = JaggedLayout.from_documents(torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2, dtype=torch.long))
    assert same.offsets.tolist() == [0, 2, 4]


def test_document_ids_need_the_unpadded_layout():
    model = build_model(_decoder(), "causal_lm", seed=0)
    with pytest.raises(UserError, match="unpad"):
        model(torch.ones(1, 4, dtype=torch.long), document_ids=torch.ones(1, 4, dtype=torch.long))


@pytest.mark.parametrize("unpad", [False, True])
def test_loss_reads_only_positions_with_targets(unpad):
    model = build_model(_decoder(), "causal_lm", seed=0).eval()
    objective = CausalLMObjective(pad_id=0)
    examples = []
    for ids in ([5, 6, 7, SEP, 8, 9], [10, 11, SEP, 12]):
        ids = np.asarray(ids)
        labels, _ = shifted_targets(ids, SEP, document_attention=False)
        examples.append({"input_ids": ids, "labels": labels})
    batch = objective.collate(examples)
    assert objective.counts(batch) == {"lm": 5 + 3}  # no target at padding or after the last token
    with torch.no_grad():
        total = objective.loss_sums(model, batch, unpad)["lm"]
        logits = model(batch["input_ids"], batch["attention_mask"])
    chosen = batch["labels"] != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[chosen], batch["labels"][chosen], reduction="sum")
    assert float(total) == pytest.approx(float(expected), rel=1e-5)
    with torch.no_grad():
        sums = objective.eval_sums(model, batch, unpad)
    assert sums["lm_loss"][1] == 8
    derived = objective.derived_metrics({"eval_lm_loss": sums["lm_loss"][0] / 8})
    assert derived["eval_perplexity"] == pytest.approx(math.exp(float(expected) / 8), rel=1e-5)


def test_collate_pads_document_ids_with_zero():
    objective = CausalLMObjective(pad_id=3)
    examples = [{"input_ids": np.array([5, SEP, 6]), "labels": np.array([SEP, IGNORE_INDEX, IGNORE_INDEX]),
                 "document_ids": np.array([1, 1, 2])},
                {"input_ids": np.array([7]), "labels": np.array([IGNORE_INDEX]), "document_ids": np.array([1])}]
    batch = objective.collate(examples)
    assert batch["document_ids"].tolist() == [[1, 1, 2], [1, 0, 0]]
    assert batch["input_ids"].tolist() == [[5, SEP, 6], [7, 3, 3]]
