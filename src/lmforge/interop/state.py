"""Strict copying of named tensors into a model, shared by the Hugging Face and lmforge
checkpoint readers: a tensor that has no place, a parameter left without one, or a shape
mismatch is an error naming it; tied weights are stored once and checked against their source."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lmforge.errors import UserError

# Weights a new head brings its own initialisation for (transformers does the same): the
# pooler when the checkpoint's head never used one. A checkpoint's pooler is skipped when the
# model's heads do not read one (transformers ignores it there too).
_OPTIONAL_IN_NEW_HEADS = ("backbone.pooler.",)


def tied_names(model: nn.Module) -> set[str]:
    """State-dict names that alias an earlier tensor (tied weights): saved once only."""
    seen: set[int] = set()
    shared = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            shared.add(name)
        seen.add(id(tensor))
    return shared


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors with each tied tensor once, contiguous, detached."""
    shared = tied_names(model)
    return {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items() if name not in shared}


def fresh_heads(changes: dict | None) -> tuple[str, ...]:
    """Heads that start from their initialisation whatever the checkpoint holds: a new label
    set means a new classifier, even with as many labels as the old one."""
    return ("classifier.",) if "labels" in (changes or {}) else ()


def copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], keep_heads: bool = True,
              fresh: tuple[str, ...] = (), describe: Callable[[str], str] = str) -> None:
    """Copy ``tensors`` (lmforge names) into ``model``.

    ``keep_heads`` False: the backbone loads strictly, heads start from their initialisation
    unless the checkpoint has a same-named, same-shaped one (another task's heads are ignored).
    ``fresh``: name prefixes that always start from their initialisation (a new label set's
    classifier). ``describe`` names a tensor in messages (its name in the checkpoint file)."""
    params = model.state_dict()
    shared = tied_names(model)
    loaded: set[str] = set()
    tied_checks = []
    for name, tensor in tensors.items():
        if fresh and name.startswith(fresh):
            continue
        if name not in params and name.startswith(_OPTIONAL_IN_NEW_HEADS):
            continue  # a pooler no head here reads: published RobertaForMaskedLM files keep one
        fits = name in params and params[name].shape == tensor.shape
        if not fits and not keep_heads and (name not in params or not name.startswith("backbone.")):
            continue  # another task's head, or a pooler the new head does not use
        if name not in params:
            raise UserError(f"checkpoint weight {describe(name)} has no place in a {model.task} model")
        if not fits:
            raise UserError(f"shape mismatch for {describe(name)}: checkpoint {tuple(tensor.shape)}, "
                            f"model {tuple(params[name].shape)}")
        if name in shared:
            tied_checks.append((name, tensor))  # checked once its source is loaded
        else:
            with torch.no_grad():
                params[name].copy_(tensor)
        loaded.add(name)
    for name, tensor in tied_checks:
        if not torch.equal(params[name], tensor.to(params[name].dtype)):
            raise UserError(f"checkpoint weight {describe(name)} differs from the weight it is tied to")

    def may_start_fresh(name: str) -> bool:
        if fresh and name.startswith(fresh):
            return True
        return not keep_heads and (not name.startswith("backbone.") or name.startswith(_OPTIONAL_IN_NEW_HEADS))

    missing = [name for name in params if name not in loaded and name not in shared and not may_start_fresh(name)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"checkpoint has no weight for {missing[0]}{more}")
