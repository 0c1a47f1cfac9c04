"""lmforge's own checkpoint directory: ``lmforge.json`` (family, task, full config),
``model.safetensors`` with lmforge weight names (tied tensors stored once), and the
tokenizer files beside them. Loading is strict, like the HF path."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.interop.hf import _shared_names

MANIFEST = "lmforge.json"
FORMAT_VERSION = 1


def is_native(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def save_native(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shared = _shared_names(model)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in shared}
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    manifest = {"format": "lmforge", "version": FORMAT_VERSION, "task": model.task, "config": model.config.to_dict()}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def read_native_manifest(directory: Path) -> tuple[ModelConfig, str]:
    manifest = json.loads((directory / MANIFEST).read_text())
    return ModelConfig.from_dict(manifest["config"]), manifest["task"]


def native_state_to_model(model: nn.Module, tensors: dict[str, torch.Tensor], strict_heads: bool = True) -> None:
    """Strict copy of lmforge-named tensors; see ``hf_state_to_model`` for ``strict_heads``."""
    params = model.state_dict()
    shared = _shared_names(model)
    bare = model.task == "backbone"
    loaded = set()
    for name, tensor in tensors.items():
        if bare:
            name = name.removeprefix("backbone.")
        elif name not in params and f"backbone.{name}" in params:
            name = f"backbone.{name}"  # a bare backbone loaded under a task head
        backbone = bare or name.startswith("backbone.")
        if not strict_heads and (not backbone or name not in params) and (
                name not in params or params[name].shape != tensor.shape):
            continue  # another head, or a pooler the new head does not use
        if name not in params:
            raise UserError(f"checkpoint weight {name} has no place in a {model.task} model")
        if params[name].shape != tensor.shape:
            raise UserError(f"shape mismatch for {name}: checkpoint {tuple(tensor.shape)}, model {tuple(params[name].shape)}")
        with torch.no_grad():
            params[name].copy_(tensor)
        loaded.add(name)
    missing = [n for n in params if n not in loaded and n not in shared and (strict_heads or bare or n.startswith("backbone."))]
    if missing:
        raise UserError(f"checkpoint has no weight for {missing[0]}")


def load_native(directory: str | Path, task: str | None = None, changes: dict | None = None) -> nn.Module:
    """As ``load_hf``, for lmforge's own layout."""
    from lmforge.models.encoder import build_model

    directory = Path(directory)
    config, stored_task = read_native_manifest(directory)
    config = config.replace(**(changes or {}))
    model = build_model(config, task or stored_task)
    same_head = (task or stored_task) == stored_task and "labels" not in (changes or {})
    native_state_to_model(model, load_file(directory / "model.safetensors"), strict_heads=same_head)
    return model
