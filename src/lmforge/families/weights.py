"""Weight-name tables: one table per family maps lmforge parameter names to Hugging Face names;
export runs the same table backwards (torchtitan's rule: one map, never two).

A table is a list of ``Rule``s. A rule pairs an lmforge module prefix with one HF module prefix,
or with several that lmforge keeps fused along the first dimension (BERT's separate
query/key/value become one ``qkv`` parameter). ``{i}`` stands for a layer number (any
``{letter}`` is a number placeholder: ALBERT's shared layers are ``{g}`` group, ``{j}`` layer in
the group). A name maps by its longest matching prefix; the rest (``.weight``, ``.bias``)
carries over unchanged.

A rule may carry a ``Transform`` per HF part, applied on import and inverted on export:
``TRANSPOSE`` for GPT-2's Conv1D layout ([in, out] weights) and ``RotaryInterleave`` for
Meta-format LLaMA checkpoints, whose q/k rows pair rotary dimensions (0, 1), (2, 3), ... where
the rotate-half form pairs (i, i + d/2) (transformers' convert_llama_weights_to_hf permute).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lmforge.config import ModelConfig
from lmforge.errors import UserError

if TYPE_CHECKING:
    import torch


class Transform:
    """The identity: tensors cross unchanged. Subclasses override both directions."""

    def to_ours(self, tensor: torch.Tensor, config: ModelConfig) -> torch.Tensor:
        return tensor

    def to_theirs(self, tensor: torch.Tensor, config: ModelConfig) -> torch.Tensor:
        return tensor


IDENTITY = Transform()


class Transpose(Transform):
    """GPT-2's Conv1D stores weights as [in, out], the transpose of nn.Linear; biases as is."""

    def to_ours(self, tensor, config):
        return tensor.t() if tensor.dim() == 2 else tensor

    to_theirs = to_ours


TRANSPOSE = Transpose()


@dataclass(frozen=True)
class RotaryInterleave(Transform):
    """Meta-format q/k rows: per head, rotary pairs interleaved (0,1),(2,3),... <-> our
    rotate-half halves (i, i + d/2). ``heads`` names the config field counting the heads."""

    heads: str = "num_heads"

    def _shape(self, tensor, config):
        heads = getattr(config, self.heads)
        return heads, tensor.shape[0] // heads // 2, tensor.shape[1:]

    def to_ours(self, tensor, config):
        heads, half, rest = self._shape(tensor, config)
        return tensor.reshape(heads, half, 2, *rest).transpose(1, 2).reshape(tensor.shape)

    def to_theirs(self, tensor, config):
        heads, half, rest = self._shape(tensor, config)
        return tensor.reshape(heads, 2, half, *rest).transpose(1, 2).reshape(tensor.shape)


def qkv_sizes(config: ModelConfig) -> list[int]:
    """Row counts of the fused query, key and value projections (grouped-query aware)."""
    return [config.num_heads * config.head_dim] + [config.num_kv_heads * config.head_dim] * 2


@dataclass(frozen=True)
class Rule:
    ours: str  # lmforge module prefix
    theirs: str | tuple[str, ...]  # HF module prefix, or the prefixes fused (in order) into ours
    transform: Transform | tuple[Transform, ...] = IDENTITY  # per HF part when a tuple
    split: Callable[[ModelConfig], list[int]] | None = None  # fused rules: rows of each part
    # Only for configs where this is true (T5 v1.0's one "wi" against v1.1's gated "wi_0"/"wi_1").
    applies: Callable[[ModelConfig], bool] | None = None

    def applies_to(self, config: ModelConfig | None) -> bool:
        return self.applies is None or config is None or self.applies(config)

    @property
    def parts(self) -> tuple[str, ...]:
        return self.theirs if isinstance(self.theirs, tuple) else (self.theirs,)

    def transform_of(self, part: int) -> Transform:
        return self.transform[part] if isinstance(self.transform, tuple) else self.transform


_PLACEHOLDER = re.compile(r"\\\{([a-z])\\\}")  # "{i}" after re.escape


def _pattern(prefix: str) -> re.Pattern:
    escaped = _PLACEHOLDER.sub(r"(?P<\1>\\d+)", re.escape(prefix))
    return re.compile(rf"^{escaped}(?P<rest>(\..+)?)$")


def _fill(target: str, match: re.Match) -> str:
    """``target`` with each number placeholder replaced by what ``match`` found for it."""
    for name, number in match.groupdict().items():
        if name != "rest" and number is not None:
            target = target.replace(f"{{{name}}}", number)
    return target


def _best_match(name: str, table, config: ModelConfig | None = None):
    """(target prefix with {i} filled + rest, payload) of the longest matching prefix among the
    rules that apply to ``config`` (all when None), or None."""
    best = None
    for pattern, target, payload in table:
        rule = payload[0] if isinstance(payload, tuple) else payload
        if not rule.applies_to(config):
            continue
        match = pattern.match(name)
        if match:
            length = len(match.group(0)) - len(match.group("rest"))
            if best is None or length > best[0]:
                best = (length, _fill(target, match) + match.group("rest"), payload)
    return None if best is None else best[1:]


class WeightMap:
    def __init__(self, rules: list[Rule | tuple]) -> None:
        self.rules = [rule if isinstance(rule, Rule) else Rule(*rule) for rule in rules]
        for rule in self.rules:
            if len(rule.parts) > 1 and rule.split is None:
                raise ValueError(f"fused rule for {rule.ours} needs split sizes")
        self._to_hf = [(_pattern(rule.ours), rule.ours, rule) for rule in self.rules]
        # One entry per HF part; the target is the lmforge prefix.
        self._from_hf = [(_pattern(part), rule.ours, (rule, index))
                         for rule in self.rules for index, part in enumerate(rule.parts)]

    def maps_hf_name(self, name: str) -> bool:
        return _best_match(name, self._from_hf) is not None

    def to_hf_names(self, name: str, config: ModelConfig | None = None) -> tuple[list[str], Rule]:
        """The HF name(s) an lmforge tensor is exported under (several for a fused one)."""
        best = None
        for pattern, _, rule in self._to_hf:
            if not rule.applies_to(config):
                continue
            match = pattern.match(name)
            if match and (best is None or len(match.group("rest")) < len(best[0].group("rest"))):
                best = (match, rule)
        if best is None:
            raise UserError(f"no Hugging Face name for lmforge weight {name}")
        match, rule = best
        return [_fill(part, match) + match.group("rest") for part in rule.parts], rule

    def import_tensors(self, tensors: dict[str, torch.Tensor], config: ModelConfig):
        """HF tensors -> (lmforge tensors, lmforge name -> the HF name it came from, HF names
        no rule maps). Fused parts are transformed one by one, then concatenated."""
        pending: dict[str, tuple[Rule, dict[int, torch.Tensor]]] = {}
        sources: dict[str, str] = {}
        unmatched: list[str] = []
        for name, tensor in tensors.items():
            found = _best_match(name, self._from_hf, config)
            if found is None:
                unmatched.append(name)
                continue
            ours, (rule, part) = found
            pending.setdefault(ours, (rule, {}))[1][part] = rule.transform_of(part).to_ours(tensor, config)
            sources[ours] = name
        result = {}
        for ours, (rule, parts) in pending.items():
            if len(parts) != len(rule.parts):
                absent = [p for i, p in enumerate(rule.parts) if i not in parts]
                raise UserError(f"checkpoint has {sources[ours]} but not the rest of its group ({absent[0]}...)")
            result[ours] = parts[0] if len(parts) == 1 else _concatenate([parts[i] for i in range(len(parts))])
        return result, sources, unmatched

    def export_tensors(self, tensors: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
        out = {}
        for name, tensor in tensors.items():
            hf_names, rule = self.to_hf_names(name, config)
            pieces = [tensor] if len(hf_names) == 1 else tensor.split(rule.split(config))
            for index, (hf_name, piece) in enumerate(zip(hf_names, pieces)):
                out[hf_name] = rule.transform_of(index).to_theirs(piece, config).contiguous()
        return out



def _concatenate(tensors: list) -> torch.Tensor:
    import torch  # here, not at the top: listing presets must not pay for importing torch

    return torch.cat(tensors)


def prefixed(rules: list[Rule | tuple], ours_prefix: str, theirs_prefix: str) -> list[Rule]:
    """The same rules one module deeper on both sides (a backbone table inside a task model)."""
    rules = [rule if isinstance(rule, Rule) else Rule(*rule) for rule in rules]
    return [Rule(ours_prefix + rule.ours, tuple(theirs_prefix + part for part in rule.parts)
                 if isinstance(rule.theirs, tuple) else theirs_prefix + rule.theirs, rule.transform, rule.split,
                 rule.applies)
            for rule in rules]
