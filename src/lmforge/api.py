"""The Python API: build a model from a preset, load one from disk or the hub, save it.

    model = lmforge.build("bert-mini")                       # random init, MLM + NSP heads
    model, tokenizer = lmforge.load("path/or/hub-id")          # lmforge or HF layout
    lmforge.save(model, "out", tokenizer, format="hf")         # transformers loads it strictly
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families import get_preset
from lmforge.interop.hf import load_hf, save_hf
from lmforge.interop.native import is_native, load_native, save_native
from lmforge.models.build import build_model, task_model_class

# Files a hub download needs; safetensors preferred, the .bin only as a fallback.
_HUB_PATTERNS = ["config.json", "*.safetensors", "model.safetensors.index.json", "vocab.txt", "vocab.json",
                 "merges.txt", "spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def build(preset_or_config: str | ModelConfig, task: str = "pretraining", seed: int | None = None, **changes) -> nn.Module:
    """A randomly initialised model. ``changes`` override config fields (e.g. vocab_size)."""
    task_model_class(task)  # validates the task name
    config = get_preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    if changes:
        config = config.replace(**changes)
    return build_model(config, task, seed)


def resolve_checkpoint(path_or_hub_id: str | Path) -> Path:
    """A local checkpoint directory: the path itself, or a hub snapshot downloaded (online)."""
    path = Path(path_or_hub_id)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path} is a file; give the checkpoint directory")
        return path
    name = str(path_or_hub_id)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise UserError(f"no such checkpoint directory: {name}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(name, allow_patterns=_HUB_PATTERNS)
        if not any(Path(local).glob("*.safetensors")):
            local = snapshot_download(name, allow_patterns=_HUB_PATTERNS + ["pytorch_model.bin"])
    except Exception as error:  # offline, unknown id, gated repo: one clear line
        raise UserError(f"{name} is neither a local directory nor a reachable hub id ({type(error).__name__})") from None
    return Path(local)


def load_model(path_or_hub_id: str | Path, task: str | None = None, **changes) -> nn.Module:
    """The model of a checkpoint; see ``load`` for ``task``. ``changes`` override config
    fields before the model is built (e.g. ``labels=("neg", "pos")`` for a new classifier)."""
    directory = resolve_checkpoint(path_or_hub_id)
    if task is not None:
        task_model_class(task)
    if "labels" in changes:
        changes["labels"] = tuple(changes["labels"])
    load = load_native if is_native(directory) else load_hf
    return load(directory, task, changes)


def load_tokenizer(path_or_hub_id: str | Path):
    """The checkpoint's tokenizer, or None when the directory holds none."""
    from lmforge.tokenization import Tokenizer

    directory = resolve_checkpoint(path_or_hub_id)
    from lmforge.tokenization.hf_files import has_tokenizer

    if not has_tokenizer(directory):
        return None
    return Tokenizer.from_dir(directory)


def load(path_or_hub_id: str | Path, task: str | None = None, **changes):
    """(model, tokenizer) from an lmforge or Hugging Face checkpoint directory or hub id.

    ``task`` None keeps the stored head; another task (e.g. "sequence_classification") keeps
    the backbone and starts the new head from its initialisation."""
    return load_model(path_or_hub_id, task, **changes), load_tokenizer(path_or_hub_id)


def save(model: nn.Module, directory: str | Path, tokenizer=None, format: str = "lmforge") -> Path:
    if format == "hf":
        return save_hf(model, directory, tokenizer)
    if format == "lmforge":
        return save_native(model, directory, tokenizer)
    raise UserError(f"unknown checkpoint format {format!r}; use 'lmforge' or 'hf'")
