"""A toy model, task and dataset to drive ``lmforge.training.loop.Trainer`` in tests: a bag of
embeddings, dropout on it (each mask recorded), a two-way classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.objectives.base import Objective


class ToyModel(nn.Module):
    def __init__(self, vocab: int = 32, width: int = 64, dropout: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.out = nn.Linear(width, 2)
        self.dropout = dropout
        self.masks: list[torch.Tensor] = []  # one per training forward

    def forward(self, input_ids, attention_mask, token_type_ids=None, unpad=False):
        hidden = self.embed(input_ids).mean(1)
        if self.training:
            mask = F.dropout(torch.ones_like(hidden), self.dropout, training=True)
            self.masks.append(mask != 0)
            hidden = hidden * mask
        return self.out(hidden)


class ToyObjective(Objective):
    """Cross-entropy per example on ``label``."""

    def counts(self, batch: dict) -> dict[str, int]:
        return {"toy": int(batch["input_ids"].shape[0])}

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        logits = model(batch["input_ids"], batch["attention_mask"], None, unpad=unpad)
        return {"toy": F.cross_entropy(logits.float(), batch["label"], reduction="sum")}

    def eval_sums(self, model, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        return {}


class RecordingDataset:
    """``n`` examples; remembers which indices were read, in order."""

    def __init__(self, n: int = 64, vocab: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.examples = [{"input_ids": torch.randint(1, vocab, (6,), generator=generator).tolist(), "label": i % 2}
                         for i in range(n)]
        self.read: list[int] = []

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        self.read.append(index)
        return self.examples[index]
