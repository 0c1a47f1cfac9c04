"""Learning-rate schedules of pretraining and fine-tuning: functions step -> multiplier of each
parameter group's initial lr, for ``torch.optim.lr_scheduler.LambdaLR`` (so they compose with
ULMFiT's discriminative rates, which live in the groups' own lrs).

Step ``s`` is the number of optimizer steps taken so far: the optimizer step that follows uses
the multiplier of ``s`` and the scheduler is stepped after it, as transformers' ``Trainer`` does.

- ``warmup_then_decay``: linear warm-up ``s / w`` from 0 to 1 over ``w`` steps, then linear
  decay to 0 at ``total_steps`` (BERT, Devlin et al. 2019, appendix A.2), half a cosine wave
  to 0, or a constant 1. These are transformers' ``get_linear_schedule_with_warmup``,
  ``get_cosine_schedule_with_warmup`` and ``get_constant_schedule_with_warmup``
  (``optimization.py``) factor for factor; fairseq's ``polynomial_decay`` with power 1 is the
  linear one. google-research/bert's TF code differs slightly: it decays over all steps, so the
  rate jumps at the end of the warm-up. With ``s / w`` the first step runs at rate 0, as
  transformers' does.
- ``slanted_triangular``: ULMFiT's STLR (Howard & Ruder 2018, section 3.2, equation 3).
- ``by_progress``: the same shapes as functions of the run's progress in [0, 1] rather than of
  a step count, for a run with a wall-clock budget (progress = training seconds / budget), as
  Izsak et al. 2021 ("How to Train BERT with an Academic Budget") and Cramming (Geiping &
  Goldstein 2022) schedule by time so the rate reaches 0 exactly when the budget runs out.
  It adds ``one_cycle`` (Smith & Topin 2019; ``torch.optim.lr_scheduler.OneCycleLR``'s cosine
  form): from peak/25 up to the peak at the warm-up fraction, then down to peak/1e4.

Steps past ``total_steps`` hold the final value (0, or STLR's 1/ratio).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from lmforge.errors import UserError

Schedule = Callable[[int], float]
DecayKind = Literal["linear", "cosine", "constant"]
ProgressKind = Literal["linear", "cosine", "constant", "one_cycle"]
ProgressSchedule = Callable[[float], float]


def warmup_then_decay(total_steps: int, warmup_steps: int, kind: DecayKind = "linear") -> Schedule:
    """Multiplier ``s / warmup_steps`` during warm-up, then ``kind``: a linear or half-cosine
    decay reaching 0 at ``total_steps``, or a constant 1."""
    if kind not in ("linear", "cosine", "constant"):
        raise UserError(f"unknown schedule kind {kind!r} (expected 'linear', 'cosine' or 'constant')")
    if total_steps < 1 or not 0 <= warmup_steps < total_steps:
        raise UserError(f"need total_steps >= 1 and 0 <= warmup_steps < total_steps, got {total_steps}, {warmup_steps}")

    return lambda step: _warmup_then_decay_at(step, warmup_steps, total_steps, kind)


def _warmup_then_decay_at(t: float, warmup: float, total: float, kind: DecayKind) -> float:
    """The warm-up-then-decay shape at ``t``, in steps or in shares of a run alike."""
    if t < warmup:
        return t / warmup
    if kind == "constant":
        return 1.0
    progress = min(1.0, (t - warmup) / (total - warmup))
    if kind == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


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


ONE_CYCLE_DIV = 25.0  # OneCycleLR div_factor: the start is peak / 25
ONE_CYCLE_FINAL_DIV = 1e4  # OneCycleLR final_div_factor: the end is start / 1e4


def by_progress(kind: ProgressKind = "linear", warmup_fraction: float = 0.0) -> ProgressSchedule:
    """Multiplier of the peak rate at progress ``p`` in [0, 1] (past 1: the value at 1).

    ``linear`` / ``cosine`` / ``constant``: ``p / warmup_fraction`` during warm-up, then a linear
    or half-cosine decay reaching 0 at ``p = 1`` (or a constant 1), as ``warmup_then_decay``
    over steps. ``one_cycle``: a half cosine from 1/25 up to 1 over the warm-up fraction, then
    a half cosine down to 1/25e4 at ``p = 1`` (OneCycleLR with cosine annealing).
    """
    if kind not in ("linear", "cosine", "constant", "one_cycle"):
        raise UserError(f"unknown schedule kind {kind!r} (expected 'linear', 'cosine', 'constant' or 'one_cycle')")
    if not 0 <= warmup_fraction < 1:
        raise UserError(f"the warm-up fraction must be in [0, 1), got {warmup_fraction}")

    def cosine_between(start: float, end: float, t: float) -> float:
        return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))

    def multiplier(p: float) -> float:
        p = min(max(p, 0.0), 1.0)
        if kind == "one_cycle":
            low = 1.0 / ONE_CYCLE_DIV
            if p < warmup_fraction:
                return cosine_between(low, 1.0, p / warmup_fraction)
            return cosine_between(1.0, low / ONE_CYCLE_FINAL_DIV, (p - warmup_fraction) / (1.0 - warmup_fraction))
        return _warmup_then_decay_at(p, warmup_fraction, 1.0, kind)

    return multiplier
