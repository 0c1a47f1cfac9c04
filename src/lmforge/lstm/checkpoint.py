"""Checkpoint directories for the LSTM models, which have no Hugging Face architecture:
``config.json`` (``{"model_type": ..., "format": "lmforge-lstm", "version": 1, "task": ..., **config}``)
beside ``model.safetensors`` (tied tensors stored once) and the tokenizer files.

Each model kind registers how to build itself from its config dict (``register_model_type``);
loading is strict: every stored tensor must fit a parameter or buffer and every one must be there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.errors import UserError
from lmforge.interop.state import unique_state

FORMAT = "lmforge-lstm"
VERSION = 1
CONFIG_FILE = "config.json"

# model_type -> builder(config dict, task) -> nn.Module
_BUILDERS: dict[str, Callable[[dict, str], nn.Module]] = {}


def register_model_type(model_type: str, builder: Callable[[dict, str], nn.Module]) -> None:
    _BUILDERS[model_type] = builder


def is_lstm_checkpoint(directory: str | Path) -> bool:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def save_lstm(model: nn.Module, config: dict, model_type: str, task: str, directory: str | Path,
              tokenizer=None) -> Path:
    """Write ``model`` (built by the ``model_type`` builder from ``config``) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(unique_state(model), directory / "model.safetensors", metadata={"format": "pt"})
    manifest = {"format": FORMAT, "version": VERSION, "model_type": model_type, "task": task, **config}
    (directory / CONFIG_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def read_lstm_config(directory: str | Path) -> tuple[str, str, dict]:
    """(model_type, task, config dict) of a saved LSTM checkpoint."""
    directory = Path(directory)
    if not is_lstm_checkpoint(directory):
        raise UserError(f"{directory} is not an lmforge LSTM checkpoint (no {CONFIG_FILE} with format {FORMAT})")
    manifest = json.loads((directory / CONFIG_FILE).read_text())
    if manifest.get("version") != VERSION:
        raise UserError(f"{directory} was written in LSTM checkpoint format {manifest.get('version')}; "
                        f"this lmforge reads {VERSION}")
    config = {k: v for k, v in manifest.items() if k not in ("format", "version", "model_type", "task")}
    return manifest["model_type"], manifest["task"], config


def load_lstm(directory: str | Path, task: str | None = None) -> nn.Module:
    """Build the model a checkpoint describes and copy its weights in, strictly."""
    directory = Path(directory)
    model_type, stored_task, config = read_lstm_config(directory)
    _import_builders()
    if model_type not in _BUILDERS:
        raise UserError(f"{directory}: unknown LSTM model_type {model_type!r}; known: {', '.join(sorted(_BUILDERS))}")
    model = _BUILDERS[model_type](config, task or stored_task)
    state = load_file(directory / "model.safetensors")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    # Tied tensors are stored once (unique_state): a missing name is fine when it shares storage
    # with a stored one.
    shared = {name for name in missing if any(own[name].data_ptr() == own[s].data_ptr() for s in state if s in own)}
    missing = [name for name in missing if name not in shared]
    if task is None or task == stored_task:
        if missing or unexpected:
            raise UserError(f"{directory}: weights do not fit a {model_type} model "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model


def _import_builders() -> None:
    """The model modules register themselves on import."""
    import importlib

    for module in ("lmforge.lstm.elmo", "lmforge.lstm.awd_lstm"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
