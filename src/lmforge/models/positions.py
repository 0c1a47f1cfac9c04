"""Position information, three ways, each chosen by ``ModelConfig.positions``:

* ``LearnedPositions``: a table of absolute position vectors added to the token embeddings
  (BERT, GPT-2; RoBERTa and BART keep two unused rows first, ``position_offset`` 2).
* ``RotaryEmbedding``: rotary position embedding (Su et al. 2021, "RoFormer") applied to
  queries and keys, in the rotate-half form of transformers' LlamaRotaryEmbedding; optionally
  with Llama 3.1's frequency scaling (``rope_scaling`` "llama3").
* ``RelativePositionBias``: T5's bucketed relative positions (Raffel et al. 2020; transformers'
  T5Attention._relative_position_bucket), one learned scalar per bucket and head, added to the
  attention scores of every layer of a stack.

Position ids themselves come from the layout (``lmforge.models.layout``): each token's index
among the real tokens of its sequence, after any cached tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lmforge.config import ModelConfig


class LearnedPositions(nn.Embedding):
    """Row ``position_offset + p`` holds position p (rows before the offset are never read)."""

    def __init__(self, config: ModelConfig, width: int | None = None) -> None:
        super().__init__(config.max_positions + config.position_offset, width or config.hidden_size)
        self.offset = config.position_offset

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(position_ids + self.offset if self.offset else position_ids)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last dimension's two halves."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions, then q' = q cos + rotate_half(q) sin (per head).

    inv_freq_i = theta^(-2i/d), computed and applied in fp32 as the reference does, then cast
    to the activations' dtype. Not saved with the weights (a non-persistent buffer)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.head_dim
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        if config.rope_scaling == "llama3":
            inv_freq = llama3_scaled(inv_freq, config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._fp32_inv_freq = inv_freq  # not a buffer, so casts leave it alone

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        # A model cast to bf16/fp16 keeps fp32 frequencies, as the reference's tables do: rounded
        # ones would move the angle at position p by up to p * 2^-9 of each frequency.
        if self.inv_freq.dtype != torch.float32 and not self._fp32_inv_freq.is_meta:
            self.inv_freq = self._fp32_inv_freq.to(self.inv_freq.device)
        return self

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """position_ids (...,) -> cos, sin (..., 1, d): broadcast over the heads of (..., heads, d)."""
        freqs = position_ids.float()[..., None] * self.inv_freq.float()  # (..., d/2)
        angles = torch.cat((freqs, freqs), dim=-1)[..., None, :]  # (..., 1, d)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def llama3_scaled(inv_freq: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Llama 3.1's frequency scaling (Meta's llama3 ``apply_scaling``; transformers'
    ``_compute_llama3_parameters``): wavelengths longer than original/low_freq_factor are
    stretched by ``factor``, those shorter than original/high_freq_factor are kept, and the band
    between is interpolated smoothly. Step for step as the reference, so the tables agree bitwise."""
    factor, low, high = config.rope_scaling_factor, config.rope_low_freq_factor, config.rope_high_freq_factor
    original = config.rope_original_max_positions
    low_freq_wavelen, high_freq_wavelen = original / low, original / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """x (..., heads*d) rotated per head -> (..., heads*d)."""
    heads = x.unflatten(-1, (num_heads, -1))  # (..., heads, d)
    return (heads * cos + rotate_half(heads) * sin).flatten(-2)


def relative_position_bucket(relative: torch.Tensor, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """T5's bucket of ``key_position - query_position``: exact buckets for small distances,
    logarithmic ones up to ``max_distance``, the last bucket beyond. Bidirectional stacks
    split the buckets between keys before and after the query; causal ones see only the past."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative > 0).long() * num_buckets
        distance = relative.abs()
    else:
        distance = -torch.clamp(relative, max=0)  # future keys (masked anyway) fall in bucket 0
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # The float expression is the reference's, step for step: bucket boundaries must agree.
    log_bucket = max_exact + (
        torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    ).to(torch.long)
    log_bucket = torch.min(log_bucket, torch.full_like(log_bucket, num_buckets - 1))
    return buckets + torch.where(is_small, distance, log_bucket)


class RelativePositionBias(nn.Module):
    """One bias per (bucket, head), computed once per forward and shared by a stack's layers.

    T5 keeps the table in block 0 of each stack (``relative_attention_bias``); the weight map
    places it here. Added unscaled to the scores (T5 does not scale scores either)."""

    def __init__(self, config: ModelConfig, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_buckets
        self.max_distance = config.relative_max_distance
        self.table = nn.Embedding(config.relative_buckets, config.num_heads)

    def forward(self, query_length: int, key_length: int, past_length: int = 0) -> torch.Tensor:
        """-> (1, heads, query_length, key_length); queries sit at past_length, past_length+1, ..."""
        device = self.table.weight.device
        queries = torch.arange(past_length, past_length + query_length, device=device)[:, None]
        keys = torch.arange(key_length, device=device)[None, :]
        buckets = relative_position_bucket(keys - queries, self.bidirectional, self.num_buckets, self.max_distance)
        return self.table(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, heads, T, S)
