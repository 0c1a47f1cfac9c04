"""Model families: each is a short declarative file holding its presets, its Hugging Face
config translation and its HF weight-name table (inverted for export). The shared core never
imports from here; this registry is how the rest of lmforge finds a family."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from lmforge.config import ModelConfig
from lmforge.errors import UserError
from lmforge.families.weights import WeightMap


@dataclass(frozen=True)
class Family:
    name: str
    presets: dict[str, ModelConfig]
    hf_model_types: tuple[str, ...]  # config.json "model_type" values this family reads
    config_from_hf: Callable[[dict], ModelConfig]
    config_to_hf: Callable[[ModelConfig, str], dict]  # (config, task) -> config.json dict
    weights: WeightMap  # backbone and head names, lmforge <-> HF
    hf_architectures: dict[str, str]  # lmforge task -> HF architecture class name
    hf_backbone_prefix: str  # prefix of backbone weights inside HF task models ("bert.")
    hf_tied_aliases: dict[str, str] = field(default_factory=dict)  # HF name -> the HF name it is tied to
    hf_ignored: tuple[str, ...] = ()  # regexes of HF keys that hold no weights (buffers)
    hf_pair_head_names: tuple[str, ...] = ()  # HF keys of a sentence-pair head (MLM files may keep it)
    notes: dict[str, str] = field(default_factory=dict)  # preset -> one-line description

    def task_for_architecture(self, architecture: str) -> str:
        for task, name in self.hf_architectures.items():
            if name == architecture:
                return task
        raise UserError(
            f"architecture {architecture} is not supported for {self.name}; "
            f"supported: {', '.join(sorted(self.hf_architectures.values()))}"
        )


def registered_families() -> dict[str, Family]:
    from lmforge.families import albert, bart, bert, gpt, gpt2, llama, roberta, t5

    return {family.name: family for family in (bert.FAMILY, roberta.FAMILY, albert.FAMILY,
                                               gpt.FAMILY, gpt2.FAMILY, llama.FAMILY, bart.FAMILY, t5.FAMILY)}


def get_family(name: str) -> Family:
    families = registered_families()
    if name not in families:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(sorted(families))}")
    return families[name]


def family_for_hf_model_type(model_type: str) -> Family:
    for family in registered_families().values():
        if model_type in family.hf_model_types:
            return family
    raise UserError(f"config.json model_type {model_type!r} is not supported yet")


def all_presets() -> dict[str, ModelConfig]:
    presets: dict[str, ModelConfig] = {}
    for family in registered_families().values():
        presets.update(family.presets)
    return presets


def get_preset(name: str) -> ModelConfig:
    presets = all_presets()
    if name not in presets:
        raise UserError(f"unknown preset {name!r}; run `lmforge presets` to list them")
    return presets[name]
