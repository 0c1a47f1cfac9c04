"""AllenNLP's released ELMo format (``options.json`` + weights ``.hdf5`` written by bilm-tf's
``dump_weights``) to and from ``lmforge.lstm.elmo.ElmoBiLM``, following the loaders of
allennlp/modules/elmo.py (``_ElmoCharacterEncoder._load_*``) and elmo_lstm.py
(``ElmoLstm.load_weights``). The TensorFlow conventions the file keeps:

- ``char_embed`` has 261 rows (character id - 1); the model's row 0 is padding, all zeros.
- ``CNN/W_cnn_i`` is (1, width, char_dim, filters), a Conv2D kernel; torch's Conv1d wants
  (filters, char_dim, width).
- Highway ``CNN_high_k``: TF computes ``(1 - c) * x + c * relu(x W_transform + b_transform)``
  with the carry gate ``c = sigmoid(x W_carry + b_carry)``; our gate is ``g = 1 - c``, i.e.
  ``sigmoid(-(x W_carry + b_carry))``, so the carry weights and bias are negated.
- ``RNN_d/RNN/MultiRNNCell/Cell{layer}/LSTMCell`` (d = 0 forward, 1 backward): ``W_0`` is
  (input + projection, 4 * cell) acting on ``[x, h]`` with the gates ordered input, memory (j),
  forget, output; torch's order is input, forget, memory, output, so blocks 1 and 2 swap.
  TF's LSTMCell adds ``forget_bias`` 1.0 inside the sigmoid instead of storing it in ``B``, so
  it is added to the forget block of the bias. ``W_P_0`` (cell, projection) is the projection.
- The softmax is not part of the released files: the converted model has none (vocab_size 0)
  and reads words through its character CNN.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lmforge.errors import UserError
from lmforge.lstm.elmo import N_CHARACTERS, ElmoBiLM, ElmoConfig

TF_FORGET_BIAS = 1.0


def config_from_options(options: dict) -> ElmoConfig:
    try:
        lstm, cnn = options["lstm"], options["char_cnn"]
        return ElmoConfig(char_embedding_dim=cnn["embedding"]["dim"], filters=[list(f) for f in cnn["filters"]],
                          n_highway=cnn["n_highway"], activation=cnn.get("activation", "relu"),
                          n_characters=N_CHARACTERS, max_characters_per_token=cnn.get("max_characters_per_token", 50),
                          n_layers=lstm.get("n_layers", 2), cell_size=lstm["dim"], projection_dim=lstm["projection_dim"],
                          cell_clip=lstm.get("cell_clip"), proj_clip=lstm.get("proj_clip"),
                          use_skip_connections=lstm.get("use_skip_connections", True), vocab_size=0, dropout=0.0)
    except (KeyError, TypeError) as error:
        raise UserError(f"options.json is not an ELMo options file (missing {error})") from None


def options_from_config(config: ElmoConfig) -> dict:
    return {"lstm": {"use_skip_connections": config.use_skip_connections, "projection_dim": config.projection_dim,
                     "cell_clip": config.cell_clip, "proj_clip": config.proj_clip, "dim": config.cell_size,
                     "n_layers": config.n_layers},
            "char_cnn": {"activation": config.activation, "filters": config.filters, "n_highway": config.n_highway,
                         "embedding": {"dim": config.char_embedding_dim}, "n_characters": config.n_characters,
                         "max_characters_per_token": config.max_characters_per_token}}


def _swap_gate_blocks(array: np.ndarray, cell: int) -> np.ndarray:
    """Swap the second and third gate blocks along axis 0 (TF i,j,f,o <-> torch i,f,j,o)."""
    swapped = array.copy()
    swapped[cell:2 * cell], swapped[2 * cell:3 * cell] = array[2 * cell:3 * cell], array[cell:2 * cell]
    return swapped


def _lstm_group(direction: int, layer: int) -> str:
    return f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"


def read_allennlp(options_file: str | Path, weight_file: str | Path) -> ElmoBiLM:
    """An ``ElmoBiLM`` holding the released weights (character CNN and both LSTM stacks)."""
    import h5py

    for path in (options_file, weight_file):
        if not Path(path).is_file():
            raise UserError(f"no such file {path}")
    try:
        options = json.loads(Path(options_file).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{options_file} is not valid JSON") from None
    config = config_from_options(options)
    model = ElmoBiLM(config).eval()
    tensors: dict[str, np.ndarray] = {}
    try:
        with h5py.File(weight_file, "r") as f:
            embed = f["char_embed"][...]
            if embed.shape[0] + 1 != config.n_characters:
                raise UserError(f"{weight_file}: char_embed has {embed.shape[0]} rows, expected {config.n_characters - 1}")
            tensors["token_encoder.char_embedding.weight"] = np.concatenate([np.zeros((1, embed.shape[1])), embed])
            for i in range(len(config.filters)):
                tensors[f"token_encoder.convolutions.{i}.weight"] = f["CNN"][f"W_cnn_{i}"][...][0].transpose(2, 1, 0)
                tensors[f"token_encoder.convolutions.{i}.bias"] = f["CNN"][f"b_cnn_{i}"][...]
            for k in range(config.n_highway):
                group = f[f"CNN_high_{k}"]
                tensors[f"token_encoder.highway.layers.{k}.weight"] = np.concatenate(
                    [group["W_transform"][...].T, -group["W_carry"][...].T])
                tensors[f"token_encoder.highway.layers.{k}.bias"] = np.concatenate(
                    [group["b_transform"][...], -group["b_carry"][...]])
            tensors["token_encoder.projection.weight"] = f["CNN_proj"]["W_proj"][...].T
            tensors["token_encoder.projection.bias"] = f["CNN_proj"]["b_proj"][...]
            cell = config.cell_size
            for direction, stack in enumerate(("forward_lm", "backward_lm")):
                for layer in range(config.n_layers):
                    group = f[_lstm_group(direction, layer)]
                    weight = _swap_gate_blocks(group["W_0"][...].T, cell)
                    bias = group["B"][...].copy()
                    bias[2 * cell:3 * cell] += TF_FORGET_BIAS
                    prefix = f"{stack}.{layer}."
                    tensors[prefix + "input_linearity.weight"] = weight[:, :config.projection_dim]
                    tensors[prefix + "state_linearity.weight"] = weight[:, config.projection_dim:]
                    tensors[prefix + "state_linearity.bias"] = _swap_gate_blocks(bias, cell)
                    tensors[prefix + "state_projection.weight"] = group["W_P_0"][...].T
    except KeyError as error:
        raise UserError(f"{weight_file} lacks an ELMo weight ({error})") from None
    except OSError as error:
        raise UserError(f"{weight_file} is not a readable HDF5 file ({error})") from None
    state = model.state_dict()
    for name, array in tensors.items():
        if tuple(state[name].shape) != array.shape:
            raise UserError(f"{weight_file}: {name} has shape {array.shape}, options.json implies {tuple(state[name].shape)}")
        state[name].copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
    return model


def write_allennlp(model: ElmoBiLM, options_file: str | Path, weight_file: str | Path) -> None:
    """The inverse of ``read_allennlp`` (the softmax, which the format has no place for, is left out)."""
    import h5py

    config = model.config
    if config.token_encoder != "char_cnn":
        raise UserError("AllenNLP's format holds character-CNN ELMo models only")
    Path(options_file).write_text(json.dumps(options_from_config(config), indent=2) + "\n")
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    cell, width = config.cell_size, config.n_filters
    with h5py.File(weight_file, "w") as f:
        f["char_embed"] = state["token_encoder.char_embedding.weight"][1:]
        for i in range(len(config.filters)):
            f[f"CNN/W_cnn_{i}"] = state[f"token_encoder.convolutions.{i}.weight"].transpose(2, 1, 0)[None]
            f[f"CNN/b_cnn_{i}"] = state[f"token_encoder.convolutions.{i}.bias"]
        for k in range(config.n_highway):
            weight, bias = state[f"token_encoder.highway.layers.{k}.weight"], state[f"token_encoder.highway.layers.{k}.bias"]
            f[f"CNN_high_{k}/W_transform"], f[f"CNN_high_{k}/W_carry"] = weight[:width].T, -weight[width:].T
            f[f"CNN_high_{k}/b_transform"], f[f"CNN_high_{k}/b_carry"] = bias[:width], -bias[width:]
        f["CNN_proj/W_proj"] = state["token_encoder.projection.weight"].T
        f["CNN_proj/b_proj"] = state["token_encoder.projection.bias"]
        for direction, stack in enumerate(("forward_lm", "backward_lm")):
            for layer in range(config.n_layers):
                prefix, group = f"{stack}.{layer}.", _lstm_group(direction, layer)
                weight = np.concatenate([state[prefix + "input_linearity.weight"],
                                         state[prefix + "state_linearity.weight"]], axis=1)
                f[f"{group}/W_0"] = _swap_gate_blocks(weight, cell).T
                bias = _swap_gate_blocks(state[prefix + "state_linearity.bias"], cell)
                bias[2 * cell:3 * cell] -= TF_FORGET_BIAS
                f[f"{group}/B"] = bias
                f[f"{group}/W_P_0"] = state[prefix + "state_projection.weight"].T
