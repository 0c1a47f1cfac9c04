"""Heads trained on frozen features (BERT paper §5.3; ELMo, Peters et al. 2018 §3.2-3.3).

- ``BiLstmTagger``: the paper's "randomly initialized two-layer 768-dimensional BiLSTM before
  the classification layer" for NER: a 2-layer bidirectional LSTM (768 units per direction by
  default) over the word vectors of a sentence, then a linear layer to the tag scores. The
  sequence is packed, so neither direction reads padding.
- ``LinearHead``: a linear layer on each vector: per word (a probe tagger) or on the pooled
  sentence vector (classification).

Both take either vectors already combined by a fixed layer strategy, (B, [T,] D), or all of
a backbone's layers, (B, layers, [T,] D), mixed by ELMo's ``ScalarMix`` (eq. 1:
gamma * sum_j softmax(w)_j h_j, weights and gamma learned with the head; AllenNLP's
``ScalarMix``, weights starting at 0, i.e. equal, and gamma at 1). Dropout (0.1) sits on
the head's input and before its output layer; the paper gives none for this experiment.

The trained head is saved with ``lmforge.lstm.checkpoint`` (model_type ``feature_head``; its
config names the backbone and strategy it was trained on).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lmforge.lstm.scalar_mix import ScalarMix

HEAD_DROPOUT = 0.1


def mixed(mix: ScalarMix | None, vectors: torch.Tensor) -> torch.Tensor:
    """(B, layers, [T,] D) -> (B, [T,] D) through the scalar mix; unchanged without one."""
    return vectors if mix is None else mix(list(vectors.unbind(1)))


class BiLstmTagger(nn.Module):
    """(B, [layers,] T, D) word vectors + (B, T) mask -> (B, T, labels) tag scores."""

    def __init__(self, width: int, num_labels: int, hidden: int = 768, num_layers: int = 2, mix_layers: int = 0,
                 dropout: float = HEAD_DROPOUT) -> None:
        super().__init__()
        self.mix = ScalarMix(mix_layers) if mix_layers else None
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(width, hidden, num_layers, batch_first=True, bidirectional=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.classifier = nn.Linear(2 * hidden, num_labels)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = mixed(self.mix, vectors)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.dropout(x), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
        return self.classifier(self.dropout(states))


class LinearHead(nn.Module):
    """(B, [layers,] [T,] D) vectors -> (B, [T,] labels) scores; ``mask`` is ignored."""

    def __init__(self, width: int, num_labels: int, mix_layers: int = 0, dropout: float = HEAD_DROPOUT) -> None:
        super().__init__()
        self.mix = ScalarMix(mix_layers) if mix_layers else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_labels)

    def forward(self, vectors: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = mixed(self.mix, vectors)
        return self.classifier(self.dropout(x))


HEADS = ("bilstm", "linear")


def build_head(config: dict) -> nn.Module:
    """The head a saved config describes: ``head``, ``width``, ``num_labels``, ``hidden``, ``mix_layers``."""
    if config["head"] == "bilstm":
        return BiLstmTagger(config["width"], config["num_labels"], config["hidden"], mix_layers=config["mix_layers"])
    return LinearHead(config["width"], config["num_labels"], mix_layers=config["mix_layers"])


def _register() -> None:
    from lmforge.lstm.checkpoint import register_model_type

    register_model_type("feature_head", lambda config, task: build_head(config))


_register()
