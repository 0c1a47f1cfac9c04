"""Output heads. Backbones return hidden states; heads turn them into logits.

* ``Pooler`` and ``PairHead``: BERT's pooler (dense + tanh over the pooled token) and
  next-sentence head. Which token is pooled is ``ModelConfig.pooling`` (the layout picks it).
* ``MaskedLMHead``: BERT's transform (dense, activation, LayerNorm) then the vocabulary
  projection (tied to the input embeddings unless ``tie_word_embeddings`` is off) plus an
  output bias (transformers' BertLMPredictionHead). It runs on whatever rows it is given, so
  callers pass only the positions that are predicted: at small model sizes the vocabulary
  projection is most of the compute.
* ``LMHead``: the bare vocabulary projection of causal and sequence-to-sequence LMs (GPT-2,
  LLaMA untied, BART with its ``final_logits_bias`` buffer, T5 v1.0 with its d_model^-0.5
  rescale of the decoder output).
* Fine-tuning heads: sequence classification from the pooled vector (or RoBERTa's dense +
  tanh head on the pooled token), token classification and span start/end from every token
  (BERT paper §4).
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.layers import ACTIVATIONS, Linear, make_norm
from lmforge.ops.onednn_linear import linear


class Pooler(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, pooled_token: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(pooled_token))


def _vocabulary_projection(config: ModelConfig, word_embeddings: nn.Embedding, width: int | None = None) -> Linear:
    """(width -> V, default H) without bias; shares the input embedding matrix when the config ties them."""
    projection = Linear(width or config.hidden_size, config.vocab_size, bias=False)
    if config.tie_word_embeddings:
        projection.weight = word_embeddings.weight  # one Parameter, saved once
    return projection


class MaskedLMHead(nn.Module):
    """With a factorised embedding (ALBERT) the transform maps H -> E and the tied projection
    reads E; ``mlm_head_activation`` overrides the activation (RoBERTa's head is erf-gelu
    whatever ``hidden_act`` says)."""

    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        width = config.embedding_width
        self.dense = Linear(config.hidden_size, width)
        self.activation = ACTIVATIONS[config.mlm_head_activation or config.activation]
        self.norm = make_norm(config, width)
        self.decoder = _vocabulary_projection(config, word_embeddings, width)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V)."""
        return linear(self.norm(self.activation(self.dense(hidden))), self.decoder.weight, self.bias)


class LMHead(nn.Module):
    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.decoder = _vocabulary_projection(config, word_embeddings)
        self.input_scale = config.hidden_size ** -0.5 if config.scale_output_by_inverse_sqrt_width else None
        if config.output_bias:
            # BART: a persistent buffer (not trained by the reference), saved with the weights.
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        else:
            self.final_logits_bias = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.input_scale is not None:
            hidden = hidden * self.input_scale
        logits = self.decoder(hidden)
        return logits if self.final_logits_bias is None else logits + self.final_logits_bias


class PairHead(nn.Module):
    """Two-way sentence-pair classifier on the pooled vector (BERT NSP, ALBERT SOP)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.classifier = Linear(config.hidden_size, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)


class LinearClassifier(nn.Module):
    """Dropout then one linear layer (BERT's fine-tuning classifiers)."""

    def __init__(self, config: ModelConfig, num_outputs: int, bias: bool = True) -> None:
        super().__init__()
        rate = config.hidden_dropout if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(rate)
        self.classifier = Linear(config.hidden_size, num_outputs, bias=bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))


class DenseTanhClassifier(nn.Module):
    """RoBERTa's classification head (fairseq RobertaClassificationHead, transformers'
    RobertaClassificationHead): dropout, dense H -> H, tanh, dropout, output projection, read
    from the pooled token's hidden state; the backbone's pooler is not used."""

    def __init__(self, config: ModelConfig, num_outputs: int) -> None:
        super().__init__()
        rate = config.hidden_dropout if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(rate)
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.output = Linear(config.hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(torch.tanh(self.dense(self.dropout(hidden)))))
