"""Transformer blocks and stacks of blocks, shared by encoders, decoders and both halves of an
encoder-decoder (Vaswani et al. 2017; BERT, GPT-2, BART, T5 and LLaMA differ only in the
switches of ``ModelConfig``)."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.kv_cache import KVCache
from lmforge.models.layers import FEED_FORWARDS, RESIDUALS, Attention, AttentionInputs, make_norm
from lmforge.models.positions import RelativePositionBias


class TransformerBlock(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward, each in a residual.

    Post-norm (BERT, BART)::

        x ──► attention ──► dropout ──► (+x) ──► norm ──► h ──► FFN ──► dropout ──► (+h) ──► norm

    Pre-norm (GPT-2, T5, LLaMA)::

        x ──► norm ──► attention ──► dropout ──► (+x) ──► h ──► norm ──► FFN ──► dropout ──► (+h)

    A decoder block of an encoder-decoder puts cross-attention (same wiring) between the two.
    """

    def __init__(self, config: ModelConfig, causal: bool, cross_attention: bool) -> None:
        super().__init__()
        residual = RESIDUALS[config.norm_placement]
        self.attention = residual(config, Attention(config, causal))
        self.cross_attention = residual(config, Attention(config, causal=False, cross=True)) if cross_attention else None
        self.feed_forward = residual(config, FEED_FORWARDS[config.feed_forward](config))

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, self_cache=None, cross_cache=None) -> torch.Tensor:
        x = self.attention(x, inputs, self_cache)
        if self.cross_attention is not None:
            x = self.cross_attention(x, inputs, cross_cache)
        return self.feed_forward(x)


class LayerGroup(nn.Module):
    """Distinct blocks that cross-layer sharing runs in order, as one unit (ALBERT's
    AlbertLayerGroup; ``layers_per_group`` is its ``inner_group_num``)."""

    def __init__(self, config: ModelConfig, causal: bool, cross_attention: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerBlock(config, causal, cross_attention)
                                    for _ in range(config.layers_per_group))


class TransformerStack(nn.Module):
    """A stack of blocks, with T5's relative position bias computed once for all of them
    (``positions == "relative_buckets"``) and an optional final norm (pre-norm families).

    Without sharing, ``layers`` holds one block per layer. With cross-layer sharing
    (``num_layer_groups``; ALBERT, Lan et al. 2020 §3.1) ``groups`` holds the distinct blocks and
    step i of ``num_layers`` runs group floor(i / (num_layers / groups)), as transformers'
    AlbertTransformer computes it. Either way ``schedule`` lists the blocks in the order they
    run (a plain tuple, so the default path loops exactly as before); the hidden states after
    every block run are what ``output_hidden_states`` returns (transformers 5 records each
    AlbertLayer call too)."""

    def __init__(self, config: ModelConfig, num_layers: int, causal: bool, cross_attention: bool = False) -> None:
        super().__init__()
        self.causal = causal
        if config.num_layer_groups:
            groups = config.num_layer_groups
            self.groups = nn.ModuleList(LayerGroup(config, causal, cross_attention) for _ in range(groups))
            self.schedule = tuple(block for i in range(num_layers)
                                  for block in self.groups[int(i / (num_layers / groups))].layers)
        else:
            self.layers = nn.ModuleList(TransformerBlock(config, causal, cross_attention) for _ in range(num_layers))
            self.schedule = tuple(self.layers)
        self.position_bias = (RelativePositionBias(config, bidirectional=not causal)
                              if config.positions == "relative_buckets" else None)
        self.final_norm = make_norm(config) if config.final_norm else None

    def forward(self, x: torch.Tensor, inputs: AttentionInputs, cache: KVCache | None = None,
                output_hidden_states: bool = False):
        """Returns the last hidden state and, if asked, the input plus every layer's output."""
        if self.position_bias is not None:
            inputs = replace(inputs, position_bias=self.position_bias(*inputs.layout.attention_extent()))
        hidden_states = [x] if output_hidden_states else None
        for index, layer in enumerate(self.schedule):
            x = layer(x, inputs, *(cache.layer(index) if cache is not None else (None, None)))
            if hidden_states is not None:
                hidden_states.append(x)
        if self.final_norm is not None:
            x = self.final_norm(x)
            if hidden_states is not None:
                hidden_states[-1] = x
        return x, hidden_states

    def distinct_layers(self) -> list[nn.Module]:
        """Bottom to top, each parameter once: the blocks, or the shared groups."""
        return list(self.groups if hasattr(self, "groups") else self.layers)
