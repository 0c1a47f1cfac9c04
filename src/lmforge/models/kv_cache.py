"""Key/value caches for incremental decoding (prefill, then one token at a time).

Each attention layer owns one ``LayerCache``: self-attention appends the new tokens' keys and
values (after rotary positions) on every call; cross-attention stores the encoder output's keys
and values once. Caches hold ``(B, S, kv_heads * d)`` tensors of a padded (left-padded) batch;
the layout's attention mask covers cached and new tokens alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LayerCache:
    keys: torch.Tensor | None = None  # (B, S, kv_heads * d)
    values: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.keys is None else self.keys.shape[1]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add T new tokens' keys and values; returns all of them, (B, S + T, .)."""
        if self.keys is not None:
            keys, values = torch.cat((self.keys, keys), dim=1), torch.cat((self.values, values), dim=1)
        self.keys, self.values = keys, values
        return keys, values

    def reorder(self, batch_index: torch.Tensor) -> None:
        """Keep the rows of ``batch_index`` (beam search keeps the surviving beams)."""
        if self.keys is not None:
            self.keys, self.values = self.keys.index_select(0, batch_index), self.values.index_select(0, batch_index)


@dataclass
class KVCache:
    """The caches of one decoder stack: one per layer, and one per layer's cross-attention
    in an encoder-decoder."""

    self_attention: list[LayerCache] = field(default_factory=list)
    cross_attention: list[LayerCache] | None = None

    @classmethod
    def empty(cls, num_layers: int, cross_attention: bool = False) -> "KVCache":
        return cls([LayerCache() for _ in range(num_layers)],
                   [LayerCache() for _ in range(num_layers)] if cross_attention else None)

    @property
    def past_length(self) -> int:
        """Tokens already cached (the positions of new tokens start here)."""
        return self.self_attention[0].length if self.self_attention else 0

    def layer(self, index: int) -> tuple[LayerCache, LayerCache | None]:
        cross = None if self.cross_attention is None else self.cross_attention[index]
        return self.self_attention[index], cross

    def reorder(self, batch_index: torch.Tensor) -> None:
        for cache in self.self_attention + (self.cross_attention or []):
            cache.reorder(batch_index)
