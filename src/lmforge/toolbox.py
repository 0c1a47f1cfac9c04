"""Fine-tuning toolbox: discriminative learning rates and (gradual) freezing.

From ULMFiT (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", section 3.2-3.3) and its reference code in fastai:

- Discriminative fine-tuning: each layer group gets its own learning rate,
  lr_{l-1} = lr_l / 2.6 going down from the top group.
- Gradual unfreezing: first only the top group trains, then one more group per epoch.

The slanted triangular learning rates (STLR, section 3.2) and the warm-up schedules live with
the other schedules in ``lmforge.training.schedules``; discriminative rates compose with them,
since a schedule multiplies each group's own lr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from lmforge.errors import UserError


def discriminative_param_groups(
    layer_groups: Sequence[nn.Module], base_lr: float, decay: float = 2.6, weight_decay: float = 0.01
) -> list[dict[str, Any]]:
    """Optimizer parameter groups for ``layer_groups`` listed bottom to top.

    The top group gets ``base_lr``, the one below ``base_lr / decay``, and so on. Within a
    group, matrices get ``weight_decay`` and vectors (biases, LayerNorm weights: ndim < 2)
    none, as BERT's AdamWeightDecayOptimizer excludes "bias" and "LayerNorm". A parameter
    shared by several groups (tied embeddings) is put in the lowest one only, since an
    optimizer may see each parameter once. ``decay=1`` gives one rate everywhere.
    """
    if not layer_groups:
        raise UserError("discriminative_param_groups needs at least one layer group")
    if decay <= 0 or base_lr <= 0:
        raise UserError("base_lr and decay must be positive")
    seen: set[int] = set()
    groups = []
    top = len(layer_groups) - 1
    for depth, module in enumerate(layer_groups):
        lr = base_lr / decay ** (top - depth)
        decayed, plain = [], []
        for parameter in module.parameters():
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (decayed if parameter.ndim >= 2 else plain).append(parameter)
        for params, group_decay in ((decayed, weight_decay), (plain, 0.0)):
            if params:
                groups.append({"params": params, "lr": lr, "weight_decay": group_decay, "layer_group": depth})
    return groups


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients to every parameter of ``module`` (a frozen encoder for a linear probe
    or feature extraction). Dropout still follows ``module.train()``/``.eval()``."""
    _set_trainable(module, False)
    return module


class GradualUnfreezer:
    """ULMFiT gradual unfreezing over ``layer_groups`` listed bottom to top.

    ``start()`` leaves only the top group trainable; ``on_epoch(k)``, called at the start of
    epoch k (0-based), makes the top k+1 groups trainable and the rest frozen. The state
    depends on k alone, so a resumed run just calls ``on_epoch`` with its epoch.
    Frozen parameters get no gradient, so AdamW skips them (no weight decay either).
    """

    def __init__(self, layer_groups: Sequence[nn.Module]) -> None:
        if not layer_groups:
            raise UserError("GradualUnfreezer needs at least one layer group")
        self.layer_groups = list(layer_groups)

    def start(self) -> None:
        self.on_epoch(0)

    def on_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        first_trainable = len(self.layer_groups) - 1 - epoch
        # Freeze first, then unfreeze: a parameter shared between a frozen and a trainable
        # group (tied weights) ends up trainable.
        for module in self.layer_groups[: max(first_trainable, 0)]:
            _set_trainable(module, False)
        for module in self.layer_groups[max(first_trainable, 0) :]:
            _set_trainable(module, True)
