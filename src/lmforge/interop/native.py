"""lmforge's own checkpoint directory: ``lmforge.json`` (format version, task, full config),
``model.safetensors`` with lmforge weight names (tied tensors stored once), and the tokenizer
files beside them. Loading is strict, like the HF path (``lmforge.interop.state``)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.interop.state import copy_into, fresh_heads, unique_state
from lmforge.models.build import build_model

MANIFEST = "lmforge.json"
# Version 2: one core for every family (fused qkv, every task model keeps "backbone.").
FORMAT_VERSION = 2


def is_native(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def save_native(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(unique_state(model), directory / "model.safetensors", metadata={"format": "pt"})
    manifest = {"format": "lmforge", "version": FORMAT_VERSION, "task": model.task, "config": model.config.to_dict()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def read_native_manifest(directory: Path) -> tuple[ModelConfig, str]:
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{directory} was written by another lmforge version (format {manifest.get('version')}, "
                        f"this one reads {FORMAT_VERSION}); export it with that version (`lmforge convert to-hf`) "
                        "and import the Hugging Face copy")
    return ModelConfig.from_dict(manifest["config"]), manifest["task"]


def load_native(directory: str | Path, task: str | None = None, changes: dict | None = None) -> nn.Module:
    """As ``load_hf``, for lmforge's own layout."""
    directory = Path(directory)
    config, stored_task = read_native_manifest(directory)
    config = config.replace(**(changes or {}))
    model = build_model(config, task or stored_task)
    copy_into(model, load_file(directory / "model.safetensors"),
              keep_heads=(task or stored_task) == stored_task, fresh=fresh_heads(changes))
    return model
