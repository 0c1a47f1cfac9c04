"""How the tokens of a batch are laid out, and how attention runs over that layout.

Every layer except attention is token-wise (embeddings, feed-forward, norms, heads), so it
works on any tensor whose last dimension is the hidden size. Only attention needs to know
where sequences begin and end. A layout object carries that knowledge:

* ``PaddedLayout``: hidden states ``(B, T, H)`` with a key-padding mask, the form of the
  reference implementations.
* ``JaggedLayout``: hidden states ``(N, H)`` holding the real tokens of all sequences
  concatenated, with sequence boundaries ``offsets`` (as flash-attention's varlen ``cu_seqlens``).
  Embeddings, feed-forward, norms and heads see real tokens only.

Attention itself is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels where
the device has them), except CPU training with attention dropout, which CPU's fused kernel
lacks: there ``_attention_with_dropout`` computes SDPA's math in fewer passes. For the jagged layout there are two ways to run it, chosen by device
(measured in benchmarks/RESULTS.md):

* ``"grid"`` (CPU): scatter the real rows into a zero-filled ``(B, max_len)`` grid, one dense
  key-masked SDPA call, gather the real rows back. On CPU the attention op is 2.6x faster this
  way than with nested tensors, whose SDPA runs sequence by sequence there.
* ``"nested"`` (CUDA): nested jagged tensors, which SDPA sends to the flash-attention varlen
  kernel (no padding at all, dropout inside the kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

AttentionKernel = Literal["grid", "nested"]


def attention(q, k, v, key_mask: torch.Tensor | None, *, causal: bool, dropout_p: float, scale=None):
    """q: (B, heads, T, d), k/v: (B, heads, S, d); ``key_mask`` (B, S) bool, True where a key
    may be attended to, or None -> (B, heads, T, d)."""
    mask = None
    if key_mask is not None:
        mask = key_mask[:, None, None, :]  # (B, 1, 1, S)
        if causal:
            mask = mask & torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
            causal = False
    if dropout_p > 0 and q.device.type == "cpu" and not q.is_nested:
        return _attention_with_dropout(q, k, v, mask, causal=causal, dropout_p=dropout_p, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale)


def _attention_with_dropout(q, k, v, mask, *, causal: bool, dropout_p: float, scale=None):
    """SDPA's math (softmax, dropout on the probabilities, weighted values) in fewer passes.

    CPU's fused SDPA kernel has no dropout, so training falls back to SDPA's math path, which
    spends about twice as many passes over the (B, heads, T, S) scores (scaling, a separate
    mask add, NaN-safe softmax checks, a Bernoulli tensor, then two multiplies). Here: the
    scale goes on q (T*d, not T*S, elements), the mask is filled in place, the keep mask comes
    from one uniform draw, and the 1/(1-p) rescale goes on the (T, d) output."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = torch.matmul(q * scale, k.transpose(-1, -2))  # (B, heads, T, S)
    if causal:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        # The lowest float rather than -inf: a row with every key masked (only ever padding)
        # stays finite instead of turning into NaN, and exp(lowest - max) is exactly 0.
        scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1)
    keep = torch.rand_like(probs) >= dropout_p  # P(keep) = 1 - p, as Bernoulli(1 - p)
    return torch.matmul(torch.where(keep, probs, 0.0), v) * (1.0 / (1.0 - dropout_p))  # (B, heads, T, d)


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H) -> (B, heads, T, d) as a view."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, H); free when the kernel wrote (B, T, heads, d) memory."""
    return x.transpose(1, 2).flatten(2)


@dataclass
class PaddedLayout:
    """Batches as ``(B, T, H)``; ``attention_mask`` is ``(B, T)``, 1 for real tokens (or None)."""

    batch_size: int
    seq_len: int
    attention_mask: torch.Tensor | None = None

    @classmethod
    def from_inputs(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> "PaddedLayout":
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: let SDPA take its unmasked (fastest) kernel
        return cls(input_ids.shape[0], input_ids.shape[1], attention_mask)

    def position_ids(self, device: torch.device) -> torch.Tensor:
        return torch.arange(self.seq_len, device=device).unsqueeze(0)  # (1, T)

    def attend(self, q, k, v, *, num_heads: int, causal: bool, dropout_p: float, keys=None, scale=None):
        """q: (B, T, H), k/v: (B, S, H) laid out as ``keys`` (default: self) -> (B, T, H)."""
        key_mask = (keys or self).attention_mask
        out = attention(_split_heads(q, num_heads), _split_heads(k, num_heads), _split_heads(v, num_heads),
                        None if key_mask is None else key_mask.bool(), causal=causal, dropout_p=dropout_p,
                        scale=scale)
        return _merge_heads(out).reshape(q.shape)  # (B, T, H)

    def self_attend(self, qkv, *, num_heads: int, causal: bool, dropout_p: float, scale=None):
        """qkv: (B, T, 3H), queries, keys and values side by side -> (B, T, H)."""
        q, k, v = qkv.chunk(3, dim=-1)
        return self.attend(q, k, v, num_heads=num_heads, causal=causal, dropout_p=dropout_p, scale=scale)

    def first_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]  # (B, H)

    def to_padded(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


@dataclass
class JaggedLayout:
    """Real tokens only, ``(N, H)``; sequence b spans ``offsets[b]:offsets[b+1]``."""

    offsets: torch.Tensor  # (B + 1,) int64, starts at 0
    max_len: int
    token_index: torch.Tensor  # (N,) positions of the tokens in the padded (B*T) input grid
    padded_shape: tuple[int, int]  # (B, T) of the batch they came from
    kernel: AttentionKernel = "grid"
    _positions: torch.Tensor | None = field(default=None, repr=False)
    _grid_index: torch.Tensor | None = field(default=None, repr=False)
    _grid_mask: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor, kernel: AttentionKernel | None = None) -> "JaggedLayout":
        """Layout of the real tokens of a padded batch (right or left padding alike)."""
        lengths = attention_mask.sum(dim=1)
        offsets = F.pad(lengths.cumsum(0), (1, 0))
        token_index = attention_mask.flatten().nonzero().squeeze(1)
        kernel = kernel or ("nested" if attention_mask.is_cuda else "grid")
        return cls(offsets, int(lengths.max()), token_index, tuple(attention_mask.shape), kernel)

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_tokens(self) -> int:
        return self.token_index.numel()

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...) keeping real tokens only."""
        return padded.flatten(0, 1).index_select(0, self.token_index)

    def to_padded(self, hidden: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(N, ...) -> (B, T, ...) with ``fill`` at padding."""
        batch, length = self.padded_shape
        out = hidden.new_full((batch * length, *hidden.shape[1:]), fill)
        return out.index_copy(0, self.token_index, hidden).view(batch, length, *hidden.shape[1:])

    def position_ids(self, device: torch.device) -> torch.Tensor:
        """Positions restart at 0 in each sequence: (N,)."""
        if self._positions is None:
            lengths = self.offsets.diff()
            starts = torch.repeat_interleave(self.offsets[:-1], lengths, output_size=self.num_tokens)
            self._positions = torch.arange(self.num_tokens, device=starts.device) - starts
        return self._positions.to(device)

    # -- attention on the (B, max_len) grid -------------------------------------------------
    @property
    def grid_index(self) -> torch.Tensor:
        """(N,) row of each token in a (B * max_len) grid: sequence b, position j -> b * max_len + j."""
        if self._grid_index is None:
            sequence = torch.repeat_interleave(
                torch.arange(self.batch_size, device=self.offsets.device), self.offsets.diff(),
                output_size=self.num_tokens)
            self._grid_index = sequence * self.max_len + self.position_ids(self.offsets.device)
        return self._grid_index

    @property
    def grid_mask(self) -> torch.Tensor | None:
        """(B, max_len) bool key mask of the grid, None when every sequence fills it."""
        if self._grid_mask is None and self.num_tokens != self.batch_size * self.max_len:
            positions = torch.arange(self.max_len, device=self.offsets.device)
            self._grid_mask = positions[None, :] < self.offsets.diff()[:, None]
        return self._grid_mask

    def _to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """(N, W) -> (B, max_len, W), zeros at padding: zeros, not garbage, because masked
        keys still meet the softmax as 0 * value and 0 * NaN would poison real rows."""
        grid = x.new_zeros(self.batch_size * self.max_len, x.shape[-1])
        return grid.index_copy(0, self.grid_index, x).view(self.batch_size, self.max_len, -1)

    def _from_grid(self, out: torch.Tensor) -> torch.Tensor:
        """(B, heads, max_len, d) -> (N, H), real rows only."""
        return _merge_heads(out).reshape(self.batch_size * self.max_len, -1).index_select(0, self.grid_index)

    # -- attention on nested jagged tensors --------------------------------------------------
    def _nested(self, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        """(N, H) -> nested (B, heads, j, d)."""
        values = x.unflatten(-1, (num_heads, -1)).contiguous()  # (N, heads, d); SDPA needs it dense
        return torch.nested.nested_tensor_from_jagged(values, self.offsets, max_seqlen=self.max_len).transpose(1, 2)

    def attend(self, q, k, v, *, num_heads: int, causal: bool, dropout_p: float, keys=None, scale=None):
        """q: (N, H), k/v: (M, H) laid out as ``keys`` (default: self) -> (N, H). Attention
        stays within each sequence (sequence b of the queries meets sequence b of the keys)."""
        keys = keys or self
        if self.kernel == "nested":
            out = attention(self._nested(q, num_heads), keys._nested(k, num_heads), keys._nested(v, num_heads),
                            None, causal=causal, dropout_p=dropout_p, scale=scale)
            return out.transpose(1, 2).values().flatten(1)  # (N, H)
        out = attention(_split_heads(self._to_grid(q), num_heads), _split_heads(keys._to_grid(k), num_heads),
                        _split_heads(keys._to_grid(v), num_heads), keys.grid_mask, causal=causal,
                        dropout_p=dropout_p, scale=scale)
        return self._from_grid(out)

    def self_attend(self, qkv, *, num_heads: int, causal: bool, dropout_p: float, scale=None):
        """qkv: (N, 3H), queries, keys and values side by side -> (N, H). One scatter moves
        all three to the grid."""
        if self.kernel == "nested":
            q, k, v = qkv.chunk(3, dim=-1)
            return self.attend(q, k, v, num_heads=num_heads, causal=causal, dropout_p=dropout_p, scale=scale)
        grid = self._to_grid(qkv)  # (B, T, 3H)
        q, k, v = (_split_heads(x, num_heads) for x in grid.chunk(3, dim=-1))
        out = attention(q, k, v, self.grid_mask, causal=causal, dropout_p=dropout_p, scale=scale)
        return self._from_grid(out)

    def first_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.index_select(0, self.offsets[:-1])  # (B, H)
