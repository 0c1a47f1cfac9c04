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
Architecture = Literal["encoder", "decoder", "encoder_decoder"]
FeedForwardKind = Literal["plain", "gated"]
NormPlacement = Literal["post", "pre"]
NormType = Literal["layernorm", "rmsnorm"]
Pooling = Literal["first", "last", "eos"]
PositionScheme = Literal["learned", "rotary", "relative_buckets"]
RopeScaling = Literal["none", "llama3"]


@dataclass(frozen=True)
class ModelConfig:
    family: str  # which family file translates this config to and from Hugging Face
    vocab_size: int  # every family: rows of the token embedding
    hidden_size: int  # every family: model width H
    num_layers: int  # every family: transformer blocks per stack (the encoder's, for two stacks)
    num_heads: int  # every family: query heads
    intermediate_size: int  # every family: feed-forward width I (BERT 4H)
    architecture: Architecture = "encoder"  # BERT encoder; GPT/LLaMA decoder; BART/T5 encoder_decoder
    num_decoder_layers: int = 0  # BART/T5 decoder blocks; 0: as many as num_layers
    num_kv_heads: int = 0  # LLaMA grouped-query attention: key/value heads; 0: num_heads
    head_dim: int = 0  # T5 d_kv (heads * head_dim may differ from H); 0: hidden_size // num_heads
    positions: PositionScheme = "learned"  # BERT/GPT/BART learned; LLaMA rotary; T5 relative buckets
    max_positions: int = 512  # learned positions: real positions per sequence (table rows = this + offset)
    position_offset: int = 0  # RoBERTa/BART: learned rows 0..1 unused, real tokens start at row 2
    rope_theta: float = 10000.0  # LLaMA rotary base (rope_theta)
    rope_scaling: RopeScaling = "none"  # Llama 3.1/3.2 "llama3": low frequencies stretched for long context
    rope_scaling_factor: float = 1.0  # llama3 rope "factor" (Llama-3.2: 32): how far low frequencies stretch
    rope_low_freq_factor: float = 1.0  # llama3 "low_freq_factor": wavelengths over original/this are scaled
    rope_high_freq_factor: float = 4.0  # llama3 "high_freq_factor": wavelengths under original/this are kept
    rope_original_max_positions: int = 8192  # llama3 "original_max_position_embeddings" (pretraining context)
    relative_buckets: int = 32  # T5 relative_attention_num_buckets
    relative_max_distance: int = 128  # T5 relative_attention_max_distance
    type_vocab_size: int = 2  # BERT segment embeddings; 0 means none (GPT, BART)
    activation: Activation = "gelu"  # BERT erf-gelu; GPT-2 tanh-gelu; T5 v1.0 relu; LLaMA silu (gated)
    feed_forward: FeedForwardKind = "plain"  # BERT/GPT-2 up-act-down; LLaMA SwiGLU, T5 v1.1 gated-gelu
    norm_placement: NormPlacement = "post"  # BERT/BART post-norm; GPT-2/T5/LLaMA pre-norm
    norm_type: NormType = "layernorm"  # BERT LayerNorm; T5/LLaMA RMSNorm
    norm_eps: float = 1e-12  # BERT 1e-12; RoBERTa/BART/GPT 1e-5; T5 1e-6
    embedding_norm: bool = True  # BERT/RoBERTa/BART normalise the summed embeddings
    embedding_scale: bool = False  # BART scale_embedding: token embeddings times sqrt(H)
    # Factorised embedding (ALBERT E): token, position and segment tables and their norm are
    # this wide, then a linear maps them to H; the MLM head's transform maps back to this width
    # and its output projection (tied to the token table) reads it. 0: no factorisation.
    embedding_size: int = 0
    # Cross-layer parameter sharing (ALBERT num_hidden_groups): the stack holds this many
    # groups of distinct layers and its i-th of num_layers steps runs group
    # floor(i / (num_layers / groups)). 0: no sharing, every layer has its own parameters.
    num_layer_groups: int = 0
    layers_per_group: int = 1  # ALBERT inner_group_num: distinct layers each group runs in order
    final_norm: bool = False  # pre-norm stacks (GPT-2 ln_f, T5, LLaMA) end with a norm
    bias: bool = True  # BERT/GPT linears carry biases; T5/LLaMA have none
    scale_attention_scores: bool = True  # scores / sqrt(head_dim); T5 leaves them unscaled
    tie_word_embeddings: bool = True  # BERT/GPT-2 output projection shares the input embedding
    output_bias: bool = False  # BART final_logits_bias: a (1, V) buffer added to LM logits
    # T5 v1.0: the LM head reads the decoder output times hidden_size ** -0.5 (its tied output
    # projection would otherwise see embedding-sized logits); v1.1 and everything else: off.
    scale_output_by_inverse_sqrt_width: bool = False
    pooler: bool = True  # BERT: dense + tanh over the pooled token ([CLS])
    pretraining_pair_head: bool = True  # the pretraining model's NSP (BERT) / SOP (ALBERT) head; RoBERTa: none
    mlm_head_activation: Activation | None = None  # MLM head transform; None: activation (RoBERTa: erf-gelu always)
    classifier_hidden: bool = False  # RoBERTa: sequence classifier = dense + tanh + out_proj on the pooled token, no pooler
    pooling: Pooling = "first"  # sequence heads read BERT [CLS], GPT-2 last real token, BART final EOS
    hidden_dropout: float = 0.1  # BERT hidden_dropout_prob
    attention_dropout: float = 0.1  # BERT attention_probs_dropout_prob
    classifier_dropout: float | None = None  # BERT classifier_dropout (None: hidden_dropout)
    sequence_classifier_bias: bool = True  # BERT's sequence classifier has a bias; GPT/GPT-2/LLaMA "score" none
    pad_token_id: int | None = 0  # BERT [PAD]: its embedding row gets no gradient; GPT-2/LLaMA: often none
    embedding_pad_row: bool = True  # BERT/BART padding_idx: pad row zeroed, no gradient; GPT/GPT-2 have none
    eos_token_id: int | None = None  # BART </s>: the token "eos" pooling reads; GPT-2/LLaMA end of text
    bos_token_id: int | None = None  # GPT-2/LLaMA config.json bos_token_id (LLaMA <s>, Llama 3 128000)
    decoder_start_token_id: int | None = None  # encoder-decoders: the decoder's first input (BART </s> 2, T5 pad 0)
    initializer_range: float = 0.02  # BERT truncated-normal-like init std; with "fan_in", T5's initializer factor
    # "normal": N(0, initializer_range) for every weight (BERT, GPT, BART); "fan_in": Mesh TensorFlow's,
    # as T5 uses it (lmforge.models.build.init_fan_in)
    initializer: Literal["normal", "fan_in"] = "normal"
    labels: tuple[str, ...] = field(default=())  # fine-tuned heads: label names by id

    def __post_init__(self) -> None:
        if not self.head_dim and self.hidden_size % self.num_heads:
            raise UserError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.num_heads % (self.num_kv_heads or self.num_heads):
            raise UserError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}")
        if self.mlm_head_activation is not None and self.mlm_head_activation not in get_args(Activation):
            raise UserError(f"config field mlm_head_activation must be one of {get_args(Activation)} or None, "
                            f"got {self.mlm_head_activation!r}")
        if (self.num_layer_groups < 0 or self.num_layer_groups > self.num_layers or self.layers_per_group < 1
                or (not self.num_layer_groups and self.layers_per_group != 1)):
            raise UserError(f"layer sharing needs 0 <= num_layer_groups <= num_layers ({self.num_layers}) and "
                            f"layers_per_group >= 1 (1 without sharing), got {self.num_layer_groups} and {self.layers_per_group}")
        # Resolve the "same as" defaults once, so every reader sees plain numbers.
        object.__setattr__(self, "head_dim", self.head_dim or self.hidden_size // self.num_heads)
        object.__setattr__(self, "num_kv_heads", self.num_kv_heads or self.num_heads)
        object.__setattr__(self, "num_decoder_layers", self.num_decoder_layers or self.num_layers)
        for name, kind in get_type_hints(ModelConfig).items():
            allowed = get_args(kind)
            if getattr(kind, "__origin__", None) is Literal and getattr(self, name) not in allowed:
                raise UserError(f"config field {name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def embedding_width(self) -> int:
        """Width of the token/position/segment tables: E when factorised, else H."""
        return self.embedding_size or self.hidden_size

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def replace(self, **changes: Any) -> "ModelConfig":
        # A derived default ("same as num_heads", ...) follows its source when that changes.
        derived = {"head_dim": self.hidden_size // self.num_heads, "num_kv_heads": self.num_heads,
                   "num_decoder_layers": self.num_layers}
        for name, default in derived.items():
            if name not in changes and getattr(self, name) == default:
                changes[name] = 0
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
