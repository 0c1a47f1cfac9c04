"""ALBERT (Lan et al., 2020, "ALBERT: A Lite BERT for Self-supervised Learning of Language
Representations").

Reference code: google-research/albert (modeling.py) and transformers' modeling_albert.py,
whose weight names and config.json fields this file translates. ALBERT is BERT's encoder with
two parameter reductions, both general switches of the core: a factorised embedding (tables
and their LayerNorm of width E = ``embedding_size``, then ``embedding_hidden_mapping_in``
E -> H; the MLM head maps H -> E and its tied decoder reads E) and cross-layer sharing
(``num_hidden_groups`` groups of ``inner_group_num`` layers; layer i runs group
floor(i / (L / groups)); the released models apply one layer L times). Its pretraining head
pair is MLM + sentence-order prediction (SOP) on the pooler. v2 checkpoints use tanh-gelu
(``gelu_new``) and no dropout; v1 used erf-gelu and dropout 0.1.
"""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family
from lmforge.families.bert import bert_schema_from_hf, bert_schema_to_hf
from lmforge.families.weights import Rule, WeightMap, prefixed, qkv_sizes


def albert_config(num_layers: int, hidden_size: int, num_heads: int, vocab_size: int = 30000,
                  version: int = 2, **kw) -> ModelConfig:
    dropout = 0.0 if version == 2 else 0.1
    return ModelConfig(
        family="albert",
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=kw.pop("intermediate_size", 4 * hidden_size),
        embedding_size=kw.pop("embedding_size", 128),
        num_layer_groups=kw.pop("num_layer_groups", 1),
        activation=kw.pop("activation", "gelu_tanh" if version == 2 else "gelu"),
        hidden_dropout=kw.pop("hidden_dropout", dropout),
        attention_dropout=kw.pop("attention_dropout", dropout),
        classifier_dropout=kw.pop("classifier_dropout", 0.1),
        **kw,
    )


PRESETS = {
    # A very small model for tests and smoke runs (not a published checkpoint): 4 layers sharing one.
    "albert-tiny": albert_config(4, 64, 2, vocab_size=1024, intermediate_size=128, embedding_size=32,
                                 max_positions=128),
    **{f"albert-{size}-v{version}": albert_config(layers, hidden, heads, version=version)
       for version in (1, 2)
       for size, (layers, hidden, heads) in {"base": (12, 768, 12), "large": (24, 1024, 16),
                                             "xlarge": (24, 2048, 16), "xxlarge": (12, 4096, 64)}.items()},
}


def config_from_hf(hf: dict) -> ModelConfig:
    # Fallbacks are AlbertConfig's class defaults (albert-xxlarge's shape).
    fields = bert_schema_from_hf(hf, "ALBERT", vocab_size=30000, hidden_size=4096, num_attention_heads=64,
                                 intermediate_size=16384, hidden_act="gelu_new", hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)
    return ModelConfig(
        family="albert",
        **fields,
        embedding_size=hf.get("embedding_size", 128),
        num_layer_groups=hf.get("num_hidden_groups", 1),
        layers_per_group=hf.get("inner_group_num", 1),
        classifier_dropout=hf.get("classifier_dropout_prob", 0.1),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
    )


def config_to_hf(config: ModelConfig, task: str) -> dict:
    if not config.num_layer_groups:
        raise UserError("an ALBERT export needs num_layer_groups >= 1 (transformers names layers by group)")
    classifier_dropout = config.hidden_dropout if config.classifier_dropout is None else config.classifier_dropout
    return {**bert_schema_to_hf(config, task, ARCHITECTURES, "albert"), "embedding_size": config.embedding_width,
            "num_hidden_groups": config.num_layer_groups, "inner_group_num": config.layers_per_group,
            "classifier_dropout_prob": classifier_dropout}


ARCHITECTURES = {
    "backbone": "AlbertModel",
    "pretraining": "AlbertForPreTraining",
    "masked_lm": "AlbertForMaskedLM",
    "sequence_classification": "AlbertForSequenceClassification",
    "token_classification": "AlbertForTokenClassification",
    "question_answering": "AlbertForQuestionAnswering",
}

# lmforge backbone module -> transformers AlbertModel module ({g}: group, {j}: layer in it).
_OURS, _THEIRS = "encoder.groups.{g}.layers.{j}.", "encoder.albert_layer_groups.{g}.albert_layers.{j}."
_BACKBONE = [
    ("embeddings.word", "embeddings.word_embeddings"),
    ("embeddings.position", "embeddings.position_embeddings"),
    ("embeddings.token_type", "embeddings.token_type_embeddings"),
    ("embeddings.norm", "embeddings.LayerNorm"),
    ("embeddings.projection", "encoder.embedding_hidden_mapping_in"),
    Rule(_OURS + "attention.sublayer.qkv", tuple(_THEIRS + f"attention.{part}" for part in ("query", "key", "value")),
         split=qkv_sizes),
    (_OURS + "attention.sublayer.output", _THEIRS + "attention.dense"),
    (_OURS + "attention.norm", _THEIRS + "attention.LayerNorm"),
    (_OURS + "feed_forward.sublayer.up", _THEIRS + "ffn"),
    (_OURS + "feed_forward.sublayer.down", _THEIRS + "ffn_output"),
    (_OURS + "feed_forward.norm", _THEIRS + "full_layer_layer_norm"),
    ("pooler.dense", "pooler"),
]
_HEADS = [
    ("mlm_head.dense", "predictions.dense"),
    ("mlm_head.norm", "predictions.LayerNorm"),
    ("mlm_head.bias", "predictions.bias"),
    # Tied to the word embeddings; files may still carry it (and decoder.bias, tied to the bias).
    ("mlm_head.decoder", "predictions.decoder"),
    ("pair_head.classifier", "sop_classifier.classifier"),
    ("classifier.classifier", "classifier"),
    ("span_head", "qa_outputs"),
]
WEIGHTS = WeightMap(prefixed(_BACKBONE, "backbone.", "albert.") + _HEADS)

FAMILY = Family(
    name="albert",
    presets=PRESETS,
    hf_model_types=("albert",),
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    weights=WEIGHTS,
    hf_architectures=ARCHITECTURES,
    hf_backbone_prefix="albert.",
    hf_tied_aliases={"predictions.decoder.bias": "predictions.bias"},
    # Non-persistent buffers that old checkpoints may still carry.
    hf_ignored=(r"(^|\.)embeddings\.position_ids$", r"(^|\.)embeddings\.token_type_ids$"),
    hf_pair_head_names=("sop_classifier.classifier.weight",),
    notes={
        "albert-tiny": "tiny model for tests",
        **{f"albert-{size}-v{version}": f"Lan et al. 2020, v{version} ({'tanh' if version == 2 else 'erf'}-gelu)"
           for version in (1, 2) for size in ("base", "large", "xlarge", "xxlarge")},
    },
)
