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
from lmforge.models.encoder import TASK_MODELS

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


def _shared_names(model: nn.Module) -> set[str]:
    """State-dict names that alias an earlier tensor (tied weights): saved once only."""
    seen: dict[int, str] = {}
    shared = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in seen:
            shared.add(name)
        else:
            seen[key] = name
    return shared


def _hf_name_to_ours(family: Family, name: str, bare_backbone: bool) -> str | None:
    """lmforge name of an HF weight; ``bare_backbone``: the model is a Backbone (no prefix)."""
    for old, new in _LEGACY_NORM_NAMES.items():
        if name.endswith(old) and "LayerNorm" in name:
            name = name[: -len(old)] + new
    ours = family.weights.from_hf(name)
    if ours is None and not name.startswith(family.hf_backbone_prefix):
        ours = family.weights.from_hf(family.hf_backbone_prefix + name)  # bare-backbone files
    if ours is not None and bare_backbone:
        ours = ours.removeprefix("backbone.")
    return ours


def _is_backbone(name: str, bare_backbone: bool) -> bool:
    return bare_backbone or name.startswith("backbone.")


def hf_state_to_model(
    model: nn.Module, family: Family, tensors: dict[str, torch.Tensor], strict_heads: bool = True
) -> None:
    """Copy HF tensors into ``model``. ``strict_heads=False`` loads the backbone strictly but
    lets heads start from their initialisation: the checkpoint's other heads (or a head of
    another size, or a pooler the new head does not use) are ignored (fine-tuning)."""
    params = model.state_dict()
    shared = _shared_names(model)
    bare_backbone = model.task == "backbone"
    loaded: set[str] = set()
    tied_checks: list[tuple[str, str, torch.Tensor]] = []
    for hf_name, tensor in tensors.items():
        if any(re.search(pattern, hf_name) for pattern in family.hf_ignored):
            continue
        if hf_name in family.hf_tied_aliases:
            continue  # a tied duplicate (e.g. the MLM decoder bias): its source is loaded
        ours = _hf_name_to_ours(family, hf_name, bare_backbone)
        if ours is None or ours not in params or params[ours].shape != tensor.shape:
            if not strict_heads and (ours is None or not _is_backbone(ours, bare_backbone) or ours not in params):
                continue  # another task's head, or the pooler a new head does not use
            if ours is None or ours not in params:
                raise UserError(f"checkpoint weight {hf_name} has no place in a {family.name} {model.task} model")
            raise UserError(
                f"shape mismatch for {hf_name}: checkpoint {tuple(tensor.shape)}, model {tuple(params[ours].shape)}"
            )
        if ours in shared:
            tied_checks.append((hf_name, ours, tensor))  # checked once its source is loaded
        else:
            with torch.no_grad():
                params[ours].copy_(tensor)
        loaded.add(ours)
    for hf_name, ours, tensor in tied_checks:
        if not torch.equal(params[ours], tensor.to(params[ours].dtype)):
            raise UserError(f"checkpoint weight {hf_name} differs from the weight it is tied to")
    missing = [name for name in params if name not in loaded and name not in shared]
    if not strict_heads:
        missing = [name for name in missing if _is_backbone(name, bare_backbone)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"checkpoint has no weight for {missing[0]}{more}")


def model_to_hf_state(model: nn.Module, family: Family) -> dict[str, torch.Tensor]:
    shared = _shared_names(model)
    task = model.task
    out = {}
    for name, tensor in model.state_dict().items():
        if name in shared:
            continue
        hf_name = family.weights.to_hf(name if task != "backbone" else f"backbone.{name}")
        if task == "backbone":
            hf_name = hf_name.removeprefix(family.hf_backbone_prefix)
        out[hf_name] = tensor.detach().contiguous()
    return out


def load_hf(directory: str | Path, task: str | None = None, changes: dict | None = None) -> nn.Module:
    """An lmforge model from an HF directory. ``task`` None keeps the checkpoint's own head;
    another task takes the backbone and initialises the new head. ``changes`` override
    config fields first (e.g. ``labels`` for a new classifier, dropout rates)."""
    directory = Path(directory)
    family, config, stored_task = read_hf_config(directory)
    config = config.replace(**(changes or {}))
    tensors = read_hf_tensors(directory)
    if stored_task == "masked_lm" and any(
        (family.weights.from_hf(name) or "").startswith("pair_head.") for name in tensors
    ):
        stored_task = "pretraining"  # published MLM files often still hold the NSP head
    from lmforge.models.encoder import build_model

    wanted = task or stored_task
    model = build_model(config, wanted)
    same_head = wanted == stored_task and "labels" not in (changes or {})
    hf_state_to_model(model, family, tensors, strict_heads=same_head)
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


def task_model_class(task: str) -> type[nn.Module]:
    if task not in TASK_MODELS:
        raise UserError(f"unknown task {task!r}; known: {', '.join(sorted(TASK_MODELS))}")
    return TASK_MODELS[task]
