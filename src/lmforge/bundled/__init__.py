"""Files shipped inside the lmforge package, found through ``importlib.resources`` so that an
installed lmforge has them too, not only a source checkout: the run recipes
(``recipes/pretrain/*.yaml``, ``recipes/finetune/*.yaml``; the repository's top-level
``recipes`` is a link to this folder)."""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

KINDS = ("pretrain", "finetune")


def recipe_path(name: str) -> Path | None:
    """The bundled recipe a name means, or None: ``bert-mini``, ``pretrain/bert-mini``,
    ``recipes/pretrain/bert-mini.yaml`` (a README path typed outside the repository)."""
    stem = name.removeprefix("recipes/").removesuffix(".yaml")
    candidates = [stem] if "/" in stem else [f"{kind}/{stem}" for kind in KINDS]
    root = files(__name__) / "recipes"
    for candidate in candidates:
        resource = root / f"{candidate}.yaml"
        if resource.is_file():
            with as_file(resource) as path:  # a real file for a wheel or an editable install
                return Path(path)
    return None


def recipe_names() -> list[str]:
    root = files(__name__) / "recipes"
    return sorted(f"{kind}/{entry.name.removesuffix('.yaml')}" for kind in KINDS
                  for entry in (root / kind).iterdir() if entry.name.endswith(".yaml"))
