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


# transformers' BertConfig class defaults; RobertaConfig and AlbertConfig read the same fields
# with defaults of their own.
BERT_SCHEMA_DEFAULTS = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                        "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
                        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512, "type_vocab_size": 2,
                        "initializer_range": 0.02, "layer_norm_eps": 1e-12}


def bert_schema_from_hf(hf: dict, family: str, **defaults) -> dict:
    """ModelConfig fields from the config.json fields BertConfig, RobertaConfig and AlbertConfig
    share (a missing field takes the reading class's default)."""
    require(hf, "position_embedding_type", "absolute", family)
    fields = {**BERT_SCHEMA_DEFAULTS, **defaults, **{k: v for k, v in hf.items() if v is not None}}
    return dict(
        vocab_size=fields["vocab_size"],
        hidden_size=fields["hidden_size"],
        num_layers=fields["num_hidden_layers"],
        num_heads=fields["num_attention_heads"],
        intermediate_size=fields["intermediate_size"],
        max_positions=fields["max_position_embeddings"],
        type_vocab_size=fields["type_vocab_size"],
        activation=activation_from_hf(fields["hidden_act"]),
        norm_eps=fields["layer_norm_eps"],
        hidden_dropout=fields["hidden_dropout_prob"],
        attention_dropout=fields["attention_probs_dropout_prob"],
        tie_word_embeddings=hf.get("tie_word_embeddings", True),
        initializer_range=fields["initializer_range"],
        labels=labels_from_hf(hf),
    )


def bert_schema_to_hf(config: ModelConfig, task: str, architectures: dict[str, str], model_type: str) -> dict:
    """The shared fields of ``bert_schema_from_hf``, written back (labels included)."""
    return {
        "architectures": [architectures[task]],
        "model_type": model_type,
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
        "position_embedding_type": "absolute",
        "tie_word_embeddings": config.tie_word_embeddings,
        **labels_to_hf(config),
    }


def config_from_hf(hf: dict) -> ModelConfig:
    return ModelConfig(family="bert", **bert_schema_from_hf(hf, "BERT"), classifier_dropout=hf.get("classifier_dropout"),
                       pad_token_id=hf.get("pad_token_id", 0) or 0)


def config_to_hf(config: ModelConfig, task: str) -> dict:
    return {**bert_schema_to_hf(config, task, ARCHITECTURES, "bert"), "classifier_dropout": config.classifier_dropout}


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
