"""Fine-tuning toolbox: discriminative learning rates, LR schedules, (gradual) freezing.

From ULMFiT (Howard & Ruder 2018, "Universal Language Model Fine-tuning for Text
Classification", section 3.2-3.3) and its reference code in fastai:

- Discriminative fine-tuning: each layer group gets its own learning rate,
  lr_{l-1} = lr_l / 2.6 going down from the top group.
- Slanted triangular learning rates (STLR): a short linear warm-up over ``cut_frac`` of the
  steps, then a long linear decay, from lr/ratio up to lr and back (equation 3).
- Gradual unfreezing: first only the top group trains, then one more group per epoch.

Also the warm-up schedules that BERT-family fine-tuning uses instead: linear warm-up then
linear decay to 0 (BERT; the continuous form of fairseq's ``polynomial_decay`` and Hugging
Face's ``get_linear_schedule_with_warmup``; google-research/bert's TF code decays over all
steps and so jumps slightly at the end of the warm-up), or cosine decay
(``get_cosine_schedule_with_warmup``).

Schedules are functions step -> multiplier of each group's initial lr, for
``torch.optim.lr_scheduler.LambdaLR``, so they compose with discriminative rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from torch import nn

from lmforge.errors import UserError

Schedule = Callable[[int], float]


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


def slanted_triangular(total_steps: int, cut_frac: float = 0.1, ratio: float = 32) -> Schedule:
    """ULMFiT's STLR (equation 3) as an lr multiplier at step t (0-based):

    cut = floor(T * cut_frac); p = t / cut if t < cut else
    1 - (t - cut) / (cut * (1 / cut_frac - 1)); multiplier = (1 + p (ratio - 1)) / ratio.

    It rises from 1/ratio at t = 0 to 1 at t = cut and falls back to 1/ratio at t = T.
    """
    if total_steps < 1 or not 0 < cut_frac < 1 or ratio < 1:
        raise UserError("slanted_triangular needs total_steps >= 1, 0 < cut_frac < 1 and ratio >= 1")
    # The paper's formula divides by cut; a run too short for one warm-up step still gets one.
    cut = max(1, math.floor(total_steps * cut_frac))

    def multiplier(step: int) -> float:
        if step < cut:
            p = step / cut
        else:
            # Past T the formula goes negative; hold the floor of 1/ratio instead.
            p = max(0.0, 1 - (step - cut) / (cut * (1 / cut_frac - 1)))
        return (1 + p * (ratio - 1)) / ratio

    return multiplier


def linear_warmup_decay(
    total_steps: int, warmup_steps: int, kind: Literal["linear", "cosine"] = "linear"
) -> Schedule:
    """Multiplier step / warmup_steps during warm-up, then a decay reaching 0 at
    ``total_steps``: linear, or half a cosine wave. Steps past the end stay at 0."""
    if kind not in ("linear", "cosine"):
        raise UserError(f"unknown schedule kind {kind!r} (expected 'linear' or 'cosine')")
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise UserError(f"need total_steps >= 1 and 0 <= warmup_steps < total_steps, got {total_steps}, {warmup_steps}")

    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        if kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


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
