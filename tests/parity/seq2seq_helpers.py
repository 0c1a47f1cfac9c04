"""Checks shared by the encoder-decoder parity tests (BART, T5): every layout of a batch of
(source, target) pairs gives each real token what the reference gives the pair alone, and the
decoder's key/value cache reproduces a full recomputation."""

from __future__ import annotations

import torch
from parity_helpers import assert_close, padded, real_rows, sequences


def check_seq2seq_layouts(run_ours, references, sources, targets, what: str) -> None:
    """``run_ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad)`` -> (encoder (B, S, .), decoder
    (B, T, .)) padded outputs; ``references``: per pair (encoder rows, decoder rows). Returns
    the largest difference seen."""
    worst = 0.0
    for side in ("right", "left"):
        src_ids, src_mask = padded(sources, side)
        tgt_ids, tgt_mask = padded(targets, side)
        for unpad in (False, True):
            encoder_out, decoder_out = run_ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad)
            rows = zip(real_rows(encoder_out, src_mask), real_rows(decoder_out, tgt_mask), references)
            for index, (encoded, decoded, (ref_encoded, ref_decoded)) in enumerate(rows):
                worst = max(worst, assert_close(encoded, ref_encoded,
                                                f"{what} encoder, {side}-padded, unpad={unpad}, pair {index}"),
                            assert_close(decoded, ref_decoded,
                                         f"{what} decoder, {side}-padded, unpad={unpad}, pair {index}"))
    return worst


def check_cached_decoding(model, vocab: int, steps: int = 3) -> None:
    """Encode once; prefill a left-padded decoder prefix through the cache, then one token per
    row per step: each step's logits equal a full recomputation without a cache."""
    src_ids, src_mask = padded(sequences(vocab, seed=3), "right")
    tgt_ids, tgt_mask = padded(sequences(vocab, lengths=(3, 1, 4, 2), seed=4), "left")
    backbone = model.backbone
    cache = backbone.new_cache()
    with torch.no_grad():
        memory = backbone.encode(src_ids, src_mask)
        logits = model(None, src_mask, tgt_ids, tgt_mask, cache=cache, encoder_output=memory)
        assert_close(logits, model(src_ids, src_mask, tgt_ids, tgt_mask), "prefill")
        g = torch.Generator().manual_seed(5)
        for step in range(steps):
            new = torch.randint(3, vocab, (tgt_ids.shape[0], 1), generator=g)
            tgt_ids, tgt_mask = torch.cat([tgt_ids, new], 1), torch.cat([tgt_mask, torch.ones_like(new)], 1)
            step_logits = model(None, src_mask, new, tgt_mask, cache=cache, encoder_output=memory)[:, -1]
            assert cache.past_length == tgt_ids.shape[1]
            full = model(src_ids, src_mask, tgt_ids, tgt_mask)[:, -1]
            assert_close(step_logits, full, f"decode step {step}")
