"""GPT-2 (Radford et al. 2019) from the shared core by configuration and a weight map alone,
against transformers' GPT2Model and GPT2LMHeadModel: pre-norm, tanh-gelu, learned positions,
final norm, tied output, Conv1D weights ([in, out], fused ``c_attn``) through the map's
TRANSPOSE rows. Plus the key/value cache: prefill then one token at a time equals a full
recomputation, batched with left padding."""

import pytest
import torch
import transformers
from parity_helpers import (
    TOL,
    assert_close,
    cached_decoding_matches_recomputation,
    check_layouts,
    padded,
    port,
    randomize,
    sequences,
)

from lmforge.config import ModelConfig
from lmforge.families import gpt2

# The GPT-2 family's table (FAMILIES.md §2); generation tests import these names from here.
WEIGHTS = gpt2.WEIGHTS

HF_CONFIG = transformers.GPT2Config(vocab_size=101, n_embd=48, n_layer=3, n_head=4, n_positions=32,
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def core_config(hf: transformers.GPT2Config) -> ModelConfig:
    return gpt2.config_from_hf(hf.to_dict())


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = randomize(transformers.GPT2LMHeadModel(HF_CONFIG).eval())
    return reference, port(reference, core_config(HF_CONFIG), WEIGHTS, "causal_lm")


def test_hidden_states_and_logits_match_gpt2(pair):
    reference, ours = pair
    seqs = sequences(HF_CONFIG.vocab_size)
    with torch.no_grad():
        ref = [reference(input_ids=s[None], output_hidden_states=True) for s in seqs]
        check_layouts(lambda ids, mask, unpad: ours(ids, mask, unpad=unpad), [r.logits[0] for r in ref], seqs,
                      "GPT2LMHeadModel logits")
        check_layouts(lambda ids, mask, unpad: ours.backbone(ids, mask, unpad=unpad).padded(),
                      [r.hidden_states[-1][0] for r in ref], seqs, "GPT2Model last hidden state")
        # The reference's own right-padded batch agrees too (its positions count from 0).
        ids, mask = padded(seqs, "right")
        batch = reference(input_ids=ids, attention_mask=mask).logits
        assert_close(ours(ids, mask)[mask.bool()], batch[mask.bool()], "right-padded batch")


def test_export_round_trip_is_bit_identical(pair):
    reference, ours = pair
    exported = WEIGHTS.export_tensors({k: v for k, v in ours.state_dict().items() if k != "lm_head.decoder.weight"},
                                      ours.config)
    theirs = reference.state_dict()
    assert set(exported) == set(theirs) - {"lm_head.weight"}
    for name, tensor in exported.items():
        assert torch.equal(tensor, theirs[name]), name


def test_cache_equals_recomputation(pair):
    cached_decoding_matches_recomputation(pair[1], HF_CONFIG.vocab_size)


def test_causality():
    """A later token never changes earlier positions' outputs."""
    ours = port(randomize(transformers.GPT2LMHeadModel(HF_CONFIG).eval()), core_config(HF_CONFIG), WEIGHTS, "causal_lm")
    ids = sequences(HF_CONFIG.vocab_size, lengths=(9,))[0][None]
    changed = ids.clone()
    changed[0, 6] = (changed[0, 6] + 1) % HF_CONFIG.vocab_size
    with torch.no_grad():
        before, after = ours(ids), ours(changed)
    assert torch.equal(before[0, :6], after[0, :6]) and (before[0, 6] - after[0, 6]).abs().max() > TOL
