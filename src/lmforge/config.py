"""One typed, frozen configuration for every transformer in lmforge.

Behaviour comes from these declared fields, never from family names: the shared core in
``lmforge.models`` reads only this dataclass. Each family file (``lmforge.families.*``) fills
it from its presets or from a Hugging Face ``config.json``. Field names follow one vocabulary
across families (``num_layers``, ``num_heads``, ...), as litgpt's single Config does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from lmforge.errors import UserError

Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]
NormPlacement = Literal["post", "pre"]
NormType = Literal["layernorm", "rmsnorm"]


@dataclass(frozen=True)
class ModelConfig:
    family: str  # which family file translates this config to and from Hugging Face
    vocab_size: int  # every family: rows of the token embedding
    hidden_size: int  # every family: model width H
    num_layers: int  # every family: transformer blocks per stack
    num_heads: int  # every family: attention heads (head dim = H / heads)
    intermediate_size: int  # every family: feed-forward width I (BERT 4H)
    max_positions: int = 512  # BERT/GPT learned absolute positions (table rows)
    type_vocab_size: int = 2  # BERT segment embeddings; 0 means none (GPT, BART)
    activation: Activation = "gelu"  # BERT erf-gelu; GPT-2 tanh-gelu; T5 v1.0 relu; LLaMA silu
    norm_placement: NormPlacement = "post"  # BERT/BART post-norm; GPT-2/T5/LLaMA pre-norm
    norm_type: NormType = "layernorm"  # BERT LayerNorm; T5/LLaMA RMSNorm
    norm_eps: float = 1e-12  # BERT 1e-12; RoBERTa/BART/GPT 1e-5; T5 1e-6
    embedding_norm: bool = True  # BERT/RoBERTa/BART normalise the summed embeddings
    final_norm: bool = False  # pre-norm stacks (GPT-2 ln_f, T5, LLaMA) end with a norm
    bias: bool = True  # BERT/GPT linears carry biases; T5/LLaMA have none
    causal: bool = False  # GPT/LLaMA decoders: causally masked self-attention
    cross_attention: bool = False  # BART/T5 decoder blocks attend to the encoder output
    tie_word_embeddings: bool = True  # BERT MLM decoder shares the input embedding matrix
    pooler: bool = True  # BERT: dense + tanh over the first token ([CLS])
    hidden_dropout: float = 0.1  # BERT hidden_dropout_prob
    attention_dropout: float = 0.1  # BERT attention_probs_dropout_prob
    classifier_dropout: float | None = None  # BERT classifier_dropout (None: hidden_dropout)
    pad_token_id: int = 0  # BERT [PAD]: its embedding row gets no gradient
    initializer_range: float = 0.02  # BERT truncated-normal-like init std
    labels: tuple[str, ...] = field(default=())  # fine-tuned heads: label names by id

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise UserError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        for name, kind in get_type_hints(ModelConfig).items():
            allowed = get_args(kind)
            if getattr(kind, "__origin__", None) is Literal and getattr(self, name) not in allowed:
                raise UserError(f"config field {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown model config field(s): {', '.join(unknown)}")
        data = dict(data)
        data["labels"] = tuple(data.get("labels", ()))
        return cls(**data)
