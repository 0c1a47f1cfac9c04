"""config.json pieces every family reads and writes the same way: label names (``id2label`` /
``label2id``) and the activation names transformers' ACT2FN uses."""

from __future__ import annotations

from lmforge.config import ModelConfig
from lmforge.errors import UserError

# HF activation strings and ours; the first of each kind is what export writes.
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
               "relu": "relu", "silu": "silu", "swish": "silu"}
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(name: str, field: str = "hidden_act") -> str:
    if name not in ACTIVATIONS:
        raise UserError(f"config.json {field} {name!r} is not supported")
    return ACTIVATIONS[name]


def labels_from_hf(hf: dict) -> tuple[str, ...]:
    id2label = hf.get("id2label") or {}
    return tuple(id2label[k] for k in sorted(id2label, key=int))


def labels_to_hf(config: ModelConfig) -> dict:
    if not config.labels:
        return {}
    return {"id2label": {str(i): label for i, label in enumerate(config.labels)},
            "label2id": {label: i for i, label in enumerate(config.labels)}}


def require(hf: dict, field: str, allowed, family: str) -> None:
    """A config.json switch lmforge does not implement is an error, not a silent difference."""
    if field in hf and hf[field] is not None and hf[field] != allowed:
        raise UserError(f"{family} config.json {field}={hf[field]!r} is not supported (only {allowed!r})")


def architecture_for(architectures: dict[str, str], task: str, family: str) -> str:
    """The transformers class of a task model; a task transformers has no class for is an error."""
    if task not in architectures:
        raise UserError(f"a {family} {task} model has no Hugging Face architecture; "
                        f"save it in lmforge's format instead (supported: {', '.join(sorted(architectures))})")
    return architectures[task]
