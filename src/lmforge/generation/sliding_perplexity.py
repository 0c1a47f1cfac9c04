"""Sliding-window perplexity of a causal language model, computed as transformers'
documentation does it ("Perplexity of fixed-length models"): windows of ``max_length`` tokens
start every ``stride`` tokens; each window scores only the tokens the previous window did not
(its earlier tokens are context). ``stride == max_length`` gives disjoint windows; a smaller
stride gives each token more context.

By default every scored token counts once: exp(total NLL / scored tokens). The guide instead
weights each window's mean loss by (new tokens - 1), its ``num_valid_tokens - batch_size``:
exact for the first window, one token short for every later one (so with stride 1 only the
first window counts). ``guide_weighting=True`` reproduces the guide's number, to compare with
published figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmforge.errors import UserError
from lmforge.progress import progress


@dataclass
class PerplexityResult:
    perplexity: float
    mean_nll: float  # natural log, per scored token (or as the guide weights it)
    tokens: int  # the tokens of the text
    windows: int


def windows(num_tokens: int, max_length: int, stride: int):
    """(begin, end, new) per window: ids[begin:end] are read, the last ``new`` are scored."""
    previous_end = 0
    for begin in range(0, num_tokens, stride):
        end = min(begin + max_length, num_tokens)
        yield begin, end, end - previous_end
        previous_end = end
        if end == num_tokens:
            break


@torch.no_grad()
def perplexity(model, ids: Sequence[int] | torch.Tensor, max_length: int | None = None, stride: int | None = None,
               guide_weighting: bool = False) -> PerplexityResult:
    """``ids``: the whole text's token ids (one sequence). ``max_length`` defaults to the model's
    positions, ``stride`` to half of ``max_length``."""
    if getattr(model, "task", None) != "causal_lm":
        raise UserError(f"perplexity needs a causal language model (task causal_lm); this one is a "
                        f"{getattr(model, 'task', type(model).__name__)} model")
    positions = model.config.max_positions
    max_length = positions if max_length is None else max_length
    if not 2 <= max_length <= positions:
        raise UserError(f"max_length must be between 2 and the model's {positions} positions, got {max_length}")
    stride = max(1, max_length // 2) if stride is None else stride
    if not 1 <= stride <= max_length:
        raise UserError(f"stride must be between 1 and max_length ({max_length}), got {stride}")
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if ids.numel() < 2:
        raise UserError(f"the text has {ids.numel()} token(s); perplexity needs at least 2")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    spans = list(windows(ids.numel(), max_length, stride))
    weighted_nll, weight = 0.0, 0
    try:
        with progress(ids.numel(), "perplexity", "tok") as bar:
            for begin, end, new in spans:
                window = ids[begin:end].to(device)[None]
                scored = min(new, end - begin - 1)
                # The vocabulary head runs only on the positions that predict a scored token
                # (the context positions of a window need no scores).
                hidden = model.backbone(window).last_hidden_state[0, -scored - 1:-1]
                log_probs = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)
                targets = window[0, -scored:]
                nll = -log_probs.gather(1, targets[:, None]).sum().item()
                share = new - 1 if guide_weighting else scored
                weighted_nll += nll / scored * share
                weight += share
                bar.update(new)
    finally:
        model.train(was_training)
    mean = weighted_nll / weight
    return PerplexityResult(math.exp(mean), mean, ids.numel(), len(spans))
