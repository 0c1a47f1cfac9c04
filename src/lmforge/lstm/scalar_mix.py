"""ELMo's scalar mix (Peters et al. 2018, eq. 1): ``gamma * sum_j s_j * h_j`` with
``s = softmax(w)`` over the layers and ``w``, ``gamma`` trained with the downstream task.

Follows AllenNLP's ``ScalarMix`` (allennlp/modules/scalar_mix.py): ``w`` starts at 0 (equal
weights), ``gamma`` at 1; with ``do_layer_norm`` every layer is first normalised by the mean and
variance of all its unmasked elements of the batch together (not per token), with the same
``1e-13`` added to the variance.
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.errors import UserError

# AllenNLP's tiny_value_of_dtype(float32)
_VARIANCE_EPS = 1e-13


class ScalarMix(nn.Module):
    def __init__(self, num_layers: int, do_layer_norm: bool = False, initial_weights: list[float] | None = None,
                 trainable: bool = True) -> None:
        super().__init__()
        initial_weights = initial_weights if initial_weights is not None else [0.0] * num_layers
        if len(initial_weights) != num_layers:
            raise UserError(f"the scalar mix has {num_layers} layers but got {len(initial_weights)} initial weights")
        self.num_layers, self.do_layer_norm = num_layers, do_layer_norm
        self.scalar_parameters = nn.Parameter(torch.tensor(initial_weights, dtype=torch.float32), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor(1.0), requires_grad=trainable)

    def layer_weights(self) -> torch.Tensor:
        """The normalised ``s_j``."""
        return torch.softmax(self.scalar_parameters, dim=0)

    def forward(self, layers: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        """``layers``: ``num_layers`` tensors (B, T, D); ``mask`` (B, T) is needed for layer norm."""
        if len(layers) != self.num_layers:
            raise UserError(f"the scalar mix was built for {self.num_layers} layers, got {len(layers)}")
        weights = self.layer_weights()
        if self.do_layer_norm:
            if mask is None:
                raise UserError("a scalar mix with layer norm needs the mask of real tokens")
            layers = [masked_layer_norm(layer, mask) for layer in layers]
        return self.gamma * sum(w * layer for w, layer in zip(weights, layers))


def masked_layer_norm(layer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AllenNLP's ``_do_layer_norm``: one mean and variance over every unmasked element."""
    broadcast = mask.unsqueeze(-1).to(layer.dtype)
    count = broadcast.sum() * layer.shape[-1]
    mean = (layer * broadcast).sum() / count
    variance = (((layer * broadcast - mean) * broadcast) ** 2).sum() / count
    return (layer - mean) / torch.sqrt(variance + _VARIANCE_EPS)
