"""BART (Lewis et al., 2020, "BART: Denoising Sequence-to-Sequence Pre-training for Natural
Language Generation, Translation, and Comprehension").

Reference code: fairseq (models/bart/model.py, modules/transformer_layer.py) and transformers'
modeling_bart.py, whose weight names and config.json fields this file translates. BART is the
shared encoder-decoder with post-norm blocks, erf-gelu, no segment embeddings, learned positions
whose rows 0 and 1 are unused (ids start at 2; separate encoder and decoder tables), a
``layernorm_embedding`` on each stack, an optional sqrt(d_model) token scale, one token table
shared by both stacks and the LM head, and a ``final_logits_bias`` buffer added to the logits.

Fine-tuning heads (paper §3): sequence classification reads the decoder state at the final end
token (dense + tanh + out_proj, as RoBERTa's head), span QA reads every decoder state; both feed
the decoder the input shifted right after ``decoder_start_token_id`` (``</s>``).
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
)
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes


def bart_config(num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int,
                vocab_size: int = 50265, **kw) -> ModelConfig:
    return ModelConfig(**{
        "family": "bart", "architecture": "encoder_decoder", "vocab_size": vocab_size, "hidden_size": hidden_size,
        "num_layers": num_layers, "num_heads": num_heads, "intermediate_size": intermediate_size,
        "max_positions": 1024, "position_offset": 2, "type_vocab_size": 0, "activation": "gelu",
        "norm_placement": "post", "norm_eps": 1e-5, "embedding_norm": True, "output_bias": True, "pooler": False,
        "classifier_hidden": True, "pooling": "eos", "classifier_dropout": 0.0, "hidden_dropout": 0.1,
        "attention_dropout": 0.1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
        "decoder_start_token_id": 2, **kw})


PRESETS = {
    # A small model for tests and the tiny recipes (not a published checkpoint): BART's
    # switches and vocabulary at width 128.
    "bart-tiny": bart_config(2, 128, 4, 512, max_positions=512),
    "facebook/bart-base": bart_config(6, 768, 12, 3072),
    "facebook/bart-large": bart_config(12, 1024, 16, 4096),
}


def _same(hf: dict, encoder_field: str, decoder_field: str, default):
    """lmforge's stacks share one width per kind: differing encoder/decoder values are refused."""
    encoder, decoder = hf.get(encoder_field, default), hf.get(decoder_field, default)
    if encoder != decoder:
        raise UserError(f"BART config.json {encoder_field}={encoder} differs from {decoder_field}={decoder}; "
                        "lmforge needs them equal")
    return encoder


def config_from_hf(hf: dict) -> ModelConfig:
    for field in ("normalize_before", "add_final_layer_norm"):  # mBART's pre-norm switches
        if hf.get(field):
            raise UserError(f"BART config.json {field}=true (mBART) is not supported")
    return bart_config(
        hf.get("encoder_layers", 12), hf.get("d_model", 1024),
        _same(hf, "encoder_attention_heads", "decoder_attention_heads", 16),
        _same(hf, "encoder_ffn_dim", "decoder_ffn_dim", 4096),
        vocab_size=hf.get("vocab_size", 50265),
        num_decoder_layers=hf.get("decoder_layers", hf.get("encoder_layers", 12)),
        max_positions=hf.get("max_position_embeddings", 1024),
        activation=activation_from_hf(hf.get("activation_function", "gelu"), "activation_function"),
        embedding_scale=bool(hf.get("scale_embedding", False)),
        hidden_dropout=hf.get("dropout", 0.1),
        attention_dropout=hf.get("attention_dropout", 0.0),
        classifier_dropout=hf.get("classifier_dropout", 0.0),
        initializer_range=hf.get("init_std", 0.02),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        pad_token_id=hf.get("pad_token_id", 1),
        bos_token_id=hf.get("bos_token_id", 0),
        eos_token_id=hf.get("eos_token_id", 2),
        decoder_start_token_id=hf.get("decoder_start_token_id", 2),
        labels=labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    return {
        "architectures": [architecture_for(ARCHITECTURES, task, "BART")],
        "model_type": "bart",
        "vocab_size": config.vocab_size,
        "d_model": config.hidden_size,
        "encoder_layers": config.num_layers,
        "decoder_layers": config.num_decoder_layers,
        "encoder_attention_heads": config.num_heads,
        "decoder_attention_heads": config.num_heads,
        "encoder_ffn_dim": config.intermediate_size,
        "decoder_ffn_dim": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "activation_function": ACTIVATION_NAMES[config.activation],
        "scale_embedding": config.embedding_scale,
        "dropout": config.hidden_dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": 0.0,
        "classifier_dropout": config.classifier_dropout,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "init_std": config.initializer_range,
        "tie_word_embeddings": config.tie_word_embeddings,
        "is_encoder_decoder": True,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "decoder_start_token_id": config.decoder_start_token_id,
        "forced_eos_token_id": config.eos_token_id,
        **labels_to_hf(config),
    }


ARCHITECTURES = {
    "backbone": "BartModel",
    "seq2seq_lm": "BartForConditionalGeneration",
    "sequence_classification": "BartForSequenceClassification",
    "question_answering": "BartForQuestionAnswering",
}


def _attention(ours: str, theirs: str) -> list:
    return [Rule(f"{ours}.sublayer.qkv", tuple(f"{theirs}.{p}_proj" for p in "qkv"), split=qkv_sizes),
            (f"{ours}.sublayer.output", f"{theirs}.out_proj")]


def _stack(stack: str) -> list:
    layer, theirs = f"{stack}.layers.{{i}}.", f"{stack}.layers.{{i}}."
    rules = [(f"{stack}_embeddings.word", f"{stack}.embed_tokens"),  # tied to shared
             (f"{stack}_embeddings.position", f"{stack}.embed_positions"),
             (f"{stack}_embeddings.norm", f"{stack}.layernorm_embedding"),
             *_attention(layer + "attention", theirs + "self_attn"),
             (layer + "attention.norm", theirs + "self_attn_layer_norm"),
             (layer + "feed_forward.sublayer.up", theirs + "fc1"),
             (layer + "feed_forward.sublayer.down", theirs + "fc2"),
             (layer + "feed_forward.norm", theirs + "final_layer_norm")]
    if stack == "decoder":
        rules += [*_attention(layer + "cross_attention", theirs + "encoder_attn"),
                  (layer + "cross_attention.norm", theirs + "encoder_attn_layer_norm")]
    return rules


BACKBONE_RULES = [("shared", "shared"), *_stack("encoder"), *_stack("decoder")]
_HEADS = [
    ("lm_head.decoder", "lm_head"),  # tied to shared; files may carry it (checked equal)
    ("lm_head.final_logits_bias", "final_logits_bias"),  # a persistent buffer
    ("classifier.dense", "classification_head.dense"),
    ("classifier.output", "classification_head.out_proj"),
    ("span_head", "qa_outputs"),
]
WEIGHTS = WeightMap(prefixed(BACKBONE_RULES, "backbone.", "model.") + _HEADS)

FAMILY = Family(
    name="bart",
    presets=PRESETS,
    hf_model_types=("bart",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="model.",
    notes={
        "bart-tiny": "tiny model for tests and recipes",
        "facebook/bart-base": "Lewis et al. 2020",
        "facebook/bart-large": "Lewis et al. 2020",
    },
)
