"""ELMo's bidirectional language model (Peters et al. 2018, "Deep contextualized word
representations"), built as bilm-tf trained it and AllenNLP's ``_ElmoCharacterEncoder`` /
``ElmoLstm`` / ``LstmCellWithProjection`` (allennlp/modules/elmo.py, elmo_lstm.py,
lstm_cell_with_projection.py) read the released weights.

- Token encoder, shared by both directions: a character CNN (Kim et al. 2016) over each token's
  UTF-8 bytes framed by begin/end-of-word characters (AllenNLP's 262-character vocabulary, 0 =
  padding), character embeddings (16), one convolution per width with max-pool over the
  characters and relu, highway layers and a linear projection to the LSTM size; or a plain word
  embedding (``token_encoder: word``).
- Forward and backward LSTM LMs of ``n_layers`` LSTMs with a projection (Sak et al. 2014):
  cell ``cell_size``, output ``projection_dim``, cell values clipped to ``cell_clip`` and outputs
  to ``proj_clip``; from the second layer on each layer's input is added to its output.
  Gates are ordered input, forget, memory, output (AllenNLP's; TensorFlow's is input, memory,
  forget, output, see ``lmforge.lstm.elmo_convert``).
- One softmax over the vocabulary shared by both directions: the forward LM predicts token
  t + 1 from its output at t, the backward one token t - 1.

Sequences are processed without state carried between batches (AllenNLP's ELMo is stateful
across batches; zero initial states make features a function of the sentence alone).
``elmo_layer_outputs`` gives the L + 1 representations of Peters et al. eq. 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmforge.errors import UserError
from lmforge.lstm.checkpoint import load_lstm, register_model_type, save_lstm
from lmforge.lstm.elmo_config import (BOS_CHAR, BOW_CHAR, EOS_CHAR, EOW_CHAR, MAX_CHARS, N_CHARACTERS,  # noqa: F401
                                      PAD_CHAR, PRESETS, ElmoConfig, get_elmo_preset, parameter_count)

MODEL_TYPE = "elmo"
TASK = "bilm"

# ------------------------------------------------------------------ characters
def word_char_ids(word: str, max_chars: int = MAX_CHARS) -> list[int]:
    """AllenNLP's ``ELMoCharacterMapper.convert_word_to_char_ids`` (ids already shifted by one)."""
    if word == "<S>":
        return boundary_char_ids(BOS_CHAR, max_chars)
    if word == "</S>":
        return boundary_char_ids(EOS_CHAR, max_chars)
    encoded = list(word.encode("utf-8", "ignore")[: max_chars - 2])
    chars = [BOW_CHAR, *encoded, EOW_CHAR] + [PAD_CHAR] * (max_chars - 2 - len(encoded))
    return [c + 1 for c in chars]


def boundary_char_ids(marker: int, max_chars: int = MAX_CHARS) -> list[int]:
    return [c + 1 for c in [BOW_CHAR, marker, EOW_CHAR] + [PAD_CHAR] * (max_chars - 3)]


def words_to_char_ids(sentences: list[list[str]], max_chars: int = MAX_CHARS) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T + 2, max_chars) character ids of ``<S> words </S>`` per sentence, zero-padded, and the
    (B, T + 2) mask."""
    width = max(len(s) for s in sentences) + 2
    chars = torch.zeros(len(sentences), width, max_chars, dtype=torch.long)
    for row, words in enumerate(sentences):
        ids = [boundary_char_ids(BOS_CHAR, max_chars), *(word_char_ids(w, max_chars) for w in words),
               boundary_char_ids(EOS_CHAR, max_chars)]
        chars[row, :len(ids)] = torch.tensor(ids)
    return chars, chars.gt(0).any(-1)


def vocabulary_char_ids(tokenizer, max_chars: int = MAX_CHARS) -> torch.Tensor:
    """(V, max_chars): each vocabulary entry spelled in characters; the tokenizer's cls/bos and
    sep/eos tokens become ELMo's <S> and </S>, its padding all zeros."""
    bos, eos = boundary_ids(tokenizer)
    table = torch.tensor([word_char_ids(token or "", max_chars)
                          for token in tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))])
    table[bos] = torch.tensor(boundary_char_ids(BOS_CHAR, max_chars))
    table[eos] = torch.tensor(boundary_char_ids(EOS_CHAR, max_chars))
    if tokenizer.pad_id is not None:
        table[tokenizer.pad_id] = 0
    return table


def boundary_ids(tokenizer) -> tuple[int, int]:
    """The tokenizer ids playing <S> and </S>."""
    bos = tokenizer.cls_id if tokenizer.cls_id is not None else tokenizer.bos_id
    eos = tokenizer.sep_id if tokenizer.sep_id is not None else tokenizer.eos_id
    if bos is None or eos is None:
        raise UserError("an ELMo vocabulary needs begin and end tokens (cls/bos and sep/eos)")
    return bos, eos


# ------------------------------------------------------------------ token encoders
class Highway(nn.Module):
    """``y = g * x + (1 - g) * relu(A x)`` with ``g = sigmoid(B x)`` (AllenNLP's layout: one
    Linear giving [A x, B x])."""

    def __init__(self, width: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            nonlinear, gate = layer(x).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * F.relu(nonlinear)
        return x


class CharCNNEncoder(nn.Module):
    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        self.char_embedding = nn.Embedding(config.n_characters, config.char_embedding_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(nn.Conv1d(config.char_embedding_dim, num, width)
                                          for width, num in config.filters)
        self.activation = torch.tanh if config.activation == "tanh" else F.relu
        self.highway = Highway(config.n_filters, config.n_highway)
        self.projection = nn.Linear(config.n_filters, config.projection_dim)

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, C) character ids -> (B, T, projection_dim)."""
        batch, steps, chars = char_ids.shape
        x = self.char_embedding(char_ids.reshape(-1, chars)).transpose(1, 2)
        pooled = [self.activation(conv(x).max(dim=-1).values) for conv in self.convolutions]
        return self.projection(self.highway(torch.cat(pooled, dim=-1))).reshape(batch, steps, -1)


# ------------------------------------------------------------------ LSTM with projection
class ProjectedLSTM(nn.Module):
    """One direction of one layer: AllenNLP's ``LstmCellWithProjection`` (bilm-tf's LSTMCell with
    ``num_proj``, ``cell_clip`` and ``proj_clip``), zero initial state."""

    def __init__(self, input_size: int, cell_size: int, projection_dim: int, cell_clip: float | None,
                 proj_clip: float | None) -> None:
        super().__init__()
        self.cell_size, self.cell_clip, self.proj_clip = cell_size, cell_clip, proj_clip
        self.input_linearity = nn.Linear(input_size, 4 * cell_size, bias=False)
        self.state_linearity = nn.Linear(projection_dim, 4 * cell_size, bias=True)
        self.state_projection = nn.Linear(cell_size, projection_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, input) left-aligned sequences -> (B, T, projection_dim); position t sees 0..t."""
        batch, steps, _ = x.shape
        input_gates = self.input_linearity(x)  # all steps at once; only the recurrence loops
        state = x.new_zeros(batch, self.state_projection.out_features)
        memory = x.new_zeros(batch, self.cell_size)
        outputs = []
        for t in range(steps):
            gates = input_gates[:, t] + self.state_linearity(state)
            input_gate, forget_gate, memory_init, output_gate = gates.chunk(4, dim=-1)
            memory = torch.sigmoid(input_gate) * torch.tanh(memory_init) + torch.sigmoid(forget_gate) * memory
            if self.cell_clip:
                memory = memory.clamp(-self.cell_clip, self.cell_clip)
            state = self.state_projection(torch.sigmoid(output_gate) * torch.tanh(memory))
            if self.proj_clip:
                state = state.clamp(-self.proj_clip, self.proj_clip)
            outputs.append(state)
        return torch.stack(outputs, dim=1)


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``length`` steps reversed, padding left in place (its own inverse)."""
    steps = x.shape[1]
    positions = torch.arange(steps, device=x.device).unsqueeze(0)
    index = torch.where(positions < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


# ------------------------------------------------------------------ the biLM
@dataclass
class BiLMOutput:
    token_layer: torch.Tensor  # (B, T, projection_dim)
    forward_layers: list[torch.Tensor]  # n_layers tensors (B, T, projection_dim)
    backward_layers: list[torch.Tensor]
    mask: torch.Tensor  # (B, T) bool


class ElmoBiLM(nn.Module):
    """Inputs are vocabulary ids (the character CNN spells them through ``vocab_char_ids``) or,
    for the character CNN, character ids directly (words outside any vocabulary)."""

    task = TASK

    def __init__(self, config: ElmoConfig) -> None:
        super().__init__()
        self.config = config
        if config.token_encoder == "char_cnn":
            self.token_encoder = CharCNNEncoder(config)
            if config.vocab_size:
                self.register_buffer("vocab_char_ids", torch.zeros(config.vocab_size, config.max_characters_per_token,
                                                                   dtype=torch.long))
        elif config.token_encoder == "word":
            if not config.vocab_size:
                raise UserError("an ELMo with word embeddings needs vocab_size")
            self.token_encoder = nn.Embedding(config.vocab_size, config.projection_dim, padding_idx=config.pad_id)
        else:
            raise UserError(f"ELMo token_encoder must be char_cnn or word, got {config.token_encoder!r}")

        def direction() -> nn.ModuleList:
            return nn.ModuleList(ProjectedLSTM(config.projection_dim, config.cell_size, config.projection_dim,
                                               config.cell_clip, config.proj_clip) for _ in range(config.n_layers))

        self.forward_lm, self.backward_lm = direction(), direction()
        self.dropout = nn.Dropout(config.dropout)
        self.softmax = nn.Linear(config.projection_dim, config.vocab_size) if config.vocab_size else None

    def embed_tokens(self, input_ids: torch.Tensor | None = None, char_ids: torch.Tensor | None = None) -> torch.Tensor:
        if char_ids is None:
            if input_ids is None:
                raise ValueError("give input_ids or char_ids")
            if isinstance(self.token_encoder, nn.Embedding):
                return self.token_encoder(input_ids)
            char_ids = self.vocab_char_ids[input_ids]
        elif not isinstance(self.token_encoder, CharCNNEncoder):
            raise UserError("this ELMo embeds vocabulary words, not characters: give input_ids")
        return self.token_encoder(char_ids)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                char_ids: torch.Tensor | None = None) -> BiLMOutput:
        if attention_mask is None:
            attention_mask = char_ids.gt(0).any(-1) if char_ids is not None else torch.ones_like(input_ids)
        mask = attention_mask.bool()
        keep = mask.unsqueeze(-1)
        tokens = self.embed_tokens(input_ids, char_ids) * keep
        lengths = mask.sum(1)
        forward_layers, backward_layers = [], []
        forward_in, backward_in = tokens, reverse_valid(tokens, lengths)
        for index, (forward_lstm, backward_lstm) in enumerate(zip(self.forward_lm, self.backward_lm)):
            forward_out = forward_lstm(self.dropout(forward_in))
            backward_out = backward_lstm(self.dropout(backward_in))
            if index > 0 and self.config.use_skip_connections:
                forward_out, backward_out = forward_out + forward_in, backward_out + backward_in
            forward_layers.append(forward_out * keep)
            backward_layers.append(reverse_valid(backward_out, lengths) * keep)
            forward_in, backward_in = forward_out, backward_out
        return BiLMOutput(tokens, forward_layers, backward_layers, mask)

    def layers(self, output: BiLMOutput) -> list[torch.Tensor]:
        """Peters et al.'s L + 1 representations, each (B, T, 2 * projection_dim): the token layer
        doubled (AllenNLP's ``ElmoBiLm``), then [forward; backward] per LSTM layer."""
        return [torch.cat([output.token_layer, output.token_layer], -1),
                *(torch.cat(pair, -1) for pair in zip(output.forward_layers, output.backward_layers))]


def build_elmo(config: ElmoConfig | dict, task: str = TASK) -> ElmoBiLM:
    if isinstance(config, dict):
        config = ElmoConfig.from_dict(config)
    if task != TASK:
        raise UserError(f"an ELMo checkpoint holds a {TASK} model, not {task!r}")
    return ElmoBiLM(config)


register_model_type(MODEL_TYPE, build_elmo)


def save_elmo(model: ElmoBiLM, directory, tokenizer=None):
    return save_lstm(model, model.config.to_dict(), MODEL_TYPE, TASK, directory, tokenizer)


def load_elmo(directory) -> ElmoBiLM:
    model = load_lstm(directory)
    if not isinstance(model, ElmoBiLM):
        raise UserError(f"{directory} holds no ELMo model")
    return model


# ------------------------------------------------------------------ contextual vectors
@dataclass
class ElmoLayers:
    """``layers``: [token layer, LSTM layer 1, ..., L], each (B, T, 2 * projection_dim), with
    <S>/</S> removed and zeros at padding; ``mask`` (B, T) bool; ``word_ids`` (B, T) the input
    word each position belongs to (-1 at padding)."""

    layers: list[torch.Tensor]
    mask: torch.Tensor
    word_ids: torch.Tensor


def elmo_layer_outputs(model: ElmoBiLM, sentences: list[list[str]] | list[str], tokenizer=None,
                       grad: bool = False) -> ElmoLayers:
    """ELMo's representations of a batch of sentences (lists of words, or strings split on
    whitespace). With ``tokenizer`` (a model trained on that vocabulary) each word is split
    into the tokenizer's sub-tokens and several positions can share a word id; without one the
    character CNN reads each word whole (AllenNLP's released models). The model runs as it is
    (call ``model.eval()`` for features) and without gradients unless ``grad``."""
    with torch.set_grad_enabled(grad):
        return _layer_outputs(model, sentences, tokenizer)


def _layer_outputs(model: ElmoBiLM, sentences, tokenizer) -> ElmoLayers:
    sentences = [s.split() if isinstance(s, str) else list(s) for s in sentences]
    if not sentences or any(not s for s in sentences):
        raise UserError("every sentence needs at least one word")
    device = next(model.parameters()).device
    if tokenizer is None:
        char_ids, mask = words_to_char_ids(sentences, model.config.max_characters_per_token)
        word_ids = [list(range(len(s))) for s in sentences]
        output = model(char_ids=char_ids.to(device), attention_mask=mask.to(device))
    else:
        bos, eos = boundary_ids(tokenizer)
        rows, word_ids = [], []
        for words in sentences:
            pieces = tokenizer.encode_plain(words)
            rows.append([bos, *(i for p in pieces for i in p), eos])
            word_ids.append([w for w, p in enumerate(pieces) for _ in p])
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id or 0, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.bool)
        for row, r in enumerate(rows):
            ids[row, :len(r)] = torch.tensor(r)
            mask[row, :len(r)] = True
        output = model(ids.to(device), mask.to(device))
    return _strip_boundaries(model.layers(output), output.mask, word_ids)


def _strip_boundaries(layers: list[torch.Tensor], mask: torch.Tensor, word_ids: list[list[int]]) -> ElmoLayers:
    """AllenNLP's ``remove_sentence_boundaries``: drop <S> and each row's </S>."""
    lengths = mask.sum(1) - 2
    width = int(lengths.max())
    inner = torch.arange(width, device=mask.device).unsqueeze(0) < lengths.unsqueeze(1)
    stripped = [layer[:, 1:1 + width] * inner.unsqueeze(-1) for layer in layers]
    words = torch.full((len(word_ids), width), -1, dtype=torch.long)
    for row, ids in enumerate(word_ids):
        words[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return ElmoLayers(stripped, inner, words)
