"""LLaMA (Touvron et al., 2023, "LLaMA: Open and Efficient Foundation Language Models"; Llama 2,
Touvron et al. 2023; Llama 3, Grattafiori et al. 2024) and models of its shape (TinyLlama,
Zhang et al. 2024).

Reference code: meta-llama/llama (model.py, and llama-models' ``apply_scaling`` for Llama 3.1
rope scaling) and transformers' modeling_llama.py, whose weight names and config.json fields
this file translates. A pre-norm decoder with RMSNorm, rotary positions (rotate-half, base
``rope_theta``, optionally the "llama3" frequency scaling), SwiGLU feed-forward, no biases,
grouped-query attention and an output untied from the embeddings (Llama 3.2 1B/3B tie it).

Two weight tables: transformers' names (``WEIGHTS``) and Meta's original checkpoint names
(``META_WEIGHTS``, consolidated.*.pth), whose q/k rows interleave the rotary pairs; the
RotaryInterleave transform converts them as transformers' convert_llama_weights_to_hf does.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family
from lmforge.families.hf_config import (
    ACTIVATION_NAMES,
    activation_from_hf,
    architecture_for,
    labels_from_hf,
    labels_to_hf,
    require,
)
from lmforge.families.weights import (
    IDENTITY,
    RotaryInterleave,
    Rule,
    WeightMap,
    prefixed,
    qkv_sizes,
)


def llama_config(num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int,
                 vocab_size: int = 32000, **kw) -> ModelConfig:
    return ModelConfig(**{
        "family": "llama", "architecture": "decoder", "vocab_size": vocab_size, "hidden_size": hidden_size,
        "num_layers": num_layers, "num_heads": num_heads, "intermediate_size": intermediate_size,
        "positions": "rotary", "max_positions": 2048, "type_vocab_size": 0, "activation": "silu",
        "feed_forward": "gated", "norm_placement": "pre", "norm_type": "rmsnorm", "norm_eps": 1e-6,
        "embedding_norm": False, "final_norm": True, "bias": False, "tie_word_embeddings": False,
        "pooler": False, "pooling": "last", "sequence_classifier_bias": False, "classifier_dropout": 0.0,
        "hidden_dropout": 0.0, "attention_dropout": 0.0, "pad_token_id": None, "bos_token_id": 1,
        "eos_token_id": 2, **kw})


PRESETS = {
    # A small model with grouped-query attention for tests and the tiny recipe (not published).
    "llama-tiny": llama_config(2, 128, 4, 384, vocab_size=1024, num_kv_heads=2, max_positions=256),
    "TinyLlama/TinyLlama_v1.1": llama_config(22, 2048, 32, 5632, num_kv_heads=4, norm_eps=1e-5),
    "meta-llama/Llama-2-7b-hf": llama_config(32, 4096, 32, 11008, max_positions=4096, norm_eps=1e-5),
    "meta-llama/Llama-3.2-1B": llama_config(
        16, 2048, 32, 8192, vocab_size=128256, num_kv_heads=8, max_positions=131072, norm_eps=1e-5,
        rope_theta=500000.0, rope_scaling="llama3", rope_scaling_factor=32.0, rope_low_freq_factor=1.0,
        rope_high_freq_factor=4.0, rope_original_max_positions=8192, tie_word_embeddings=True,
        bos_token_id=128000, eos_token_id=128001),
}


def _rope_from_hf(hf: dict) -> dict:
    """Rotary fields from transformers 5's ``rope_parameters`` or the older top-level
    ``rope_theta`` + ``rope_scaling``."""
    rope = dict(hf.get("rope_scaling") or {})
    rope.update(hf.get("rope_parameters") or {})
    kind = rope.get("rope_type", rope.get("type", "default"))
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    if kind == "default":
        return {"rope_theta": float(theta)}
    if kind != "llama3":
        raise UserError(f"LLaMA rope type {kind!r} is not supported (only default and llama3)")
    return {"rope_theta": float(theta), "rope_scaling": "llama3", "rope_scaling_factor": float(rope["factor"]),
            "rope_low_freq_factor": float(rope["low_freq_factor"]),
            "rope_high_freq_factor": float(rope["high_freq_factor"]),
            "rope_original_max_positions": int(rope["original_max_position_embeddings"])}


def _first(value):
    return value[0] if isinstance(value, list) else value


def config_from_hf(hf: dict) -> ModelConfig:
    require(hf, "attention_bias", False, "LLaMA")
    require(hf, "mlp_bias", False, "LLaMA")
    heads = hf.get("num_attention_heads", 32)
    return llama_config(
        hf.get("num_hidden_layers", 32), hf.get("hidden_size", 4096), heads, hf.get("intermediate_size", 11008),
        vocab_size=hf.get("vocab_size", 32000),
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or 0,
        activation=activation_from_hf(hf.get("hidden_act", "silu"), "hidden_act"),
        max_positions=hf.get("max_position_embeddings", 2048),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        attention_dropout=hf.get("attention_dropout", 0.0),
        initializer_range=hf.get("initializer_range", 0.02),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        # LLaMA's embedding has a padding row only when config.json names a pad token.
        pad_token_id=hf.get("pad_token_id"),
        bos_token_id=hf.get("bos_token_id", 1),
        eos_token_id=_first(hf.get("eos_token_id", 2)),
        labels=labels_from_hf(hf),
        **_rope_from_hf(hf),
    )


def _rope_to_hf(config: ModelConfig) -> dict:
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling == "llama3":
        rope.update(rope_type="llama3", factor=config.rope_scaling_factor,
                    low_freq_factor=config.rope_low_freq_factor, high_freq_factor=config.rope_high_freq_factor,
                    original_max_position_embeddings=config.rope_original_max_positions)
    return rope


def config_to_hf(config: ModelConfig, task: str) -> dict:
    return {
        "architectures": [architecture_for(ARCHITECTURES, task, "LLaMA")],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": ACTIVATION_NAMES[config.activation],
        "max_position_embeddings": config.max_positions,
        "rms_norm_eps": config.norm_eps,
        "rope_parameters": _rope_to_hf(config),
        # transformers 4.x reads these two instead (5.x accepts them alongside, consistently).
        "rope_theta": config.rope_theta,
        "rope_scaling": _rope_to_hf(config) if config.rope_scaling != "none" else None,
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": config.attention_dropout,
        "initializer_range": config.initializer_range,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        **labels_to_hf(config),
    }


ARCHITECTURES = {
    "backbone": "LlamaModel",
    "causal_lm": "LlamaForCausalLM",
    "sequence_classification": "LlamaForSequenceClassification",
}

_LAYER = "decoder.layers.{i}."
WEIGHTS = WeightMap(prefixed([
    ("embeddings.word", "embed_tokens"),
    (_LAYER + "attention.norm", "layers.{i}.input_layernorm"),
    Rule(_LAYER + "attention.sublayer.qkv", tuple(f"layers.{{i}}.self_attn.{p}_proj" for p in "qkv"), split=qkv_sizes),
    (_LAYER + "attention.sublayer.output", "layers.{i}.self_attn.o_proj"),
    (_LAYER + "feed_forward.norm", "layers.{i}.post_attention_layernorm"),
    (_LAYER + "feed_forward.sublayer.gate", "layers.{i}.mlp.gate_proj"),
    (_LAYER + "feed_forward.sublayer.up", "layers.{i}.mlp.up_proj"),
    (_LAYER + "feed_forward.sublayer.down", "layers.{i}.mlp.down_proj"),
    ("decoder.final_norm", "norm"),
], "backbone.", "model.") + [("lm_head.decoder", "lm_head"), ("classifier.classifier", "score")])

# Meta's original layout (llama/model.py names); q/k rows pair rotary dimensions interleaved.
META_WEIGHTS = WeightMap(prefixed([
    ("embeddings.word", "tok_embeddings"),
    (_LAYER + "attention.norm", "layers.{i}.attention_norm"),
    Rule(_LAYER + "attention.sublayer.qkv", tuple(f"layers.{{i}}.attention.w{p}" for p in "qkv"),
         (RotaryInterleave("num_heads"), RotaryInterleave("num_kv_heads"), IDENTITY), split=qkv_sizes),
    (_LAYER + "attention.sublayer.output", "layers.{i}.attention.wo"),
    (_LAYER + "feed_forward.norm", "layers.{i}.ffn_norm"),
    (_LAYER + "feed_forward.sublayer.gate", "layers.{i}.feed_forward.w1"),
    (_LAYER + "feed_forward.sublayer.up", "layers.{i}.feed_forward.w3"),
    (_LAYER + "feed_forward.sublayer.down", "layers.{i}.feed_forward.w2"),
    ("decoder.final_norm", "norm"),
], "backbone.", "") + [("lm_head.decoder", "output")])

FAMILY = Family(
    name="llama",
    presets=PRESETS,
    hf_model_types=("llama",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="model.",
    hf_ignored=(r"(^|\.)rotary_emb\.inv_freq$",),  # a buffer old saves carry
    notes={
        "llama-tiny": "tiny model for tests and recipes (GQA)",
        "TinyLlama/TinyLlama_v1.1": "Zhang et al. 2024",
        "meta-llama/Llama-2-7b-hf": "Touvron et al. 2023",
        "meta-llama/Llama-3.2-1B": "llama3 rope scaling, tied head",
    },
)
