"""Weight-name tables: one table per family maps lmforge parameter names to Hugging Face
names; export uses the same table inverted (torchtitan's rule: one map, never two).

A table is a list of (lmforge module prefix, HF module prefix) pairs; ``{i}`` stands for a
layer number. A name maps by its longest matching prefix, the rest (``.weight``/``.bias``)
carried over unchanged.
"""

from __future__ import annotations

import re

from lmforge.errors import UserError


class WeightMap:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._to_hf = [(self._pattern(ours), theirs) for ours, theirs in pairs]
        self._from_hf = [(self._pattern(theirs), ours) for ours, theirs in pairs]

    @staticmethod
    def _pattern(prefix: str) -> re.Pattern:
        escaped = re.escape(prefix).replace(r"\{i\}", r"(?P<i>\d+)")
        return re.compile(rf"^{escaped}(?P<rest>(\..+)?)$")

    @staticmethod
    def _translate(name: str, table) -> str | None:
        best = None
        for pattern, target in table:
            match = pattern.match(name)
            if match and (best is None or len(match.group(0)) - len(match.group("rest")) > best[0]):
                replaced = target.replace("{i}", match.groupdict().get("i") or "")
                best = (len(match.group(0)) - len(match.group("rest")), replaced + match.group("rest"))
        return None if best is None else best[1]

    def to_hf(self, name: str) -> str:
        result = self._translate(name, self._to_hf)
        if result is None:
            raise UserError(f"no Hugging Face name for lmforge weight {name}")
        return result

    def from_hf(self, name: str) -> str | None:
        """lmforge name for an HF weight, or None when the table has no entry for it."""
        return self._translate(name, self._from_hf)
