"""GPT, the "OpenAI Transformer" (Radford et al., 2018, "Improving Language Understanding by
Generative Pre-Training"), as transformers names it: ``openai-gpt``.

Reference code: openai/finetune-transformer-lm (train.py) and transformers' modeling_openai.py,
whose weight names and config.json fields this file translates. A 12-layer decoder with
post-norm blocks (``ln_1`` after the attention residual, ``ln_2`` after the MLP's), no final
norm, tanh-gelu (its ``afn="gelu"``), 512 learned positions, a 40,478-token BPE vocabulary and
an output tied to the token embeddings without bias. Conv1D linears and the fused ``c_attn``
as GPT-2. Sequence classification reads the last real token through a bias-free ``score``.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family
from lmforge.families.gpt2 import DECODER_DEFAULTS
from lmforge.families.hf_config import architecture_for, labels_from_hf, labels_to_hf
from lmforge.families.weights import TRANSPOSE, Rule, WeightMap, prefixed

# transformers' ACT_FNS for openai-gpt (its "gelu" is the tanh form; it has no erf gelu).
_AFN = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}
_AFN_NAMES = {"gelu_tanh": "gelu", "relu": "relu", "silu": "silu"}


def gpt_config(num_layers: int = 12, hidden_size: int = 768, num_heads: int = 12, vocab_size: int = 40478,
               **kw) -> ModelConfig:
    return ModelConfig(**{
        **DECODER_DEFAULTS,
        "family": "openai-gpt", "vocab_size": vocab_size, "hidden_size": hidden_size, "num_layers": num_layers,
        "num_heads": num_heads, "intermediate_size": 4 * hidden_size, "max_positions": 512,
        "activation": "gelu_tanh", "norm_placement": "post", "norm_eps": 1e-5, "final_norm": False, **kw})


PRESETS = {
    "openai-gpt": gpt_config(),
}


def config_from_hf(hf: dict) -> ModelConfig:
    afn = hf.get("afn", "gelu")
    if afn not in _AFN:
        raise UserError(f"openai-gpt config.json afn {afn!r} is not supported (one of {', '.join(_AFN)})")
    return gpt_config(
        hf.get("n_layer", 12), hf.get("n_embd", 768), hf.get("n_head", 12), vocab_size=hf.get("vocab_size", 40478),
        max_positions=hf.get("n_positions", 512),
        activation=_AFN[afn],
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        hidden_dropout=hf.get("resid_pdrop", 0.1),
        attention_dropout=hf.get("attn_pdrop", 0.1),
        initializer_range=hf.get("initializer_range", 0.02),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        pad_token_id=hf.get("pad_token_id"),
        labels=labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    if config.activation not in _AFN_NAMES:
        raise UserError(f"openai-gpt has no {config.activation} activation in transformers; "
                        f"use one of {', '.join(_AFN_NAMES)} or save in lmforge's format")
    return {
        "architectures": [architecture_for(ARCHITECTURES, task, "openai-gpt")],
        "model_type": "openai-gpt",
        "vocab_size": config.vocab_size,
        "n_positions": config.max_positions,
        "n_embd": config.hidden_size,
        "n_layer": config.num_layers,
        "n_head": config.num_heads,
        "afn": _AFN_NAMES[config.activation],
        "resid_pdrop": config.hidden_dropout,
        "embd_pdrop": config.hidden_dropout,
        "attn_pdrop": config.attention_dropout,
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": config.initializer_range,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        **labels_to_hf(config),
    }


ARCHITECTURES = {
    "backbone": "OpenAIGPTModel",
    "causal_lm": "OpenAIGPTLMHeadModel",
    "sequence_classification": "OpenAIGPTForSequenceClassification",
}

_LAYER = "decoder.layers.{i}."
_BACKBONE = [
    ("embeddings.word", "tokens_embed"),
    ("embeddings.position", "positions_embed"),
    Rule(_LAYER + "attention.sublayer.qkv", "h.{i}.attn.c_attn", TRANSPOSE),
    Rule(_LAYER + "attention.sublayer.output", "h.{i}.attn.c_proj", TRANSPOSE),
    (_LAYER + "attention.norm", "h.{i}.ln_1"),  # post-norm: after the attention residual
    Rule(_LAYER + "feed_forward.sublayer.up", "h.{i}.mlp.c_fc", TRANSPOSE),
    Rule(_LAYER + "feed_forward.sublayer.down", "h.{i}.mlp.c_proj", TRANSPOSE),
    (_LAYER + "feed_forward.norm", "h.{i}.ln_2"),
]
_HEADS = [
    ("lm_head.decoder", "lm_head"),  # tied to tokens_embed
    ("classifier.classifier", "score"),
]
WEIGHTS = WeightMap(prefixed(_BACKBONE, "backbone.", "transformer.") + _HEADS)

FAMILY = Family(
    name="openai-gpt",
    presets=PRESETS,
    hf_model_types=("openai-gpt",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="transformer.",
    # Buffers older saves carry: the causal mask and the position ids.
    hf_ignored=(r"(^|\.)h\.\d+\.attn\.bias$", r"(^|\.)position_ids$"),
    notes={"openai-gpt": "Radford et al. 2018"},
)
