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
from lmforge.families.bert import BACKBONE_RULES, bert_schema_from_hf, bert_schema_to_hf
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
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise UserError("RoBERTa as a decoder (is_decoder / add_cross_attention) is not supported")
    pad = _PAD if hf.get("pad_token_id") is None else hf["pad_token_id"]
    fields = bert_schema_from_hf(hf, "RoBERTa", vocab_size=50265)  # RobertaConfig's defaults otherwise BertConfig's
    fields["max_positions"] -= pad + 1  # the table's rows below padding_idx + 1 are never read
    return roberta_config(fields.pop("num_layers"), fields.pop("hidden_size"), fields.pop("num_heads"), **fields,
                          pad_token_id=pad, classifier_dropout=hf.get("classifier_dropout"))


def config_to_hf(config: ModelConfig, task: str) -> dict:
    return {**bert_schema_to_hf(config, task, ARCHITECTURES, "roberta"), "bos_token_id": 0, "eos_token_id": 2,
            "classifier_dropout": config.classifier_dropout}


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
