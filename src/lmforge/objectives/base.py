"""What the training loop trains: the one protocol of pretraining objectives and fine-tuning
tasks, the one batcher, and the one label that the loss ignores.

An objective (BERT's MLM + NSP in ``lmforge.objectives.mlm``, RoBERTa's MLM; later causal LM,
BART denoising or T5 span corruption) and a fine-tuning task (``lmforge.tasks``) both turn
examples into a batch (``collate``) and a batch into summed losses. The loop
(``lmforge.training.loop.Trainer``) divides each summed loss term by the number of items it
covers over the whole global batch (``counts``, summed over micro-batches and ranks), so the
loss is the mean over the global batch however it is split; that is the convention of
google-research/bert ``run_pretraining.py``, whose MLM loss averages over the chosen positions
(``label_weights``) and whose NSP loss over the sequences.

Examples are dicts of 1-D int sequences (lists or numpy arrays) and int scalars. ``collate``
knows these keys:

- ``input_ids`` (padded with the tokenizer's pad id) and, derived from their lengths,
  ``attention_mask`` (1 on real tokens, 0 on padding: right padding, as BERT);
- ``token_type_ids`` (padded with 0);
- ``labels``: a target per token (MLM targets, NER tags), padded with ``IGNORE_INDEX``;
- per-example scalar targets: ``label`` (classification), ``start_position`` and
  ``end_position`` (span QA), ``next_sentence_label`` (NSP).

Other keys (``word_ids``, ``offsets``, ``example_index``) are bookkeeping for decoding and stay
out of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

# Label of positions that add nothing to the loss: torch's default ``ignore_index`` of
# cross-entropy. MLM puts it on unchosen positions, NER on all but each word's first sub-token.
IGNORE_INDEX = -100

SCALAR_TARGETS = ("label", "start_position", "end_position", "next_sentence_label")


def collate(examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of examples to the longest one: LongTensors ``(B, T)`` for the per-token
    keys and ``(B,)`` for the scalar targets (the keys of the first example decide)."""
    if not examples:
        raise ValueError("collate needs at least one example")
    lengths = [len(e["input_ids"]) for e in examples]
    width = max(lengths)

    def padded(key: str, fill: int) -> torch.Tensor:
        rows = np.full((len(examples), width), fill, dtype=np.int64)
        for row, (example, n) in enumerate(zip(examples, lengths)):
            rows[row, :n] = np.asarray(example[key], dtype=np.int64)
        return torch.from_numpy(rows)

    batch = {
        "input_ids": padded("input_ids", pad_id),
        "attention_mask": torch.from_numpy(
            (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
        ),
    }
    first = examples[0]
    if "token_type_ids" in first:
        batch["token_type_ids"] = padded("token_type_ids", 0)
    if "labels" in first:
        batch["labels"] = padded("labels", IGNORE_INDEX)
    for key in SCALAR_TARGETS:
        if key in first:
            batch[key] = torch.tensor([int(e[key]) for e in examples], dtype=torch.long)
    return batch


class Objective:
    """What the training loop needs from whatever it trains (pretraining objective or
    fine-tuning task); subclasses fill in the loss.

    ``pad_id`` is the tokenizer's padding id, used by ``collate``.
    """

    pad_id: int = 0

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """A batch of tensors from a list of examples."""
        return collate(examples, self.pad_id)

    def counts(self, batch: dict) -> dict[str, int]:
        """Per loss term, the number of items it averages over in this batch."""
        raise NotImplementedError

    def loss_sums(self, model: nn.Module, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        """Per loss term (the keys of ``counts``, in the same order), the summed loss of this batch."""
        raise NotImplementedError

    def eval_sums(self, model: nn.Module, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        """Held-out metrics as (sum, count) pairs; the loop adds them over batches and ranks."""
        raise NotImplementedError

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Held-out metrics computed from the averaged ``eval_*`` ones (perplexity from the loss)."""
        return {}
