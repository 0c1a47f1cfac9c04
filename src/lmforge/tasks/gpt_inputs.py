"""GPT's task-specific input transformations and fine-tuning heads (Radford et al. 2018, section
3.3 and figure 1; openai/finetune-transformer-lm ``train.py``), for decoder checkpoints.

A decoder reads left to right, so the classifier reads the state of the LAST token, an
``extract`` token appended to the text; ``start`` opens every input and ``delimiter`` separates
the parts of a structured input:

- classification: ``start text extract``;
- entailment (any sentence pair): ``start premise delimiter hypothesis extract``;
- similarity (``symmetric_pairs``): both orders, ``start A delimiter B extract`` and
  ``start B delimiter A extract``, run independently, their final states added element-wise
  before the linear layer;
- multiple choice: ``start context delimiter answer_k extract`` for every answer, one score
  each, softmax over an example's answers (``lmforge.tasks.multiple_choice``).

GPT adds ``_start_``, ``_delimiter_`` and ``_classify_`` to its vocabulary as new embeddings.
A tokenizer that has tokens of those names uses them; otherwise the tokenizer's own tokens
stand in: start = bos, delimiter = sep, extract = eos (GPT-2's ``<|endoftext|>`` plays all
three), so the checkpoint's vocabulary never changes.

The auxiliary language-modelling loss (GPT's L3 = L2 + lambda * L1, lambda 0.5) is next-token
cross-entropy over every position of the transformed inputs, through the output projection
tied to the token embeddings; a decoder with an untied head (LLaMA) is refused, since its
classifier keeps no output projection to score with. Inputs are truncated one token at a time from the longer part,
as BERT's ``_truncate_seq_pair`` (the openai code cuts each part to a fixed share instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.tasks.encoding import backend_of, encode_in_chunks, truncating

GPT_TOKEN_NAMES = ("_start_", "_delimiter_", "_classify_")  # openai/finetune-transformer-lm


@dataclass(frozen=True)
class GptTokens:
    start: int
    delimiter: int
    extract: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "GptTokens":
        named = [tokenizer.token_to_id(name) for name in GPT_TOKEN_NAMES]
        if all(i is not None for i in named):
            return cls(*named)
        eos = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.sep_id
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.cls_id
        delimiter = tokenizer.sep_id if tokenizer.sep_id is not None else eos
        if eos is None or start is None or delimiter is None:
            raise UserError("the tokenizer has no start/end-of-text tokens for GPT's input transformation "
                            f"(add {', '.join(GPT_TOKEN_NAMES)} or use a tokenizer with bos/eos)")
        return cls(start, delimiter, eos)


def plain_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without any tokens added around it."""
    backend = backend_of(tokenizer)
    with truncating(backend, None):
        encodings = encode_in_chunks(backend, list(texts), "encoding", add_special_tokens=False)
    return [enc.ids for enc in encodings]


def transform(first: list[int], second: list[int] | None, tokens: GptTokens, max_length: int) -> list[int]:
    """``start first [delimiter second] extract``, cut to ``max_length`` from the longer part's end."""
    budget = max_length - (2 if second is None else 3)
    if budget < (1 if second is None else 2):
        raise UserError(f"max_length {max_length} leaves no room for text after GPT's start/delimiter/extract tokens")
    first, second = list(first), (None if second is None else list(second))
    while len(first) + (len(second) if second is not None else 0) > budget:
        (second if second is not None and len(second) >= len(first) else first).pop()
    if second is None:
        return [tokens.start, *first, tokens.extract]
    return [tokens.start, *first, tokens.delimiter, *second, tokens.extract]


def lm_target_count(batch: dict) -> int:
    """Positions of the auxiliary LM loss: real tokens followed by a real token."""
    mask = batch["attention_mask"].bool()
    return int((mask[:, 1:] & mask[:, :-1]).sum())


def final_states(model, batch: dict, unpad: bool, lm_loss: bool = False):
    """(pooled (B, H), summed auxiliary LM loss or None) of a decoder sequence head. Rows come
    in ``batch["orders"]`` groups of B (similarity: both orders), whose pooled states are added."""
    out = model.backbone(batch["input_ids"], batch["attention_mask"], unpad=unpad)
    pooled = out.pooled if out.pooled is not None else out.pool(model.config.pooling, model.config.eos_token_id)
    if "orders" in batch:
        pooled = pooled.unflatten(0, (int(batch["orders"]), -1)).sum(0)
    lm = None
    if lm_loss:
        hidden = out.padded()
        mask = batch["attention_mask"].bool()
        scored = mask[:, 1:] & mask[:, :-1]
        logits = hidden[:, :-1][scored] @ model.backbone.embeddings.word.weight.T  # GPT's tied projection
        lm = F.cross_entropy(logits.float(), batch["input_ids"][:, 1:][scored], reduction="sum")
    return pooled, lm


def collate_orders(collate, features: Sequence[dict]) -> dict[str, torch.Tensor]:
    """One batch of every feature's ``input_ids`` followed by every feature's ``swapped_ids``
    (similarity), with ``orders`` = 2 and the features' labels."""
    rows = [{"input_ids": f["input_ids"]} for f in features] + [{"input_ids": f["swapped_ids"]} for f in features]
    batch = collate(rows)
    batch["orders"] = torch.tensor(2)
    if "label" in features[0]:
        batch["label"] = torch.tensor([int(f["label"]) for f in features], dtype=torch.long)
    return batch
