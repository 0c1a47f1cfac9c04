"""Hugging Face checkpoint directories (config.json + model.safetensors or pytorch_model.bin),
read and written exactly.

Import detects the family from ``config.json``'s ``model_type``, translates the config and
maps every weight name through the family's table. Loading is strict: a weight that maps to
nothing, a parameter left without a weight, or a shape mismatch is an error naming it. Export
writes the layout ``transformers`` saves itself, so its ``from_pretrained`` finds no missing
and no unexpected keys.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import Family, family_for_hf_model_type, get_family
from lmforge.interop.state import copy_into, fresh_heads, unique_state
from lmforge.models.build import build_model

_LEGACY_NORM_NAMES = {".gamma": ".weight", ".beta": ".bias"}  # TF-era LayerNorm names


def read_hf_config(directory: Path) -> tuple[Family, ModelConfig, str]:
    """(family, config, task) of an HF checkpoint directory."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise UserError(f"{directory} has no config.json: not a Hugging Face checkpoint")
    hf = json.loads(config_path.read_text())
    family = family_for_hf_model_type(hf.get("model_type", ""))
    architecture = (hf.get("architectures") or [family.hf_architectures["backbone"]])[0]
    return family, family.config_from_hf(hf), family.task_for_architecture(architecture)


def read_hf_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: model.safetensors (possibly sharded) or pytorch_model.bin."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            tensors.update(load_file(directory / shard))
        return tensors
    if legacy.is_file():
        return torch.load(legacy, map_location="cpu", weights_only=True)
    raise UserError(f"{directory} has no model.safetensors or pytorch_model.bin")


def _normalise_names(family: Family, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF names as the family's table spells them: TF-era LayerNorm names renamed, buffers and
    tied duplicates dropped, and the backbone prefix added to bare-backbone files."""
    out = {}
    for name, tensor in tensors.items():
        if any(re.search(pattern, name) for pattern in family.hf_ignored) or name in family.hf_tied_aliases:
            continue  # a buffer the model recomputes, or a tied copy whose source is loaded
        for old, new in _LEGACY_NORM_NAMES.items():
            if name.endswith(old) and "LayerNorm" in name:
                name = name[: -len(old)] + new
        if not family.weights.maps_hf_name(name) and family.weights.maps_hf_name(family.hf_backbone_prefix + name):
            name = family.hf_backbone_prefix + name  # a bare-backbone file (BertModel)
        out[name] = tensor
    return out


def hf_state_to_model(model: nn.Module, family: Family, tensors: dict[str, torch.Tensor], keep_heads: bool = True,
                      fresh: tuple[str, ...] = ()) -> None:
    """Copy HF tensors into ``model`` through the family's weight map (see ``copy_into`` for
    ``keep_heads`` and ``fresh``)."""
    ours, sources, unmatched = family.weights.import_tensors(_normalise_names(family, tensors), model.config)
    if unmatched and keep_heads:
        raise UserError(f"checkpoint weight {unmatched[0]} has no place in a {family.name} {model.task} model")
    copy_into(model, ours, keep_heads=keep_heads, fresh=fresh, describe=lambda name: sources.get(name, name))


def model_to_hf_state(model: nn.Module, family: Family) -> dict[str, torch.Tensor]:
    out = family.weights.export_tensors(unique_state(model), model.config)
    if model.task == "backbone":  # transformers' bare models (BertModel) have no prefix
        out = {name.removeprefix(family.hf_backbone_prefix): tensor for name, tensor in out.items()}
    return out


def load_hf(directory: str | Path, task: str | None = None, changes: dict | None = None) -> nn.Module:
    """An lmforge model from an HF directory. ``task`` None keeps the checkpoint's own head;
    another task takes the backbone and initialises the new head. ``changes`` override
    config fields first (e.g. ``labels`` for a new classifier, dropout rates)."""
    directory = Path(directory)
    family, config, stored_task = read_hf_config(directory)
    config = config.replace(**(changes or {}))
    tensors = read_hf_tensors(directory)
    if stored_task == "masked_lm" and any(name in tensors for name in family.hf_pair_head_names):
        stored_task = "pretraining"  # published MLM files often still hold the NSP head
    wanted = task or stored_task
    model = build_model(config, wanted)
    hf_state_to_model(model, family, tensors, keep_heads=wanted == stored_task, fresh=fresh_heads(changes))
    _match_dtype(model, tensors)
    return model


def _match_dtype(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) == 1 and (dtype := dtypes.pop()) != torch.float32:
        model.to(dtype)


def save_hf(model: nn.Module, directory: str | Path, tokenizer=None) -> Path:
    """Write ``model`` (and its tokenizer) in the layout transformers saves."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    family = get_family(model.config.family)
    hf_config = family.config_to_hf(model.config, model.task)
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(model_to_hf_state(model, family), directory / "model.safetensors", metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory
