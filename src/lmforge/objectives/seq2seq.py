"""Encoder-decoder pretraining: the loss of BART's denoising (``lmforge.objectives.denoising``)
and T5's span corruption (``lmforge.objectives.span_corruption``), and the datasets of a run.

Teacher forcing: the decoder reads the targets shifted right behind a start token, and every
target token is scored (cross-entropy summed over them; the loop divides by their count over the
global batch). The start token is the one the reference trains with: BART's ``</s>`` (fairseq's
``prev_output_tokens`` move the target's final ``</s>`` to the front; transformers'
``decoder_start_token_id`` 2) and T5's pad id 0. Held out: ``lm_loss``, ``lm_accuracy`` and
``perplexity`` over the target tokens, as the causal-LM objective logs them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX, collate
from lmforge.objectives.clm import CausalLMObjective


class Seq2SeqLMObjective(CausalLMObjective):
    """Examples hold ``input_ids`` (encoder) and ``labels`` (the full target); the batch adds
    ``decoder_input_ids`` = ``decoder_start_id`` + labels[:-1] and ``decoder_attention_mask``."""

    def __init__(self, pad_id: int, decoder_start_id: int) -> None:
        super().__init__(pad_id)
        self.decoder_start_id = decoder_start_id

    def collate(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate([{"input_ids": e["input_ids"]} for e in examples], self.pad_id)
        shifted = [np.concatenate(([self.decoder_start_id], np.asarray(e["labels"])[:-1])) for e in examples]
        decoder = collate([{"input_ids": s, "labels": e["labels"]} for s, e in zip(shifted, examples)], self.pad_id)
        batch["decoder_input_ids"] = decoder["input_ids"]
        batch["decoder_attention_mask"] = decoder["attention_mask"]
        batch["labels"] = decoder["labels"]
        return batch

    def _logits(self, model, batch: dict, unpad: bool):
        chosen = batch["labels"] != IGNORE_INDEX
        logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                       batch["decoder_attention_mask"], unpad=unpad, predict_mask=chosen)
        return logits.float(), batch["labels"][chosen]


def encoder_decoder_data(kind: str, data_dir: str | os.PathLike, tokenizer, objective, seed: int):
    """Training and held-out datasets and the objective of a ``denoising`` (BART) or
    ``span_corruption`` (T5) run; ``objective`` is the recipe's objective section."""
    if tokenizer.pad_id is None:
        raise UserError("encoder-decoder pretraining needs a tokenizer with a padding token")
    if kind == "denoising":
        from lmforge.objectives.denoising import DenoisingDataset, noise_preset

        noise = noise_preset(objective.noise_preset, **objective.noise)
        args = dict(max_seq_length=objective.max_seq_length, noise=noise, seed=seed)
        datasets = [DenoisingDataset(data_dir, split, **args) for split in ("train", "heldout")]
        start = tokenizer.eos_id
    elif kind == "span_corruption":
        from lmforge.objectives.span_corruption import SpanCorruptionDataset, sentinel_ids_of

        args = dict(inputs_length=objective.max_seq_length, sentinel_ids=sentinel_ids_of(tokenizer),
                    noise_density=objective.noise_density, mean_noise_span_length=objective.mean_noise_span_length,
                    noise_mask=objective.noise_mask, seed=seed)
        datasets = [SpanCorruptionDataset(data_dir, split, **args) for split in ("train", "heldout")]
        start = tokenizer.pad_id
    else:
        raise UserError(f"{kind!r} is not an encoder-decoder objective")
    return datasets[0], datasets[1], Seq2SeqLMObjective(tokenizer.pad_id, start)
