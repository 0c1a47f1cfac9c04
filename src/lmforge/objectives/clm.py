"""Causal-LM pretraining: GPT (Radford et al. 2018) and GPT-2 (Radford et al. 2019) blocks and loss.

Data follows GPT-2's convention and transformers' ``run_clm.py`` (``group_texts``): every
document is followed by an end-of-text separator (``<|endoftext|>``, 50256 in GPT-2's
vocabulary), the documents of a split are concatenated into one stream, and the stream is cut
into contiguous blocks of ``block_length`` tokens (GPT: 512, GPT-2: 1024); the incomplete tail
is dropped. Targets are the inputs shifted by one (``logits[t]`` is scored against token
``t + 1``), so a block of L tokens has L - 1 targets; the separator's position predicts the
next document's first token, and attention crosses document joins inside a block.

``document_attention=True`` keeps attention inside each document instead, through the
unpadded layout (``lmforge.models.layout.JaggedLayout.from_documents``, flash-attention's
varlen packing): a block is split after each separator, every piece is its own sequence with
positions restarting at 0, and no target crosses a piece boundary. A piece is
``document tokens ... <|endoftext|>``, so the model still learns to end documents; the first
token of a document that starts inside a block is not predicted (it has no context in its
document), nor is the separator's successor.

Every target is a real token (blocks are full, so there is no padding); targets at padding or
across pieces carry ``IGNORE_INDEX``. Blocks have no randomness: example ``index`` of any
epoch is the same block, read from the memory-mapped token file, and the loop's order is
seeded by ``(seed, epoch)``, so every batch is a function of ``(seed, epoch, index)`` and a
resumed run reads exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.data.shards import TokenShards
from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX, Objective, collate


def separator_positions(document_starts: np.ndarray, num_tokens: int) -> np.ndarray:
    """Stream position of each document's separator: document d's tokens end at token offset
    ``ends[d]``, and the d separators before it shift it by d."""
    ends = np.append(np.asarray(document_starts[1:], dtype=np.int64), num_tokens)
    return ends + np.arange(len(ends), dtype=np.int64)


def assemble_stream_block(tokens: np.ndarray, separators: np.ndarray, start: int, stop: int,
                          separator_id: int) -> np.ndarray:
    """Stream positions ``[start, stop)`` of ``doc0 <sep> doc1 <sep> ...`` as int64 ids.

    ``separators`` is ``separator_positions``; tokens before ``start`` in the stream are the
    tokens before it minus the separators among them."""
    first = int(np.searchsorted(separators, start, side="left"))
    last = int(np.searchsorted(separators, stop, side="left"))
    inside = separators[first:last] - start
    is_separator = np.zeros(stop - start, dtype=bool)
    is_separator[inside] = True
    block = np.empty(stop - start, dtype=np.int64)
    block[is_separator] = separator_id
    token_start = start - first
    block[~is_separator] = tokens[token_start:token_start + (stop - start) - len(inside)]
    return block


def shifted_targets(input_ids: np.ndarray, separator_id: int,
                    document_attention: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Next-token targets per position (``IGNORE_INDEX`` where there is none) and, with
    ``document_attention``, the piece number (1, 2, ...) of every position."""
    labels = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int64)
    labels[:-1] = input_ids[1:]
    if not document_attention:
        return labels, None
    ends_piece = input_ids == separator_id
    labels[ends_piece] = IGNORE_INDEX  # the next piece is another document
    document_ids = 1 + np.concatenate(([0], np.cumsum(ends_piece[:-1])))
    return labels, document_ids.astype(np.int64)


class CausalLMDataset(torch.utils.data.Dataset):
    """Fixed blocks of one prepared split (``lmforge prepare`` output) for next-token prediction.

    ``separator_id`` is the tokenizer's end-of-text id. Examples hold ``input_ids`` and
    ``labels`` (next-token targets per position), plus ``document_ids`` with
    ``document_attention``."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", *, block_length: int = 512,
                 separator_id: int, document_attention: bool = False) -> None:
        from lmforge.objectives.dataset import _split_dir

        if block_length < 2:
            raise UserError(f"a causal-LM block needs at least 2 tokens, got {block_length}")
        split_dir = _split_dir(Path(data_dir), split)
        self.shards = TokenShards(split_dir)
        if self.shards.num_documents == 0:
            raise UserError(f"{split_dir} holds no documents")
        self.block_length = block_length
        self.separator_id = separator_id
        self.document_attention = document_attention
        self.separators = separator_positions(self.shards.document_token_starts(), self.shards.num_tokens)
        stream_length = self.shards.num_tokens + self.shards.num_documents
        self.num_blocks = stream_length // block_length
        if self.num_blocks == 0:
            raise UserError(f"{split_dir} holds {stream_length} tokens (separators included), "
                            f"fewer than one block of {block_length}")

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.example(index)

    def example(self, index: int, epoch: int = 0) -> dict[str, np.ndarray]:
        """Block ``index`` (the same in every epoch)."""
        if not 0 <= index < self.num_blocks:
            raise IndexError(index)
        start = index * self.block_length
        input_ids = assemble_stream_block(self.shards.tokens, self.separators, start, start + self.block_length,
                                          self.separator_id)
        labels, document_ids = shifted_targets(input_ids, self.separator_id, self.document_attention)
        example = {"input_ids": input_ids, "labels": labels}
        if document_ids is not None:
            example["document_ids"] = document_ids
        return example


class CausalLMObjective(Objective):
    """Next-token cross-entropy over the positions that have a target; the vocabulary head runs
    on those alone. Held out: ``lm_loss``, ``lm_accuracy`` and ``perplexity`` = exp(lm_loss)."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate(examples, self.pad_id)
        if "document_ids" in examples[0]:
            width = batch["input_ids"].shape[1]
            rows = np.zeros((len(examples), width), dtype=np.int64)
            for row, example in enumerate(examples):
                rows[row, :len(example["document_ids"])] = example["document_ids"]
            batch["document_ids"] = torch.from_numpy(rows)
        return batch

    def counts(self, batch: dict) -> dict[str, int]:
        return {"lm": int((batch["labels"] != IGNORE_INDEX).sum())}

    def _logits(self, model, batch: dict, unpad: bool):
        chosen = batch["labels"] != IGNORE_INDEX
        logits = model(batch["input_ids"], batch["attention_mask"], unpad=unpad,
                       document_ids=batch.get("document_ids"), predict_mask=chosen)
        return logits.float(), batch["labels"][chosen]

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        logits, targets = self._logits(model, batch, unpad)
        return {"lm": F.cross_entropy(logits, targets, reduction="sum")}

    def eval_sums(self, model, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        logits, targets = self._logits(model, batch, unpad)
        n = targets.numel()
        return {"lm_loss": (float(F.cross_entropy(logits, targets, reduction="sum")), n),
                "lm_accuracy": (float((logits.argmax(-1) == targets).sum()), n)}

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        if "eval_lm_loss" not in metrics:
            return {}
        return {"eval_perplexity": math.exp(min(metrics["eval_lm_loss"], 700.0))}  # exp overflows past ~709


def separator_of(tokenizer) -> int:
    """The end-of-text id documents are joined with: the tokenizer's eos, else its [SEP]."""
    separator = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.sep_id
    if separator is None:
        raise UserError("causal-LM pretraining needs a tokenizer with an end-of-text (eos) token; "
                        "set data.tokenizer_kind: gpt2_byte_bpe")
    return separator


def causal_lm_data(data_dir: str | os.PathLike, tokenizer, block_length: int, document_attention: bool):
    """Training and held-out datasets and the objective of a ``clm`` pretraining run."""
    separator = separator_of(tokenizer)
    args = dict(block_length=block_length, separator_id=separator, document_attention=document_attention)
    # GPT-2's tokenizer has no padding token; blocks are full, so the fill id never reaches the model.
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else separator
    return (CausalLMDataset(data_dir, "train", **args), CausalLMDataset(data_dir, "heldout", **args),
            CausalLMObjective(pad_id))
