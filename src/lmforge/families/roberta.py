"""RoBERTa (Liu et al., 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach").

Reference code: fairseq (fairseq/models/roberta) and transformers' modeling_roberta.py, whose
weight names and config.json fields this file translates. RoBERTa is BERT's encoder with a
50K byte-level BPE vocabulary, one segment type, LayerNorm eps 1e-5 and positions numbered
from the padding index: fairseq's ``make_positions`` gives real tokens rows 2, 3, ... of a
514-row table (``position_offset`` 2; rows 0 and 1 are never read). Its LM head is dense, exact
gelu whatever ``hidden_act`` says, LayerNorm, tied decoder plus bias; its classification head
is dense + tanh + out_proj on ``<s>`` (no pooler); it pretrains with masked LM alone (no NSP).
DistilRoBERTa (Sanh et al., 2019) is the same shape with 6 layers.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family
from lmforge.families.bert import BACKBONE_RULES
from lmforge.families.hf_config import ACTIVATION_NAMES, activation_from_hf, labels_from_hf, labels_to_hf, require
from lmforge.families.weights import WeightMap, prefixed

_PAD = 1  # fairseq's dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3


def roberta_config(num_layers: int, hidden_size: int, num_heads: int, vocab_size: int = 50265, **kw) -> ModelConfig:
    pad = kw.pop("pad_token_id", _PAD)
    return ModelConfig(
        family="roberta",
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=kw.pop("intermediate_size", 4 * hidden_size),
        max_positions=kw.pop("max_positions", 512),
        position_offset=pad + 1,  # positions count from padding_idx + 1
        pad_token_id=pad,
        type_vocab_size=kw.pop("type_vocab_size", 1),
        norm_eps=kw.pop("norm_eps", 1e-5),
        mlm_head_activation="gelu",
        classifier_hidden=True,
        pretraining_pair_head=False,
        **kw,
    )


PRESETS = {
    # A very small model for tests and smoke runs (not a published checkpoint).
    "roberta-tiny": roberta_config(2, 64, 2, vocab_size=1024, intermediate_size=128, max_positions=128),
    "distilroberta-base": roberta_config(6, 768, 12),
    "roberta-base": roberta_config(12, 768, 12),
    "roberta-large": roberta_config(24, 1024, 16),
}


def config_from_hf(hf: dict) -> ModelConfig:
    require(hf, "position_embedding_type", "absolute", "RoBERTa")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise UserError("RoBERTa as a decoder (is_decoder / add_cross_attention) is not supported")
    pad = _PAD if hf.get("pad_token_id") is None else hf["pad_token_id"]
    # Fallbacks are RobertaConfig's class defaults (a missing field means the default there).
    return roberta_config(
        hf.get("num_hidden_layers", 12), hf.get("hidden_size", 768), hf.get("num_attention_heads", 12),
        vocab_size=hf.get("vocab_size", 50265),
        intermediate_size=hf.get("intermediate_size", 3072),
        max_positions=hf.get("max_position_embeddings", 512) - (pad + 1),
        pad_token_id=pad,
        type_vocab_size=hf.get("type_vocab_size", 2),
        activation=activation_from_hf(hf.get("hidden_act", "gelu")),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        classifier_dropout=hf.get("classifier_dropout"),
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        initializer_range=hf.get("initializer_range", 0.02),
        labels=labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    hf = {
        "architectures": [ARCHITECTURES[task]],
        "model_type": "roberta",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": ACTIVATION_NAMES[config.activation],
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_positions + config.position_offset,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.norm_eps,
        "pad_token_id": config.pad_token_id,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "classifier_dropout": config.classifier_dropout,
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    return {**hf, **labels_to_hf(config)}


# Import reads the first task of an architecture: a RobertaForMaskedLM file is "masked_lm";
# lmforge's "pretraining" RoBERTa (no pair head) exports as the same class.
ARCHITECTURES = {
    "backbone": "RobertaModel",
    "masked_lm": "RobertaForMaskedLM",
    "pretraining": "RobertaForMaskedLM",
    "sequence_classification": "RobertaForSequenceClassification",
    "token_classification": "RobertaForTokenClassification",
    "question_answering": "RobertaForQuestionAnswering",
}

_HEADS = [
    ("mlm_head.dense", "lm_head.dense"),
    ("mlm_head.norm", "lm_head.layer_norm"),
    ("mlm_head.bias", "lm_head.bias"),
    # Tied to the word embeddings; files may still carry it (and decoder.bias, tied to the bias).
    ("mlm_head.decoder", "lm_head.decoder"),
    ("classifier.dense", "classifier.dense"),  # sequence classification
    ("classifier.output", "classifier.out_proj"),
    ("classifier.classifier", "classifier"),  # token classification
    ("span_head", "qa_outputs"),
]
WEIGHTS = WeightMap(prefixed(BACKBONE_RULES, "backbone.", "roberta.") + _HEADS)

FAMILY = Family(
    name="roberta",
    presets=PRESETS,
    hf_model_types=("roberta",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="roberta.",
    hf_tied_aliases={"lm_head.decoder.bias": "lm_head.bias"},
    # Non-persistent buffers that old checkpoints may still carry.
    hf_ignored=(r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$"),
    notes={
        "roberta-tiny": "tiny model for tests",
        "distilroberta-base": "DistilRoBERTa, Sanh et al. 2019",
        "roberta-base": "Liu et al. 2019",
        "roberta-large": "Liu et al. 2019",
    },
)
