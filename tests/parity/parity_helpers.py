"""Shared machinery of the parity tests: port a transformers model into the lmforge core through
a weight map, and build batches of the same sequences right-padded, left-padded and unpadded.

Each reference output is computed one sequence at a time with no padding at all, so "exact"
means: every layout of the batch gives each real token what the reference gives it alone."""

from __future__ import annotations

import torch

from lmforge.config import ModelConfig
from lmforge.families.weights import WeightMap
from lmforge.interop.state import copy_into
from lmforge.models.build import build_model

TOL = 1e-5
LENGTHS = (7, 4, 1, 5)  # a full row, padded rows and a length-1 sequence


def randomize(reference: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Weights far from the reference's init (std 0.02 leaves activations so small that an
    erf-gelu and a tanh-gelu agree to 1e-5): N(0, std), norm weights N(1, std)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in reference.named_parameters():
            noise = torch.randn(param.shape, generator=g) * std
            is_norm_weight = param.dim() == 1 and name.endswith("weight")
            param.copy_(1 + noise if is_norm_weight else noise)
    return reference


def port(reference: torch.nn.Module, config: ModelConfig, weights: WeightMap, task: str,
         hf_prefix: str = "") -> torch.nn.Module:
    """An lmforge model holding ``reference``'s weights, imported strictly through ``weights``
    (every HF tensor must map, every lmforge parameter must be filled)."""
    tensors = {hf_prefix + name: tensor for name, tensor in reference.state_dict().items()}
    ours, _, unmatched = weights.import_tensors(tensors, config)
    assert not unmatched, f"HF tensors without a rule: {unmatched}"
    model = build_model(config, task).eval()
    copy_into(model, ours)
    return model


def sequences(vocab: int, lengths=LENGTHS, seed: int = 0, low: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(low, vocab, (n,), generator=g) for n in lengths]


def padded(seqs: list[torch.Tensor], side: str, pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) of shape (B, max_len), real tokens on the left ("right" padding) or right."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, span], mask[row, span] = seq, 1
    return ids, mask


def real_rows(batch_out: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """The real-token rows of each sequence of a padded (B, T, ...) output."""
    return [batch_out[row][mask[row].bool()] for row in range(mask.shape[0])]


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str, tol: float = TOL) -> float:
    assert ours.shape == theirs.shape, f"{what}: shapes {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    diff = float((ours - theirs).abs().max()) if ours.numel() else 0.0
    assert diff <= tol, f"{what}: max abs difference {diff:.2e}"
    return diff


def check_layouts(run_ours, references: list[torch.Tensor], seqs: list[torch.Tensor], what: str) -> None:
    """``run_ours(ids, mask, unpad)`` -> padded (B, T, ...) output; each layout must give every
    sequence its reference rows."""
    for side in ("right", "left"):
        ids, mask = padded(seqs, side)
        for unpad in (False, True):
            for row, (ours, theirs) in enumerate(zip(real_rows(run_ours(ids, mask, unpad), mask), references)):
                assert_close(ours, theirs, f"{what}, {side}-padded, unpad={unpad}, sequence {row}")


def cached_decoding_matches_recomputation(model, vocab: int, steps: int = 3) -> None:
    """Prefill a left-padded batch, then feed one token per row per step through the cache:
    each step's logits equal those of the whole sequence recomputed without a cache."""
    seqs = sequences(vocab, seed=1)
    ids, mask = padded(seqs, "left")
    cache = model.backbone.new_cache()
    with torch.no_grad():
        logits = model(ids, mask, cache=cache)
        assert_close(logits, model(ids, mask), "prefill")
        g = torch.Generator().manual_seed(2)
        for step in range(steps):
            new = torch.randint(3, vocab, (ids.shape[0], 1), generator=g)
            ids, mask = torch.cat([ids, new], 1), torch.cat([mask, torch.ones_like(new)], 1)
            step_logits = model(new, mask, cache=cache)[:, -1]
            assert cache.past_length == ids.shape[1]
            assert_close(step_logits, model(ids, mask)[:, -1], f"decode step {step}")
            # ... and the per-sequence truth (no padding at all).
            for row in range(ids.shape[0]):
                alone = ids[row][mask[row].bool()][None]
                assert_close(step_logits[row], model(alone)[0, -1], f"decode step {step}, sequence {row}")
