"""AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language Models") and the
ULMFiT classifier on top of it (Howard & Ruder 2018, section 3.3).

Follows fastai's ``fastai/text/models/awdlstm.py`` and ``core.py`` (AWD_LSTM, LinearDecoder,
PoolingLinearClassifier), which tests/lstm/test_awd_lstm_parity.py uses as the oracle:

- embedding dropout drops whole words: rows of the embedding matrix, rescaled by 1/(1-p)
  (Merity section 4.3; Gal & Ghahramani 2016);
- locked (variational) dropout: one mask per sequence, shared over time, on the embedded
  input, between the layers and on the last layer's output (Merity section 4.2);
- weight drop: DropConnect (Wan et al. 2013) on each layer's hidden-to-hidden matrix, a fresh
  mask per forward pass and only in training (Merity section 2), so cuDNN's fused LSTM still runs;
- AR / TAR: alpha * mean(dropped output^2) + beta * mean((h_t - h_{t-1})^2) on the last layer
  (Merity section 4.6; fastai RNNRegularizer);
- the decoder is tied to the embedding (Merity section 4.5).

Differences from fastai, on purpose: the recurrent state is passed in and returned rather
than kept inside the module (the caller carries it across BPTT windows), and the classifier
reads right-padded batches with their lengths, so padding never reaches a sequence's state
or its pooled vector (fastai pads on the left and lets the pads run through the LSTM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import UserError
from lmforge.lstm.awd_lstm_config import AWDLSTMConfig
from lmforge.lstm.checkpoint import register_model_type

MODEL_TYPE = "awd_lstm"
TASKS = ("language_model", "classification")

State = list[tuple[torch.Tensor, torch.Tensor]]  # (h, c) per layer, each (1, batch, width)


def dropout_mask(like: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """Bernoulli(1-p) / (1-p): an inverted-dropout mask of ``shape``."""
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence and feature, the same at every time step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, time, features)
        if not self.training or self.p == 0:
            return x
        return x * dropout_mask(x, (x.shape[0], 1, *x.shape[2:]), self.p)


class WordDropoutEmbedding(nn.Embedding):
    """An embedding whose rows (whole words) are dropped in training."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int, p: float) -> None:
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        self.p = p
        nn.init.uniform_(self.weight, -0.1, 0.1)  # fastai AWD_LSTM.initrange

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.training and self.p > 0:
            weight = weight * dropout_mask(weight, (weight.shape[0], 1), self.p)
        return F.embedding(ids, weight, self.padding_idx)


class WeightDropLSTM(nn.Module):
    """One single-direction LSTM layer whose hidden-to-hidden matrix gets DropConnect in training.

    Parameters carry nn.LSTM's layout (gates i, f, g, o stacked; two bias vectors) and its
    initialisation U(-1/sqrt(out), 1/sqrt(out)). The fused op ``torch.lstm`` takes the weights
    as arguments, so the dropped matrix is used without swapping attributes on a module.
    """

    def __init__(self, input_size: int, hidden_size: int, weight_dropout: float) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.weight_dropout = input_size, hidden_size, weight_dropout
        gates = 4 * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(gates))
        self.bias_hh = nn.Parameter(torch.empty(gates))
        bound = hidden_size ** -0.5
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def recurrent_weight(self) -> torch.Tensor:
        """The hidden-to-hidden matrix this forward pass uses."""
        return F.dropout(self.weight_hh, self.weight_dropout, self.training)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if state is None:
            zeros = x.new_zeros(1, x.shape[0], self.hidden_size)
            state = (zeros, zeros)
        weights = [self.weight_ih, self.recurrent_weight(), self.bias_ih, self.bias_hh]
        # has_biases, num_layers, dropout, train, bidirectional, batch_first
        output, h, c = torch.lstm(x, state, weights, True, 1, 0.0, self.training, False, True)
        return output, (h, c)


@dataclass
class EncoderOutput:
    raw: torch.Tensor  # last layer's output before dropout (TAR reads it)
    dropped: torch.Tensor  # the same after output dropout (AR, the decoder and the pooling read it)
    state: State


class AWDLSTMEncoder(nn.Module):
    def __init__(self, config: AWDLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = WordDropoutEmbedding(config.vocab_size, config.embedding_size, config.pad_id,
                                              config.embedding_dropout)
        self.input_dropout = LockedDropout(config.input_dropout)
        self.layers = nn.ModuleList(WeightDropLSTM(inp, out, config.weight_dropout) for inp, out in config.layer_sizes())
        self.hidden_dropouts = nn.ModuleList(LockedDropout(config.hidden_dropout) for _ in range(config.num_layers - 1))
        self.output_dropout = LockedDropout(config.output_dropout)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> EncoderOutput:
        x = self.input_dropout(self.embedding(ids))
        new_state = []
        for index, layer in enumerate(self.layers):
            x, layer_state = layer(x, None if state is None else state[index])
            new_state.append(layer_state)
            if index < len(self.hidden_dropouts):
                x = self.hidden_dropouts[index](x)
        return EncoderOutput(raw=x, dropped=self.output_dropout(x), state=new_state)


def detach_state(state: State) -> State:
    """Truncated BPTT: keep the values, cut the graph between windows."""
    return [(h.detach(), c.detach()) for h, c in state]


def activation_regularization(raw: torch.Tensor, dropped: torch.Tensor, alpha: float, beta: float,
                              mask: torch.Tensor | None = None) -> torch.Tensor:
    """AR + TAR (Merity et al. section 4.6) over the last layer:
    alpha * mean(dropped^2) + beta * mean((raw_t - raw_{t-1})^2), means over the real positions
    (``mask``: batch x time, True where a token is) and the features."""
    total = raw.new_zeros(())
    width = raw.shape[-1]
    if mask is None:
        mask = torch.ones(raw.shape[:2], dtype=torch.bool, device=raw.device)
    weights = mask.to(raw.dtype).unsqueeze(-1)
    if alpha:
        total = total + alpha * (dropped.pow(2) * weights).sum() / (weights.sum() * width)
    if beta and raw.shape[1] > 1:
        pairs = weights[:, 1:] * weights[:, :-1]
        total = total + beta * ((raw[:, 1:] - raw[:, :-1]).pow(2) * pairs).sum() / (pairs.sum().clamp(min=1) * width)
    return total


@dataclass
class LanguageModelOutput:
    logits: torch.Tensor  # (batch, time, vocab)
    encoded: EncoderOutput


class AWDLSTMLanguageModel(nn.Module):
    task = "language_model"

    def __init__(self, config: AWDLSTMConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = AWDLSTMEncoder(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.decoder.weight = self.encoder.embedding.weight
        nn.init.zeros_(self.decoder.bias)

    def forward(self, ids: torch.Tensor, state: State | None = None) -> LanguageModelOutput:
        encoded = self.encoder(ids, state)
        return LanguageModelOutput(self.decoder(encoded.dropped), encoded)

    def loss(self, output: LanguageModelOutput, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss with AR/TAR, plain cross-entropy) for next-token ``targets``."""
        cross_entropy = F.cross_entropy(output.logits.flatten(0, 1).float(), targets.flatten())
        regularisation = activation_regularization(output.encoded.raw, output.encoded.dropped,
                                                   self.config.ar_alpha, self.config.tar_beta) if self.training else 0.0
        return cross_entropy + regularisation, cross_entropy

    def layer_groups(self) -> list[nn.Module]:
        """fastai awd_lstm_lm_split: one group per LSTM layer, then embedding + decoder on top
        (they are one tied matrix, read at both ends)."""
        return [*self.encoder.layers, nn.ModuleList([self.encoder.embedding, self.decoder])]


def linear_block(inputs: int, outputs: int, p: float, relu: bool) -> nn.Sequential:
    """fastai LinBnDrop(lin_first=False): batchnorm, dropout, linear (+ ReLU). As there, the
    linear layer has no bias when a batchnorm comes with it."""
    parts: list[nn.Module] = [nn.BatchNorm1d(inputs), nn.Dropout(p), nn.Linear(inputs, outputs, bias=False)]
    return nn.Sequential(*parts, nn.ReLU(inplace=True)) if relu else nn.Sequential(*parts)


def concat_pool(output: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """ULMFiT's concat pooling [h_T, maxpool(H), meanpool(H)] over each sequence's real tokens
    (right padding: h_T sits at position length - 1)."""
    positions = torch.arange(output.shape[1], device=output.device)
    mask = (positions[None, :] < lengths[:, None]).unsqueeze(-1)
    last = output[torch.arange(output.shape[0], device=output.device), lengths - 1]
    max_pool = output.masked_fill(~mask, float("-inf")).max(dim=1).values
    mean_pool = (output * mask).sum(dim=1) / lengths[:, None].to(output.dtype)
    return torch.cat([last, max_pool, mean_pool], dim=-1)


@dataclass
class ClassifierOutput:
    logits: torch.Tensor  # (batch, labels)
    encoded: EncoderOutput


class AWDLSTMClassifier(nn.Module):
    """AWD-LSTM encoder + concat pooling + two linear blocks (Howard & Ruder section 3.3)."""

    task = "classification"

    def __init__(self, config: AWDLSTMConfig) -> None:
        super().__init__()
        if len(config.labels) < 2:
            raise UserError("an AWD-LSTM classifier needs at least two labels")
        self.config = config
        self.encoder = AWDLSTMEncoder(config)
        self.head = nn.Sequential(
            linear_block(3 * config.embedding_size, config.classifier_hidden, config.output_dropout, relu=True),
            linear_block(config.classifier_hidden, len(config.labels), config.classifier_dropout, relu=False))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> ClassifierOutput:
        if int(lengths.min()) < 1:
            raise UserError("every text needs at least one token")
        encoded = self.encoder(ids)
        return ClassifierOutput(self.head(concat_pool(encoded.dropped, lengths)), encoded)

    def loss(self, output: ClassifierOutput, labels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(output.logits.float(), labels)
        if self.training:  # fastai's text_classifier_learner keeps AR/TAR on
            mask = torch.arange(output.encoded.raw.shape[1], device=lengths.device)[None, :] < lengths[:, None]
            loss = loss + activation_regularization(output.encoded.raw, output.encoded.dropped,
                                                    self.config.ar_alpha, self.config.tar_beta, mask)
        return loss

    def layer_groups(self) -> list[nn.Module]:
        """fastai awd_lstm_clas_split, bottom to top: embedding, each LSTM layer, the head."""
        return [self.encoder.embedding, *self.encoder.layers, self.head]


def build_awd_lstm(config: dict | AWDLSTMConfig, task: str) -> nn.Module:
    if isinstance(config, dict):
        config = AWDLSTMConfig.from_dict(config)
    if task == "language_model":
        return AWDLSTMLanguageModel(config)
    if task == "classification":
        return AWDLSTMClassifier(config)
    raise UserError(f"an AWD-LSTM has no task {task!r}; known: {', '.join(TASKS)}")


register_model_type(MODEL_TYPE, build_awd_lstm)
