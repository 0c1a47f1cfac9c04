"""How the tokens of a batch are laid out, and how attention runs over that layout.

Every layer except attention is token-wise (embeddings, feed-forward, norms, heads), so it
works on any tensor whose last dimension is the hidden size. Only attention needs to know
where sequences begin and end. A layout object carries that knowledge:

* ``PaddedLayout``: hidden states ``(B, T, H)`` with a key-padding mask, the form of the
  reference implementations.
* ``JaggedLayout``: hidden states ``(N, H)`` holding the real tokens of all sequences
  concatenated, with sequence boundaries ``offsets`` (as flash-attention's varlen ``cu_seqlens``).
  Embeddings, feed-forward, norms and heads see real tokens only.

Layouts also say where each token sits in its sequence (``position_ids``): positions count real
tokens only, from the sequence's first real token, continuing after ``past_length`` cached
tokens, so left-padded, right-padded and unpadded batches give every token the same position.

Attention itself is ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels where
the device has them), except CPU training with attention dropout, which CPU's fused kernel
lacks: there ``lmforge.ops.cpu_attention`` computes SDPA's math in fewer passes. For the
jagged layout there are two ways to run it, chosen by device (measured in
benchmarks/RESULTS.md):

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
from torch.autograd.function import once_differentiable

from lmforge.ops import cpu_attention

AttentionKernel = Literal["grid", "nested"]
MIN_MEAN_LENGTH_PER_SEQUENCE = 64  # shorter sequences attend on the grid even with dropout


def attention(q, k, v, key_mask: torch.Tensor | None, *, causal: bool, dropout_p: float, scale: float | None = None,
              bias: torch.Tensor | None = None):
    """q: (B, heads, T, d), k/v: (B, kv_heads, S, d); ``key_mask`` (B, S) bool, True where a key
    may be attended to, or None; ``bias`` an additive score bias broadcastable to
    (B, heads, T, S) (T5's relative positions) -> (B, heads, T, d).

    Causal masking aligns the queries with the END of the keys: with S - T cached keys before
    them, query i sees keys 0 .. S - T + i (a decode step's one query sees every key)."""
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves a group
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    length, keys = q.shape[-2], k.shape[-2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, S)
    if causal and length == 1:
        causal = False  # one query after every key (a decode step): nothing to hide, no mask to build
    if causal and (mask is not None or bias is not None or length != keys):
        allowed = torch.ones(length, keys, dtype=torch.bool, device=q.device).tril(keys - length)
        mask = allowed if mask is None else mask & allowed
        causal = False
    if bias is not None:
        # One additive mask: the bias where attending is allowed, the lowest float elsewhere
        # (finite, so a row with every key masked - only ever padding - stays NaN-free).
        mask = bias if mask is None else bias.masked_fill(~mask, torch.finfo(bias.dtype).min)
    if cpu_attention.usable(q, dropout_p):
        if causal:
            mask = torch.ones(length, keys, dtype=torch.bool, device=q.device).tril(keys - length)
        return cpu_attention.attention_with_dropout(q, k, v, mask, dropout_p=dropout_p, scale=scale)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale)


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H) -> (B, heads, T, d) as a view."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, H); free when the kernel wrote (B, T, heads, d) memory."""
    return x.transpose(1, 2).flatten(2)


class _TakeRows(torch.autograd.Function):
    """``x.index_select(0, index)`` for distinct indices. index_select's backward adds the rows
    back with ``index_add_``, which CPU runs as an element-wise scatter-add: for a (1006, 768)
    gradient 120 ms against 20 ms for ``index_copy_``, which distinct indices allow."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = x.shape[0]
        return x.index_select(0, index)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        (index,) = ctx.saved_tensors
        return grad.new_zeros(ctx.rows, *grad.shape[1:]).index_copy_(0, index, grad), None


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (distinct) of ``x``, as ``x.index_select(0, index)`` with a faster backward."""
    if x.requires_grad and torch.is_grad_enabled():
        return _TakeRows.apply(x, index)
    return x.index_select(0, index)


def _last_index(flags: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B,) index of the last True in each row (0 where none)."""
    return flags.shape[-1] - 1 - flags.flip(-1).int().argmax(-1)


@dataclass
class PaddedLayout:
    """Batches as ``(B, T, H)``. ``attention_mask`` covers the ``past_length`` cached keys and
    the T new tokens, ``(B, past_length + T)``, 1 for real tokens (None: all real)."""

    batch_size: int
    seq_len: int
    attention_mask: torch.Tensor | None = None
    past_length: int = 0

    @classmethod
    def from_inputs(cls, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    past_length: int = 0) -> "PaddedLayout":
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None  # no padding: let SDPA take its unmasked (fastest) kernel
        return cls(input_ids.shape[0], input_ids.shape[1], attention_mask, past_length)

    def position_ids(self, device: torch.device) -> torch.Tensor:
        """(1, T) or (B, T): each token's index counted from its sequence's first real token, so
        left padding shifts nothing (left pads get 0; right pads continue the count, as the
        reference's padded batches do)."""
        positions = torch.arange(self.past_length, self.past_length + self.seq_len, device=device).unsqueeze(0)
        if self.attention_mask is None:
            return positions
        leading_pads = self.attention_mask.int().argmax(-1).to(device)  # (B,) index of the first real token
        return (positions - leading_pads[:, None]).clamp(min=0)

    def attend(self, q, k, v, *, num_heads: int, num_kv_heads: int | None = None, causal: bool,
               dropout_p: float, keys=None, scale=None, bias=None):
        """q: (B, T, heads*d), k/v: (B, S, kv_heads*d) laid out as ``keys`` (default: self, whose
        mask then covers the cached keys too) -> (B, T, heads*d)."""
        key_mask = (keys or self).attention_mask
        kv_heads = num_kv_heads or num_heads
        out = attention(_split_heads(q, num_heads), _split_heads(k, kv_heads), _split_heads(v, kv_heads),
                        None if key_mask is None else key_mask.bool(), causal=causal, dropout_p=dropout_p,
                        scale=scale, bias=bias)
        return _merge_heads(out)  # (B, T, heads*d)

    def self_attend(self, qkv, *, num_heads: int, num_kv_heads: int | None = None, causal: bool,
                    dropout_p: float, scale=None, bias=None):
        """qkv: (B, T, (heads + 2 kv_heads) d), queries, keys and values side by side."""
        q, k, v = _split_qkv(qkv, num_heads, num_kv_heads or num_heads)
        return self.attend(q, k, v, num_heads=num_heads, num_kv_heads=num_kv_heads, causal=causal,
                           dropout_p=dropout_p, scale=scale, bias=bias)

    def attention_extent(self) -> tuple[int, int, int]:
        """(query length, key length, past length) of the score matrix attention builds."""
        return self.seq_len, self.past_length + self.seq_len, self.past_length

    def pool(self, hidden: torch.Tensor, pooling: str, input_ids=None, eos_token_id=None) -> torch.Tensor:
        """(B, T, H) -> (B, H): the first real token (BERT [CLS]), the last real token (GPT-2)
        or the final ``eos_token_id`` of each sequence (BART)."""
        mask = self.attention_mask
        if pooling == "first":
            index = torch.zeros(self.batch_size, dtype=torch.long, device=hidden.device) if mask is None \
                else mask.int().argmax(-1)
        elif pooling == "last":
            index = torch.full((self.batch_size,), self.seq_len - 1, device=hidden.device) if mask is None \
                else _last_index(mask.bool())
        else:
            index = _last_index(input_ids == eos_token_id)
        return hidden[torch.arange(self.batch_size, device=hidden.device), index]

    def to_padded(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


def _split_qkv(qkv: torch.Tensor, num_heads: int, num_kv_heads: int):
    """(..., (heads + 2 kv_heads) d) -> q (..., heads d), k and v (..., kv_heads d), as views."""
    head_dim = qkv.shape[-1] // (num_heads + 2 * num_kv_heads)
    return qkv.split([num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1)


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

    @classmethod
    def from_documents(cls, attention_mask: torch.Tensor, document_ids: torch.Tensor,
                       kernel: AttentionKernel | None = None) -> "JaggedLayout":
        """Layout whose sequences are the documents packed inside each row (GPT-2-style blocks
        with attention kept inside each document, as flash-attention's varlen packing does):
        a new sequence starts at each row and wherever ``document_ids`` (B, T) changes along a
        row. Padding (``attention_mask`` 0) is dropped. ``to_padded`` still returns (B, T, ...)
        rows, so targets laid out per row stay aligned; ``batch_size`` counts documents."""
        token_index = attention_mask.flatten().nonzero().squeeze(1)
        row = torch.div(token_index, attention_mask.shape[1], rounding_mode="floor")
        document = document_ids.flatten().index_select(0, token_index)
        starts = torch.ones_like(token_index, dtype=torch.bool)
        starts[1:] = (row[1:] != row[:-1]) | (document[1:] != document[:-1])
        offsets = F.pad(starts.nonzero().squeeze(1), (0, 1), value=token_index.numel())
        kernel = kernel or ("nested" if attention_mask.is_cuda else "grid")
        return cls(offsets, int(offsets.diff().max()), token_index, tuple(attention_mask.shape), kernel)

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    @property
    def num_tokens(self) -> int:
        return self.token_index.numel()

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...) keeping real tokens only."""
        return take_rows(padded.flatten(0, 1), self.token_index)

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

    def attention_extent(self) -> tuple[int, int, int]:
        """(query length, key length, past length) of the grid's score matrix."""
        return self.max_len, self.max_len, 0

    def pool(self, hidden: torch.Tensor, pooling: str, input_ids=None, eos_token_id=None) -> torch.Tensor:
        """(N, H) -> (B, H); see ``PaddedLayout.pool``. ``input_ids`` are the unpadded (N,) ids."""
        if pooling == "first":
            index = self.offsets[:-1]
        elif pooling == "last":
            index = self.offsets[1:] - 1
        else:
            sequence = torch.repeat_interleave(torch.arange(self.batch_size, device=hidden.device),
                                               self.offsets.diff(), output_size=self.num_tokens)
            rows = torch.where(input_ids == eos_token_id, torch.arange(self.num_tokens, device=hidden.device), -1)
            index = torch.full((self.batch_size,), -1, device=hidden.device).scatter_reduce(
                0, sequence, rows, reduce="amax").clamp(min=0)
            return hidden.index_select(0, index)  # may repeat row 0
        return take_rows(hidden, index)

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
        if self.grid_mask is None:
            # Every sequence is max_len long (packed blocks), so the tokens already are the grid:
            # no zero-filled copy, and no scatter-add in the backward pass.
            return x.view(self.batch_size, self.max_len, -1)
        grid = x.new_zeros(self.batch_size * self.max_len, x.shape[-1])
        return grid.index_copy(0, self.grid_index, x).view(self.batch_size, self.max_len, -1)

    def _from_grid(self, out: torch.Tensor) -> torch.Tensor:
        """(B, heads, max_len, d) -> (N, heads*d), real rows only."""
        rows = _merge_heads(out).reshape(self.batch_size * self.max_len, -1)
        return rows if self.grid_mask is None else take_rows(rows, self.grid_index)

    # -- attention on nested jagged tensors --------------------------------------------------
    def _nested(self, x: torch.Tensor, num_heads: int) -> torch.Tensor:
        """(N, heads*d) -> nested (B, heads, j, d)."""
        values = x.unflatten(-1, (num_heads, -1)).contiguous()  # (N, heads, d); SDPA needs it dense
        return torch.nested.nested_tensor_from_jagged(values, self.offsets, max_seqlen=self.max_len).transpose(1, 2)

    def attend(self, q, k, v, *, num_heads: int, num_kv_heads: int | None = None, causal: bool,
               dropout_p: float, keys=None, scale=None, bias=None):
        """q: (N, heads*d), k/v: (M, kv_heads*d) laid out as ``keys`` (default: self) -> (N, heads*d).
        Attention stays within each sequence (sequence b of the queries meets sequence b of the
        keys). The nested kernel takes neither a score bias nor grouped heads: those use the grid."""
        keys = keys or self
        kv_heads = num_kv_heads or num_heads
        if self._attends_each_sequence(q, keys, dropout_p):
            return self._attend_each(q, k, v, keys, num_heads, kv_heads, causal, dropout_p, scale, bias)
        if self.kernel == "nested" and bias is None and kv_heads == num_heads:
            out = attention(self._nested(q, num_heads), keys._nested(k, num_heads), keys._nested(v, num_heads),
                            None, causal=causal, dropout_p=dropout_p, scale=scale)
            return out.transpose(1, 2).values().flatten(1)  # (N, heads*d)
        out = attention(_split_heads(self._to_grid(q), num_heads), _split_heads(keys._to_grid(k), kv_heads),
                        _split_heads(keys._to_grid(v), kv_heads), keys.grid_mask, causal=causal,
                        dropout_p=dropout_p, scale=scale, bias=bias)
        return self._from_grid(out)

    # -- training attention with dropout on CPU, one sequence at a time ---------------------
    def _attends_each_sequence(self, q: torch.Tensor, keys: "JaggedLayout", dropout_p: float) -> bool:
        """Whether to loop over the sequences instead of filling the grid: only where attention
        dropout runs on CPU (the fused kernels have no dropout, so every pass over the scores,
        the random draw included, costs its full size) and the grid's (B, max_T, max_S) scores
        are over 1.5x the sequences' own (sum T_i S_i), as for documents of very different lengths,
        and sequences are long enough (64 tokens on average) for the loop's per-call overhead not
        to matter (short sentences: the grid is faster, measured in benchmarks/RESULTS.md)."""
        if not cpu_attention.usable(q, dropout_p) or self.num_tokens < MIN_MEAN_LENGTH_PER_SEQUENCE * self.batch_size:
            return False
        queries, keys_per = self.offsets.diff(), keys.offsets.diff()
        real = int((queries * keys_per).sum())
        return self.batch_size * self.max_len * keys.max_len > 1.5 * real

    def _attend_each(self, q, k, v, keys: "JaggedLayout", num_heads: int, kv_heads: int, causal: bool,
                     dropout_p: float, scale, bias) -> torch.Tensor:
        """``attend`` sequence by sequence: each sequence's (heads, T_i, S_i) scores only; T5's
        bias is cut to each sequence's extent (relative positions start at 0 in every one)."""
        q_lengths, k_lengths = self.offsets.diff().tolist(), keys.offsets.diff().tolist()
        # split (not slicing): its backward is one concatenation, not a zero-filled copy per piece
        rows = zip(q.split(q_lengths), k.split(k_lengths), v.split(k_lengths), q_lengths, k_lengths)
        pieces = []
        for b, (q_b, k_b, v_b, t, s) in enumerate(rows):
            row_bias = None
            if bias is not None:
                row_bias = (bias[b:b + 1] if bias.shape[0] > 1 else bias)[..., :t, :s]
            out = attention(q_b.unflatten(-1, (num_heads, -1)).transpose(0, 1)[None],
                            k_b.unflatten(-1, (kv_heads, -1)).transpose(0, 1)[None],
                            v_b.unflatten(-1, (kv_heads, -1)).transpose(0, 1)[None],
                            None, causal=causal, dropout_p=dropout_p, scale=scale, bias=row_bias)
            pieces.append(out[0].transpose(0, 1).flatten(1))  # (t, heads*d)
        return torch.cat(pieces)

    def self_attend(self, qkv, *, num_heads: int, num_kv_heads: int | None = None, causal: bool,
                    dropout_p: float, scale=None, bias=None):
        """qkv: (N, (heads + 2 kv_heads) d) -> (N, heads*d). One scatter moves all three to the grid."""
        kv_heads = num_kv_heads or num_heads
        if self.kernel == "nested" or self._attends_each_sequence(qkv, self, dropout_p):
            q, k, v = _split_qkv(qkv, num_heads, kv_heads)
            return self.attend(q, k, v, num_heads=num_heads, num_kv_heads=kv_heads, causal=causal,
                               dropout_p=dropout_p, scale=scale, bias=bias)
        q, k, v = _split_qkv(self._to_grid(qkv), num_heads, kv_heads)  # each (B, max_len, .)
        out = attention(_split_heads(q, num_heads), _split_heads(k, kv_heads), _split_heads(v, kv_heads),
                        self.grid_mask, causal=causal, dropout_p=dropout_p, scale=scale, bias=bias)
        return self._from_grid(out)
