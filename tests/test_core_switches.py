"""The core's switches for later families, checked against a reference now: pre-norm, causal
self-attention, a final norm, tanh-gelu, no segment embeddings and no embedding norm are
GPT-2's decoder (transformers' GPT2Model), built here from the shared core by configuration
alone. Conv1D weights ([in, out], fused c_attn) are transposed and split by hand."""

import pytest
import torch
import transformers

from lmforge.config import ModelConfig
from lmforge.models.encoder import EncoderModel


def gpt2_like_core(reference: transformers.GPT2Model, config: transformers.GPT2Config) -> EncoderModel:
    ours = EncoderModel(ModelConfig(
        family="test", vocab_size=config.vocab_size, hidden_size=config.n_embd, num_layers=config.n_layer,
        num_heads=config.n_head, intermediate_size=4 * config.n_embd, max_positions=config.n_positions,
        type_vocab_size=0, activation="gelu_tanh", norm_placement="pre", norm_eps=config.layer_norm_epsilon,
        embedding_norm=False, final_norm=True, causal=True, pooler=False), with_pooler=False).eval()
    ref = reference.state_dict()
    width = config.n_embd
    mine = {"embeddings.word.weight": ref["wte.weight"], "embeddings.position.weight": ref["wpe.weight"],
            "encoder.final_norm.weight": ref["ln_f.weight"], "encoder.final_norm.bias": ref["ln_f.bias"]}
    for i in range(config.n_layer):
        h, us = f"h.{i}.", f"encoder.layers.{i}."
        fused_w, fused_b = ref[h + "attn.c_attn.weight"], ref[h + "attn.c_attn.bias"]  # (H, 3H), (3H,)
        for k, name in enumerate(("query", "key", "value")):
            mine[us + f"attention.sublayer.{name}.weight"] = fused_w[:, k * width:(k + 1) * width].t()
            mine[us + f"attention.sublayer.{name}.bias"] = fused_b[k * width:(k + 1) * width]
        for theirs, ours_name in (("attn.c_proj", "attention.sublayer.output"), ("mlp.c_fc", "feed_forward.sublayer.up"),
                                  ("mlp.c_proj", "feed_forward.sublayer.down")):
            mine[us + ours_name + ".weight"] = ref[h + theirs + ".weight"].t()
            mine[us + ours_name + ".bias"] = ref[h + theirs + ".bias"]
        for theirs, ours_name in (("ln_1", "attention.norm"), ("ln_2", "feed_forward.norm")):
            mine[us + ours_name + ".weight"] = ref[h + theirs + ".weight"]
            mine[us + ours_name + ".bias"] = ref[h + theirs + ".bias"]
    ours.load_state_dict(mine, strict=True)
    return ours


@pytest.mark.parametrize("unpad", [False, True])
def test_pre_norm_causal_stack_matches_gpt2(unpad):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=97, n_embd=48, n_layer=3, n_head=4, n_positions=32,
                                     attn_implementation="sdpa")
    reference = transformers.GPT2Model(config).eval()
    ours = gpt2_like_core(reference, config)
    ids = torch.randint(0, 97, (3, 11))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0  # right padding: causal rows never see it
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        out = ours(ids, mask, output_hidden_states=True, unpad=unpad)
    real = mask.bool()
    last = out.last_hidden_state if unpad else out.last_hidden_state[real]
    assert (last - ref.last_hidden_state[real]).abs().max() <= 1e-5
    for ours_h, ref_h in zip(out.hidden_states[:-1], ref.hidden_states[:-1]):
        ours_h = ours_h if unpad else ours_h[real]
        assert (ours_h - ref_h[real]).abs().max() <= 1e-5
    # Causality: changing a later token leaves earlier positions untouched.
    changed = ids.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 97
    with torch.no_grad():
        again = ours(changed, mask).last_hidden_state
        before = ours(ids, mask).last_hidden_state
    assert torch.equal(again[0, :8], before[0, :8]) and not torch.equal(again[0, 8], before[0, 8])
