"""LLaMA (Touvron et al. 2023) from the shared core by configuration and a weight map alone,
against transformers' LlamaModel / LlamaForCausalLM: rotary positions (rotate-half, theta from
the config), RMSNorm, SwiGLU, no biases, an untied output and grouped-query attention (4 query
heads, 2 key/value heads). Meta-format checkpoints (interleaved rotary rows) import through the
map's RotaryInterleave transform. Cached decoding equals recomputation."""

import pytest
import torch
import transformers
from parity_helpers import (
    cached_decoding_matches_recomputation,
    check_layouts,
    port,
    randomize,
    sequences,
)

from lmforge.config import ModelConfig
from lmforge.families import llama

# The LLaMA family's tables: transformers' names, and Meta's original checkpoint names.
WEIGHTS = llama.WEIGHTS
META_WEIGHTS = llama.META_WEIGHTS

HF_CONFIG = transformers.LlamaConfig(vocab_size=103, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                     rms_norm_eps=1e-6, tie_word_embeddings=False,
                                     rope_parameters={"rope_type": "default", "rope_theta": 500.0})


def core_config(hf: transformers.LlamaConfig) -> ModelConfig:
    return llama.config_from_hf(hf.to_dict())


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    reference = randomize(transformers.LlamaForCausalLM(HF_CONFIG).eval())
    return reference, port(reference, core_config(HF_CONFIG), WEIGHTS, "causal_lm")


def test_hidden_states_and_logits_match_llama(pair):
    reference, ours = pair
    assert ours.backbone.decoder.layers[0].attention.sublayer.qkv.weight.shape == (4 * 12 + 2 * 2 * 12, 48)
    seqs = sequences(HF_CONFIG.vocab_size)
    with torch.no_grad():
        ref = [reference(input_ids=s[None], output_hidden_states=True) for s in seqs]
        check_layouts(lambda ids, mask, unpad: ours(ids, mask, unpad=unpad), [r.logits[0] for r in ref], seqs,
                      "LlamaForCausalLM logits")
        check_layouts(lambda ids, mask, unpad: ours.backbone(ids, mask, unpad=unpad).padded(),
                      [r.hidden_states[-1][0] for r in ref], seqs, "LlamaModel last hidden state")


def test_cache_equals_recomputation_with_grouped_query_attention(pair):
    cached_decoding_matches_recomputation(pair[1], HF_CONFIG.vocab_size)


# HF name fragments -> Meta's (llama/model.py).
_META_NAMES = [("model.embed_tokens", "tok_embeddings"), ("model.norm", "norm"), ("lm_head", "output"),
               ("model.layers", "layers"), ("self_attn.q_proj", "attention.wq"), ("self_attn.k_proj", "attention.wk"),
               ("self_attn.v_proj", "attention.wv"), ("self_attn.o_proj", "attention.wo"),
               ("mlp.gate_proj", "feed_forward.w1"), ("mlp.up_proj", "feed_forward.w3"),
               ("mlp.down_proj", "feed_forward.w2"), ("input_layernorm", "attention_norm"),
               ("post_attention_layernorm", "ffn_norm")]


def _hf_permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """transformers' convert_llama_weights_to_hf ``permute``: Meta rows -> HF rows."""
    rows, cols = weight.shape
    return weight.view(heads, rows // heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def test_meta_format_imports_through_rotary_interleave(pair):
    reference, ours = pair
    meta = {}
    for name, tensor in reference.state_dict().items():
        for hf_part, meta_part in _META_NAMES:
            name = name.replace(hf_part, meta_part)
        if name.endswith(("attention.wq.weight", "attention.wk.weight")):
            heads = HF_CONFIG.num_attention_heads if ".wq." in name else HF_CONFIG.num_key_value_heads
            # The Meta rows are those the HF script's permutation sends to the HF rows.
            order = _hf_permute(torch.arange(tensor.shape[0], dtype=torch.float)[:, None], heads)[:, 0].long()
            meta_rows = torch.empty_like(tensor)
            meta_rows[order] = tensor
            assert torch.equal(_hf_permute(meta_rows, heads), tensor)
            tensor = meta_rows
        meta[name] = tensor
    imported, _, unmatched = META_WEIGHTS.import_tensors(meta, ours.config)
    assert not unmatched
    for name, tensor in ours.state_dict().items():
        assert torch.equal(imported[name], tensor), name
    exported = META_WEIGHTS.export_tensors(imported, ours.config)
    assert exported.keys() == meta.keys()
    for name, tensor in meta.items():
        assert torch.equal(exported[name], tensor), name
