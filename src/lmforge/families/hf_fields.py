"""Hugging Face ``config.json`` fields that several encoder families spell the same way
(transformers' BertConfig, RobertaConfig and AlbertConfig share them): activation names and the
label tables of fine-tuned heads."""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError

# HF "hidden_act" strings and ours; ACTIVATION_NAMES gives what export writes.
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(name: str) -> str:
    if name not in HF_ACTIVATIONS:
        raise UserError(f"config.json hidden_act {name!r} is not supported")
    return HF_ACTIVATIONS[name]


def labels_from_hf(hf: dict) -> tuple[str, ...]:
    id2label = hf.get("id2label") or {}
    return tuple(id2label[k] for k in sorted(id2label, key=int)) if id2label else ()


def add_labels(hf: dict, config: ModelConfig) -> dict:
    """``hf`` with id2label/label2id for a config that has labels."""
    if config.labels:
        hf["id2label"] = {str(i): label for i, label in enumerate(config.labels)}
        hf["label2id"] = {label: i for i, label in enumerate(config.labels)}
    return hf


def require_absolute_positions(hf: dict, family: str) -> None:
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"only absolute position embeddings are supported for {family}")
