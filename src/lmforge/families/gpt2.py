"""GPT-2 (Radford et al., 2019, "Language Models are Unsupervised Multitask Learners").

Reference code: openai/gpt-2 (src/model.py) and transformers' modeling_gpt2.py, whose weight
names and config.json fields this file translates. GPT-2 is the shared decoder with pre-norm
blocks, a final norm (``ln_f``), tanh-gelu, 1024 learned positions and an output tied to the
token embeddings without bias. Its linears are Conv1D ([in, out] weights, the transpose of
nn.Linear: the TRANSPOSE rows) and attention keeps query, key and value fused in ``c_attn``,
as lmforge's ``qkv`` does. Sequence classification (GPT2ForSequenceClassification) reads the
last real token through a bias-free ``score``. DistilGPT2: Sanh et al. 2019's distillation recipe.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.families import Family
from lmforge.families.hf_config import (
    ACTIVATION_NAMES,
    activation_from_hf,
    architecture_for,
    labels_from_hf,
    labels_to_hf,
    require,
)
from lmforge.families.weights import TRANSPOSE, Rule, WeightMap, prefixed

# What GPT-2's decoder shares with GPT (openai-gpt) beyond the weight names.
DECODER_DEFAULTS = {"architecture": "decoder", "type_vocab_size": 0, "embedding_norm": False, "pooler": False,
                    "pooling": "last", "sequence_classifier_bias": False, "classifier_dropout": 0.0,
                    "embedding_pad_row": False, "pad_token_id": None}


def gpt2_config(num_layers: int, hidden_size: int, num_heads: int, vocab_size: int = 50257, **kw) -> ModelConfig:
    return ModelConfig(**{
        **DECODER_DEFAULTS,
        "family": "gpt2", "vocab_size": vocab_size, "hidden_size": hidden_size, "num_layers": num_layers,
        "num_heads": num_heads, "intermediate_size": 4 * hidden_size, "max_positions": 1024,
        "activation": "gelu_tanh", "norm_placement": "pre", "norm_eps": 1e-5, "final_norm": True,
        "eos_token_id": 50256, "bos_token_id": 50256, **kw})


PRESETS = {
    # A small model for tests and the tiny causal-LM recipe (not a published checkpoint).
    # Its end-of-text id is the tokenizer's (lmforge's gpt2_byte_bpe puts <|endoftext|> at 0, not 50256).
    "gpt2-tiny": gpt2_config(2, 128, 4, vocab_size=1024, max_positions=256, eos_token_id=None, bos_token_id=None),
    "distilgpt2": gpt2_config(6, 768, 12),
    "gpt2": gpt2_config(12, 768, 12),
    "gpt2-medium": gpt2_config(24, 1024, 16),
    "gpt2-large": gpt2_config(36, 1280, 20),
    "gpt2-xl": gpt2_config(48, 1600, 25),
}


def config_from_hf(hf: dict) -> ModelConfig:
    require(hf, "scale_attn_weights", True, "GPT-2")
    require(hf, "scale_attn_by_inverse_layer_idx", False, "GPT-2")
    hidden = hf.get("n_embd", 768)
    return gpt2_config(
        hf.get("n_layer", 12), hidden, hf.get("n_head", 12), vocab_size=hf.get("vocab_size", 50257),
        intermediate_size=hf.get("n_inner") or 4 * hidden,
        max_positions=hf.get("n_positions", 1024),
        activation=activation_from_hf(hf.get("activation_function", "gelu_new"), "activation_function"),
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        hidden_dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        pad_token_id=hf.get("pad_token_id"),
        eos_token_id=hf.get("eos_token_id", 50256),
        bos_token_id=hf.get("bos_token_id", 50256),
        labels=labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    return {
        "architectures": [architecture_for(ARCHITECTURES, task, "GPT-2")],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.max_positions,
        "n_embd": config.hidden_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "n_inner": config.intermediate_size,
        "activation_function": ACTIVATION_NAMES[config.activation],
        "resid_pdrop": config.hidden_dropout,
        "embd_pdrop": config.hidden_dropout,
        "attn_pdrop": config.attention_dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": config.initializer_range,
        "scale_attn_weights": True,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        **labels_to_hf(config),
    }


ARCHITECTURES = {
    "backbone": "GPT2Model",
    "causal_lm": "GPT2LMHeadModel",
    "sequence_classification": "GPT2ForSequenceClassification",
}

_LAYER = "decoder.layers.{i}."
_BACKBONE = [
    ("embeddings.word", "wte"),
    ("embeddings.position", "wpe"),
    (_LAYER + "attention.norm", "h.{i}.ln_1"),
    Rule(_LAYER + "attention.sublayer.qkv", "h.{i}.attn.c_attn", TRANSPOSE),
    Rule(_LAYER + "attention.sublayer.output", "h.{i}.attn.c_proj", TRANSPOSE),
    (_LAYER + "feed_forward.norm", "h.{i}.ln_2"),
    Rule(_LAYER + "feed_forward.sublayer.up", "h.{i}.mlp.c_fc", TRANSPOSE),
    Rule(_LAYER + "feed_forward.sublayer.down", "h.{i}.mlp.c_proj", TRANSPOSE),
    ("decoder.final_norm", "ln_f"),
]
_HEADS = [
    ("lm_head.decoder", "lm_head"),  # tied to wte; files may still carry it (checked equal)
    ("classifier.classifier", "score"),
]
WEIGHTS = WeightMap(prefixed(_BACKBONE, "backbone.", "transformer.") + _HEADS)

FAMILY = Family(
    name="gpt2",
    presets=PRESETS,
    hf_model_types=("gpt2",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="transformer.",
    # The causal-mask buffers of older saves (attn.bias, attn.masked_bias); c_attn.bias is a weight.
    hf_ignored=(r"(^|\.)h\.\d+\.attn\.(masked_)?bias$",),
    notes={
        "gpt2-tiny": "tiny model for tests and recipes",
        "distilgpt2": "Sanh et al. 2019",
        "gpt2": "Radford et al. 2019",
        "gpt2-medium": "Radford et al. 2019",
        "gpt2-large": "Radford et al. 2019",
        "gpt2-xl": "Radford et al. 2019",
    },
)
