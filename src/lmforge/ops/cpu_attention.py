"""Attention with dropout on CPU in fewer passes than SDPA's math fallback.

CPU's fused SDPA kernel has no dropout, so training falls back to SDPA's math path, which
spends about twice as many passes over the (B, heads, T, S) scores (scaling, a separate mask
add, NaN-safe softmax checks, a Bernoulli tensor, then two multiplies). Here: the scale goes on
q (T*d, not T*S, elements), the mask is applied in place, the keep mask comes from one uniform
draw, and the 1/(1-p) rescale goes on the (T, d) output. Measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import torch

from lmforge import ops


def usable(q: torch.Tensor, dropout_p: float) -> bool:
    return ops.fast_kernels_enabled() and dropout_p > 0 and q.device.type == "cpu" and not q.is_nested


def attention_with_dropout(q, k, v, mask: torch.Tensor | None, *, dropout_p: float, scale: float):
    """q: (B, heads, T, d), k/v: (B, heads, S, d); ``mask`` bool (True: may attend) or an
    additive float mask, broadcastable to (B, heads, T, S) -> (B, heads, T, d)."""
    scores = torch.matmul(q * scale, k.transpose(-1, -2))  # (B, heads, T, S)
    if mask is not None and mask.dtype == torch.bool:
        # The lowest float rather than -inf: a row with every key masked (only ever padding)
        # stays finite instead of turning into NaN, and exp(lowest - max) is exactly 0.
        scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
    elif mask is not None:
        scores += mask
    probs = scores.softmax(dim=-1)
    keep = torch.rand_like(probs) >= dropout_p  # P(keep) = 1 - p, as Bernoulli(1 - p)
    return torch.matmul(torch.where(keep, probs, 0.0), v) * (1.0 / (1.0 - dropout_p))  # (B, heads, T, d)
