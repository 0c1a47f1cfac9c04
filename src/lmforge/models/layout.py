"""How the tokens of a batch are laid out, and how attention runs over that layout.

Every layer except attention is token-wise (embeddings, feed-forward, norms, heads), so it
works on any tensor whose last dimension is the hidden size. Only attention needs to know
where sequences begin and end. A layout object carries that knowledge:

* ``PaddedLayout``: hidden states ``(B, T, H)`` with a key-padding mask, the form of the
  reference implementations.
* ``JaggedLayout``: hidden states ``(N, H)`` holding the real tokens of all sequences
  concatenated, with sequence boundaries ``offsets`` (as flash-attention's varlen ``cu_seqlens``).
  Embeddings, feed-forward, norms and heads see real tokens only.

Both call ``torch.nn.functional.scaled_dot_product_attention`` so fused kernels are used where
the device has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


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
        batch, length, width = q.shape
        head_dim = width // num_heads
        key_mask = (keys or self).attention_mask

        def split(x):  # (B, T, H) -> (B, heads, T, d)
            return x.view(batch, -1, num_heads, head_dim).transpose(1, 2)

        mask = None
        if key_mask is not None:
            # Boolean key mask (B, 1, 1, S): True where a key may be attended to.
            mask = key_mask.bool()[:, None, None, :]
            if causal:
                causal_mask = torch.ones(length, k.shape[1], dtype=torch.bool, device=q.device).tril()
                mask = mask & causal_mask
                causal = False
        out = F.scaled_dot_product_attention(
            split(q), split(k), split(v), attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale
        )
        return out.transpose(1, 2).reshape(batch, length, width)  # (B, T, H)

    def first_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]  # (B, H)

    def to_padded(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden


@dataclass
class JaggedLayout:
    """Real tokens only, ``(N, H)``; sequence b spans ``offsets[b]:offsets[b+1]``."""

    offsets: torch.Tensor  # (B + 1,) int64, starts at 0
    max_len: int
    token_index: torch.Tensor  # (N,) positions of the tokens in the padded (B*T) grid
    padded_shape: tuple[int, int]  # (B, T) of the batch they came from
    _padded_mask: torch.Tensor | None = None

    @classmethod
    def from_mask(cls, attention_mask: torch.Tensor) -> "JaggedLayout":
        """Layout of the real tokens of a padded batch (right or left padding alike)."""
        lengths = attention_mask.sum(dim=1)
        offsets = F.pad(lengths.cumsum(0), (1, 0))
        token_index = attention_mask.flatten().nonzero().squeeze(1)
        return cls(offsets, int(lengths.max()), token_index, tuple(attention_mask.shape), attention_mask.bool())

    @property
    def batch_size(self) -> int:
        return self.offsets.numel() - 1

    def unpad(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) -> (N, ...) keeping real tokens only."""
        return padded.flatten(0, 1)[self.token_index]

    def to_padded(self, hidden: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(N, ...) -> (B, T, ...) with ``fill`` at padding."""
        batch, length = self.padded_shape
        out = hidden.new_full((batch * length, *hidden.shape[1:]), fill)
        out[self.token_index] = hidden
        return out.view(batch, length, *hidden.shape[1:])

    def position_ids(self, device: torch.device) -> torch.Tensor:
        """Positions restart at 0 in each sequence: (N,)."""
        total = int(self.offsets[-1])
        starts = torch.repeat_interleave(self.offsets[:-1], self.offsets.diff(), output_size=total)
        return torch.arange(total, device=device) - starts.to(device)

    @property
    def padded_mask(self) -> torch.Tensor:
        """(B, T) bool: True at the real tokens' places in the padded grid."""
        if self._padded_mask is None:
            batch, length = self.padded_shape
            mask = torch.zeros(batch * length, dtype=torch.bool, device=self.token_index.device)
            mask[self.token_index] = True
            self._padded_mask = mask.view(batch, length)
        return self._padded_mask

    def attend(self, q, k, v, *, num_heads: int, causal: bool, dropout_p: float, keys=None, scale=None):
        """q: (N, H), k/v: (M, H) laid out as ``keys`` (default: self) -> (N, H).

        Attention stays within each sequence. Its cost is small next to the token-wise layers
        (2·T·H per token against 12·H² at T=128, H=256), so here it scatters q/k/v back to the
        padded grid for one dense, masked SDPA call (fused kernels on every device), then
        gathers the real rows. Everything else in the stack stays unpadded."""
        keys = keys or self
        padded_queries = PaddedLayout(*self.padded_shape, attention_mask=self.padded_mask)
        padded_keys = PaddedLayout(*keys.padded_shape, attention_mask=keys.padded_mask)
        out = padded_queries.attend(
            self.to_padded(q), keys.to_padded(k), keys.to_padded(v), num_heads=num_heads, causal=causal,
            dropout_p=dropout_p, keys=padded_keys, scale=scale,
        )
        return self.unpad(out)  # (N, H)

    def first_tokens(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[self.offsets[:-1]]  # (B, H)
