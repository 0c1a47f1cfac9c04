"""The model side of decoding, behind one small interface every search drives:

    logits = step.prefill()          # (B, V): the next-token scores after each prompt
    step.reorder(rows)               # keep / duplicate rows (beams, several samples per prompt)
    logits = step.advance(tokens)    # tokens (R,) appended to each row -> (R, V)

``CausalLMStep`` (GPT, GPT-2, LLaMA): the left-padded prompts run once through the key/value
cache (``lmforge.models.kv_cache``), then one token per row per step. ``Seq2SeqStep`` (BART,
T5): the encoder runs once; the decoder starts from ``decoder_start_token_id`` with a
self-attention cache, and its cross-attention keys/values are computed at the first step and
kept in the cache. Only the last position goes through the output head.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import torch

from lmforge.models.layout import PaddedLayout


class DecoderStep(Protocol):
    def prefill(self) -> torch.Tensor: ...

    def advance(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def reorder(self, rows: torch.Tensor) -> None: ...


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (B, longest), each prompt at the right end of its row."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.as_tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


class CausalLMStep:
    """Decoding keeps the key mask in one preallocated bool buffer (prompt width plus
    ``max_new_tokens`` columns) and passes a view of it each step, instead of concatenating a
    column per step; without padding it passes no mask at all (SDPA's unmasked kernel)."""

    def __init__(self, model, prompts: list[list[int]], pad_id: int = 0, max_new_tokens: int = 0) -> None:
        self.model = model
        device = next(model.parameters()).device
        self.ids, mask = left_padded(prompts, pad_id, device)
        self.length = mask.shape[1]
        self.padded = bool((mask == 0).any())
        self._mask = torch.ones(mask.shape[0], self.length + max(max_new_tokens, 1), dtype=torch.bool, device=device)
        self._mask[:, : self.length] = mask.bool()
        self.cache = model.backbone.new_cache()

    @property
    def mask(self) -> torch.Tensor:
        """(R, tokens so far) bool: True at real tokens."""
        return self._mask[:, : self.length]

    def _logits(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model.backbone(ids, self.mask if self.padded else None, cache=self.cache)
        return self.model.lm_head(out.last_hidden_state[:, -1]).float()

    def prefill(self) -> torch.Tensor:
        return self._logits(self.ids)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.length == self._mask.shape[1]:  # more steps than announced: double the buffer
            self._mask = torch.cat([self._mask, torch.ones_like(self._mask)], dim=1)
        self.length += 1  # the new column is already True
        return self._logits(tokens.to(self._mask.device)[:, None])

    def reorder(self, rows: torch.Tensor) -> None:
        rows = rows.to(self._mask.device)
        self.cache.reorder(rows)
        self._mask = self._mask.index_select(0, rows)


class Seq2SeqStep:
    def __init__(self, model, sources: list[list[int]], decoder_start_token_id: int, pad_id: int = 0) -> None:
        self.model = model
        device = next(model.parameters()).device
        self.source_ids, self.source_mask = left_padded(sources, pad_id, device)
        self.start = decoder_start_token_id
        self.cache = model.backbone.new_cache()
        self.memory = None
        self.row_sources = torch.arange(len(sources), device=device)  # the source each row decodes

    def _logits(self, decoder_ids: torch.Tensor) -> torch.Tensor:
        out = self.model.backbone.decode(decoder_ids, self.memory, cache=self.cache)
        return self.model.lm_head(out.last_hidden_state[:, -1]).float()

    def prefill(self) -> torch.Tensor:
        self.memory = self.model.backbone.encode(self.source_ids, self.source_mask)
        start = torch.full((self.source_ids.shape[0], 1), self.start, dtype=torch.long, device=self.source_ids.device)
        return self._logits(start)

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(tokens.to(self.source_ids.device)[:, None])

    def reorder(self, rows: torch.Tensor) -> None:
        rows = rows.to(self.source_ids.device)
        sources = self.row_sources.index_select(0, rows)
        if torch.equal(sources, self.row_sources):
            # Beam search moves rows only among one source's beams: the encoder output and the
            # cross-attention keys and values of every row stay what they were.
            self.cache.reorder(rows, cross_attention=False)
            return
        self.row_sources = sources
        self.cache.reorder(rows)
        layout = self.memory.layout
        mask = None if layout.attention_mask is None else layout.attention_mask.index_select(0, rows)
        self.memory = replace(self.memory, last_hidden_state=self.memory.last_hidden_state.index_select(0, rows),
                              layout=PaddedLayout(rows.numel(), layout.seq_len, mask, layout.past_length),
                              input_ids=self.memory.input_ids.index_select(0, rows))
