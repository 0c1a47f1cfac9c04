"""config.json translation of the decoder families: published files in their older field
spellings read to the presets, and switches lmforge does not implement are one-line errors."""

import pytest

from lmforge.errors import UserError
from lmforge.families import get_family

# meta-llama/Llama-3.2-1B's config.json (transformers 4.x spelling: rope_theta + rope_scaling).
LLAMA_32_1B = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
    "vocab_size": 128256,
}
# openai-community/gpt2's config.json (the fields that matter).
GPT2 = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
        "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
        "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "vocab_size": 50257}
# openai-community/openai-gpt's config.json.
OPENAI_GPT = {"afn": "gelu", "architectures": ["OpenAIGPTLMHeadModel"], "attn_pdrop": 0.1, "embd_pdrop": 0.1,
              "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "openai-gpt", "n_ctx": 512,
              "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 512, "resid_pdrop": 0.1,
              "vocab_size": 40478}


@pytest.mark.parametrize("family,preset,published", [
    ("llama", "meta-llama/Llama-3.2-1B", LLAMA_32_1B),
    ("gpt2", "gpt2", GPT2),
    ("openai-gpt", "openai-gpt", OPENAI_GPT),
])
def test_published_config_reads_to_the_preset(family, preset, published):
    config = get_family(family).config_from_hf(published)
    expected = get_family(family).presets[preset]
    assert config == expected


@pytest.mark.parametrize("family,change,message", [
    ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn'"),
    ("llama", {"attention_bias": True}, "attention_bias=True"),
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ("gpt2", {"activation_function": "gelu_fast"}, "activation_function 'gelu_fast'"),
])
def test_unsupported_switches_are_one_line_errors(family, change, message):
    published = {"llama": LLAMA_32_1B, "gpt2": GPT2}[family]
    with pytest.raises(UserError, match=message):
        get_family(family).config_from_hf({**published, **change})


def test_openai_gpt_has_no_erf_gelu():
    """transformers' openai-gpt maps afn "gelu" to the tanh form, so an erf-gelu model cannot be
    written as openai-gpt config.json (it would come back with another activation)."""
    gpt = get_family("openai-gpt")
    with pytest.raises(UserError, match="no gelu activation"):
        gpt.config_to_hf(gpt.presets["openai-gpt"].replace(activation="gelu"), "causal_lm")
    with pytest.raises(UserError, match="afn 'gelu_new'"):
        gpt.config_from_hf({**OPENAI_GPT, "afn": "gelu_new"})
    assert gpt.config_from_hf({**OPENAI_GPT, "afn": "swish"}).activation == "silu"
