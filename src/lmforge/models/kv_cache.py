"""Key/value caches for incremental decoding (prefill, then one token at a time).

Each attention layer owns one ``LayerCache``: self-attention appends the new tokens' keys and
values (after rotary positions) on every call; cross-attention stores the encoder output's keys
and values once. Caches hold ``(B, S, kv_heads * d)`` tensors of a padded (left-padded) batch;
the layout's attention mask covers cached and new tokens alike. Caches serve inference (under
``torch.no_grad``): they are written in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LayerCache:
    """One layer's keys and values, in buffers that grow by doubling: appending a token writes
    it in place (amortised O(1)), where concatenating would copy the whole cache every step."""

    _keys: torch.Tensor | None = None  # (B, capacity, kv_heads * d)
    _values: torch.Tensor | None = None
    length: int = 0

    @property
    def keys(self) -> torch.Tensor | None:
        return None if self._keys is None else self._keys[:, : self.length]  # (B, S, .) view

    @property
    def values(self) -> torch.Tensor | None:
        return None if self._values is None else self._values[:, : self.length]

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add T new tokens' keys and values; returns all of them, (B, S + T, .)."""
        end = self.length + keys.shape[1]
        if self._keys is None or end > self._keys.shape[1]:
            capacity = max(end, 2 * (0 if self._keys is None else self._keys.shape[1]))
            self._keys, self._values = self._grown(self._keys, keys, capacity), self._grown(self._values, values, capacity)
        self._keys[:, self.length:end] = keys
        self._values[:, self.length:end] = values
        self.length = end
        return self.keys, self.values

    def _grown(self, buffer: torch.Tensor | None, like: torch.Tensor, capacity: int) -> torch.Tensor:
        grown = like.new_empty(like.shape[0], capacity, like.shape[2])
        if buffer is not None:
            grown[:, : self.length] = buffer[:, : self.length]
        return grown

    def reorder(self, batch_index: torch.Tensor) -> None:
        """Keep the rows of ``batch_index`` (beam search keeps the surviving beams)."""
        if self._keys is not None:
            self._keys, self._values = self._keys.index_select(0, batch_index), self._values.index_select(0, batch_index)


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

    def reorder(self, batch_index: torch.Tensor, cross_attention: bool = True) -> None:
        """Keep / repeat / permute the batch's rows; ``cross_attention=False`` leaves the
        encoder's keys and values in place (when every row keeps the source it had)."""
        for cache in self.self_attention + ((self.cross_attention or []) if cross_attention else []):
            cache.reorder(batch_index)
