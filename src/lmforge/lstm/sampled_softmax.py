"""Sampled softmax for large vocabularies (Jean et al. 2015), as TensorFlow's
``tf.nn.sampled_softmax_loss`` computes it with its default sampler, the one bilm-tf trains
ELMo with (8,192 samples of a 793k-word vocabulary):

- candidates are drawn from the log-uniform (Zipfian) distribution over ids sorted by
  frequency, ``P(k) = (log(k + 2) - log(k + 1)) / log(V + 1)``
  (``LogUniformCandidateSampler``: ``floor(exp(u * log(V + 1))) - 1``), without repeats: draws
  go on until ``num_sampled`` distinct ids are found, and ``num_tries`` counts every draw;
- each logit is corrected by ``-log(expected count)``, the expected count of an id being
  ``-expm1(num_tries * log1p(-P(k)))`` for a unique sample (``range_sampler.cc``);
- one candidate set serves the whole batch; a candidate equal to a row's target
  ("accidental hit") gets a logit of ``-FLT_MAX`` in that row;
- the loss is the cross-entropy of ``[true logit, sampled logits]`` with the true one first.

Ids must be ordered by frequency for the sampler to fit (the tokenizer's trained vocabulary
roughly is; bilm-tf requires a frequency-sorted vocabulary file).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def log_uniform_probability(ids: torch.Tensor, range_max: int) -> torch.Tensor:
    ids = ids.double()
    return ((ids + 2).log() - (ids + 1).log()) / math.log(range_max + 1)


def sample_log_uniform_unique(num_sampled: int, range_max: int,
                              generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """``num_sampled`` distinct ids in [0, range_max) and the number of draws it took."""
    if num_sampled > range_max:
        raise ValueError(f"cannot draw {num_sampled} distinct ids from {range_max}")
    seen: dict[int, None] = {}  # insertion-ordered set: candidates in the order first drawn
    tries = 0
    log_range = math.log(range_max + 1)
    while len(seen) < num_sampled:
        chunk = max(2 * (num_sampled - len(seen)), 64)
        uniform = torch.rand(chunk, generator=generator, dtype=torch.float64)
        draws = ((uniform * log_range).exp().floor().long() - 1).clamp_(0, range_max - 1).tolist()
        for value in draws:
            tries += 1
            seen.setdefault(value, None)
            if len(seen) == num_sampled:
                break
    return torch.tensor(list(seen), dtype=torch.long), tries


def expected_count(probability: torch.Tensor, num_tries: int, num_sampled: int) -> torch.Tensor:
    if num_tries == num_sampled:
        return probability * num_sampled
    return -torch.expm1(num_tries * torch.log1p(-probability))


def sampled_softmax_loss(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         num_sampled: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-row losses (N,) of ``hidden`` (N, D) against ``targets`` (N,) under the softmax
    ``hidden @ weight.T + bias`` (``weight`` (V, D)), estimated with ``num_sampled`` candidates."""
    vocab = weight.shape[0]
    sampled, tries = sample_log_uniform_unique(num_sampled, vocab, generator)
    sampled = sampled.to(hidden.device)
    true_count = expected_count(log_uniform_probability(targets, vocab), tries, num_sampled)
    sampled_count = expected_count(log_uniform_probability(sampled, vocab), tries, num_sampled)
    true_logits = (hidden * weight[targets]).sum(-1) + bias[targets] - true_count.log().to(hidden.dtype)
    sampled_logits = hidden @ weight[sampled].T + bias[sampled] - sampled_count.log().to(hidden.dtype)
    hits = targets.unsqueeze(1) == sampled.unsqueeze(0)
    sampled_logits = sampled_logits.masked_fill(hits, torch.finfo(sampled_logits.dtype).min)
    logits = torch.cat([true_logits.unsqueeze(1), sampled_logits], dim=1)
    return F.cross_entropy(logits.float(), torch.zeros_like(targets), reduction="none")
