"""BERT (Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers").

Reference code: google-research/bert (modeling.py) and transformers' modeling_bert.py, whose
weight names and config.json fields this file translates. BERT is the shared encoder with
post-norm, erf-gelu, learned positions, two segment types, a [CLS] pooler and an MLM head
tied to the input embeddings. Compact presets follow "Well-Read Students Learn Better"
(Turc et al., 2019), which released BERT-Tiny/Mini/Small/Medium.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.families import Family
from lmforge.families.hf_config import ACTIVATION_NAMES, activation_from_hf, labels_from_hf, labels_to_hf, require
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes


def bert_config(num_layers: int, hidden_size: int, num_heads: int, vocab_size: int = 30522, **kw) -> ModelConfig:
    return ModelConfig(
        family="bert",
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=kw.pop("intermediate_size", 4 * hidden_size),
        **kw,
    )


PRESETS = {
    # A very small model for tests and smoke runs (not a published checkpoint).
    "bert-test": bert_config(2, 64, 2, vocab_size=1024, intermediate_size=128, max_positions=128),
    "bert-tiny": bert_config(2, 128, 2),  # google/bert_uncased_L-2_H-128_A-2
    "bert-mini": bert_config(4, 256, 4),  # google/bert_uncased_L-4_H-256_A-4
    "bert-small": bert_config(4, 512, 8),  # google/bert_uncased_L-4_H-512_A-8
    "bert-medium": bert_config(8, 512, 8),  # google/bert_uncased_L-8_H-512_A-8
    "bert-base-uncased": bert_config(12, 768, 12),
    "bert-base-cased": bert_config(12, 768, 12, vocab_size=28996),
    "bert-large-uncased": bert_config(24, 1024, 16),
}


def config_from_hf(hf: dict) -> ModelConfig:
    require(hf, "position_embedding_type", "absolute", "BERT")
    return ModelConfig(
        family="bert",
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        activation=activation_from_hf(hf.get("hidden_act", "gelu")),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        hidden_dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1),
        classifier_dropout=hf.get("classifier_dropout"),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        initializer_range=hf.get("initializer_range", 0.02),
        labels=labels_from_hf(hf),
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    hf = {
        "architectures": [ARCHITECTURES[task]],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "hidden_act": ACTIVATION_NAMES[config.activation],
        "hidden_dropout_prob": config.hidden_dropout,
        "attention_probs_dropout_prob": config.attention_dropout,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range,
        "layer_norm_eps": config.norm_eps,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
        "classifier_dropout": config.classifier_dropout,
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    return {**hf, **labels_to_hf(config)}


ARCHITECTURES = {
    "backbone": "BertModel",
    "pretraining": "BertForPreTraining",
    "masked_lm": "BertForMaskedLM",
    "sequence_classification": "BertForSequenceClassification",
    "multiple_choice": "BertForMultipleChoice",
    "token_classification": "BertForTokenClassification",
    "question_answering": "BertForQuestionAnswering",
}

# lmforge backbone module -> transformers BertModel module ({i}: layer number); RoBERTa's too.
BACKBONE_RULES = [
    ("embeddings.word", "embeddings.word_embeddings"),
    ("embeddings.position", "embeddings.position_embeddings"),
    ("embeddings.token_type", "embeddings.token_type_embeddings"),
    ("embeddings.norm", "embeddings.LayerNorm"),
    Rule("encoder.layers.{i}.attention.sublayer.qkv",
         tuple(f"encoder.layer.{{i}}.attention.self.{part}" for part in ("query", "key", "value")), split=qkv_sizes),
    ("encoder.layers.{i}.attention.sublayer.output", "encoder.layer.{i}.attention.output.dense"),
    ("encoder.layers.{i}.attention.norm", "encoder.layer.{i}.attention.output.LayerNorm"),
    ("encoder.layers.{i}.feed_forward.sublayer.up", "encoder.layer.{i}.intermediate.dense"),
    ("encoder.layers.{i}.feed_forward.sublayer.down", "encoder.layer.{i}.output.dense"),
    ("encoder.layers.{i}.feed_forward.norm", "encoder.layer.{i}.output.LayerNorm"),
    ("pooler.dense", "pooler.dense"),
]
_HEADS = [
    ("mlm_head.dense", "cls.predictions.transform.dense"),
    ("mlm_head.norm", "cls.predictions.transform.LayerNorm"),
    ("mlm_head.bias", "cls.predictions.bias"),
    # Tied to the word embeddings; files may still carry it (and decoder.bias, tied to the bias).
    ("mlm_head.decoder", "cls.predictions.decoder"),
    ("pair_head.classifier", "cls.seq_relationship"),
    ("classifier.classifier", "classifier"),
    ("span_head", "qa_outputs"),
]
WEIGHTS = WeightMap(prefixed(BACKBONE_RULES, "backbone.", "bert.") + _HEADS)

FAMILY = Family(
    name="bert",
    presets=PRESETS,
    hf_model_types=("bert",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="bert.",
    hf_tied_aliases={"cls.predictions.decoder.bias": "cls.predictions.bias"},
    # Non-persistent buffers that old checkpoints may still carry.
    hf_ignored=(r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$"),
    hf_pair_head_names=("cls.seq_relationship.weight",),
    notes={
        "bert-test": "tiny model for tests",
        "bert-tiny": "BERT-Tiny, Turc et al. 2019",
        "bert-mini": "BERT-Mini, Turc et al. 2019",
        "bert-small": "BERT-Small, Turc et al. 2019",
        "bert-medium": "BERT-Medium, Turc et al. 2019",
        "bert-base-uncased": "Devlin et al. 2019",
        "bert-base-cased": "Devlin et al. 2019",
        "bert-large-uncased": "Devlin et al. 2019",
    },
)
