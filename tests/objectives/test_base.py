"""The one collate (pretraining examples and fine-tuning features alike) and the MLM + NSP
objective's sums against the loss over every position of a padded batch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.objectives.base import IGNORE_INDEX, collate
from lmforge.objectives.mlm import MaskedLMObjective


def test_collate_pads_pretraining_examples():
    examples = [
        {"input_ids": np.array([2, 7, 3, 8, 3]), "token_type_ids": np.array([0, 0, 0, 1, 1]),
         "labels": np.array([-100, 7, -100, -100, -100]), "next_sentence_label": np.asarray(1)},
        {"input_ids": np.array([2, 9, 3]), "token_type_ids": np.array([0, 0, 0]),
         "labels": np.array([-100, -100, 3]), "next_sentence_label": np.asarray(0)},
    ]
    batch = collate(examples, pad_id=5)
    assert sorted(batch) == ["attention_mask", "input_ids", "labels", "next_sentence_label", "token_type_ids"]
    assert all(t.dtype == torch.long for t in batch.values())
    assert batch["input_ids"].tolist() == [[2, 7, 3, 8, 3], [2, 9, 3, 5, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 7, -100, -100, -100], [-100, -100, 3, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["next_sentence_label"].tolist() == [1, 0]


def test_collate_takes_task_features_and_drops_bookkeeping():
    features = [
        {"input_ids": [2, 4, 3], "start_position": 1, "end_position": 1, "offsets": [None, (0, 3), None],
         "example_index": 0},
        {"input_ids": [2, 4, 6, 6, 3], "start_position": 0, "end_position": 0, "offsets": [None] * 5,
         "example_index": 0},
    ]
    batch = collate(features, pad_id=0)
    assert sorted(batch) == ["attention_mask", "end_position", "input_ids", "start_position"]
    assert batch["input_ids"].tolist() == [[2, 4, 3, 0, 0], [2, 4, 6, 6, 3]]
    assert batch["start_position"].tolist() == [1, 0] and batch["end_position"].tolist() == [1, 0]
    with pytest.raises(ValueError):
        collate([], pad_id=0)


def test_masked_lm_objective_sums_equal_the_padded_loss():
    model = lmforge.build("bert-test", task="pretraining", seed=0, vocab_size=40).eval()
    generator = torch.Generator().manual_seed(1)
    examples = []
    for length in (9, 6, 12):
        ids = torch.randint(5, 40, (length,), generator=generator).numpy()
        labels = np.full(length, IGNORE_INDEX)
        labels[[1, length - 2]] = ids[[1, length - 2]]
        examples.append({"input_ids": ids, "token_type_ids": np.zeros(length, dtype=np.int64), "labels": labels,
                         "next_sentence_label": np.asarray(length % 2)})
    objective = MaskedLMObjective(pad_id=0)
    batch = objective.collate(examples)
    assert objective.counts(batch) == {"mlm": 6, "nsp": 3}
    with torch.no_grad():
        sums = objective.loss_sums(model, batch, unpad=True)
        full = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # logits everywhere
        metrics = objective.eval_sums(model, batch, unpad=True)
    mlm = F.cross_entropy(full.mlm_logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    nsp = F.cross_entropy(full.pair_logits, batch["next_sentence_label"], reduction="sum")
    assert list(sums) == ["mlm", "nsp"]
    assert float(sums["mlm"]) == pytest.approx(float(mlm), rel=1e-5)
    assert float(sums["nsp"]) == pytest.approx(float(nsp), rel=1e-5)
    assert metrics["mlm_loss"] == (pytest.approx(float(mlm), rel=1e-5), 6)
    chosen = batch["labels"] != IGNORE_INDEX
    correct = int((full.mlm_logits[chosen].argmax(-1) == batch["labels"][chosen]).sum())
    assert metrics["mlm_accuracy"] == (correct, 6)
    assert metrics["nsp_loss"][1] == metrics["nsp_accuracy"][1] == 3
