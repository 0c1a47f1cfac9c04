"""Output heads. Models return hidden states; heads turn them into logits.

* ``Pooler`` and ``PairHead``: BERT's [CLS] pooler (dense + tanh) and next-sentence head.
* ``MaskedLMHead``: BERT's transform (dense, activation, LayerNorm) then the vocabulary
  projection tied to the input embeddings plus an output bias (transformers'
  BertLMPredictionHead). It runs on whatever rows it is given, so callers pass only the
  positions that are predicted: at small model sizes the vocabulary projection is most of the
  compute.
* Fine-tuning heads: sequence classification from the pooled vector, token classification
  and span start/end from every token (BERT paper §4).
"""

from __future__ import annotations

import torch
from torch import nn

from lmforge.config import ModelConfig
from lmforge.models.layers import ACTIVATIONS, Linear, linear, make_norm


class Pooler(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(first_token))


class MaskedLMHead(nn.Module):
    def __init__(self, config: ModelConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.activation = ACTIVATIONS[config.activation]
        self.norm = make_norm(config)
        if config.tie_word_embeddings:
            self.decoder_weight = word_embeddings.weight  # shared Parameter, one tensor
        else:
            self.decoder_weight = nn.Parameter(word_embeddings.weight.detach().clone())
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., H) -> (..., V)."""
        return linear(self.norm(self.activation(self.dense(hidden))), self.decoder_weight, self.bias)


class PairHead(nn.Module):
    """Two-way sentence-pair classifier on the pooled vector (BERT NSP, ALBERT SOP)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.classifier = Linear(config.hidden_size, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled)


class LinearClassifier(nn.Module):
    """Dropout then one linear layer (BERT's fine-tuning classifiers and span head)."""

    def __init__(self, config: ModelConfig, num_outputs: int) -> None:
        super().__init__()
        rate = config.hidden_dropout if config.classifier_dropout is None else config.classifier_dropout
        self.dropout = nn.Dropout(rate)
        self.classifier = Linear(config.hidden_size, num_outputs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))
