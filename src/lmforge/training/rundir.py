"""Output-directory guards shared by every command that writes files.

Two rules (see the README's "Failure behaviour"): a command never destroys what it did not
create, and what it replaces is replaced only once the new output is complete (the safe writes
themselves are ``lmforge.files``).

``kind_of`` names what a directory holds from the files lmforge writes there, so a refusal can
say what it protects ("a fine-tuning run (model/, metrics.json)").
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lmforge.errors import UserError
from lmforge.files import write_text_atomic

# What each kind of lmforge output holds: the first kind whose marker files are all present wins.
_KINDS = (
    ("a pretraining run", ("checkpoints",)),
    ("a pretraining run", ("recipe.json",)),
    ("a fine-tuning run", ("model", "metrics.json")),
    ("a fine-tuning run", ("metrics.jsonl", "metrics.json")),
    ("prepared data", ("manifest.json",)),
    ("a model", ("lmforge.json",)),
    ("a model", ("config.json",)),
    ("a model", ("model.safetensors",)),
    ("a tokenizer", ("tokenizer.json",)),
    ("a tokenizer", ("vocab.txt",)),
)


def kind_of(path: str | os.PathLike) -> str | None:
    """What lmforge output ``path`` holds ("a fine-tuning run", "a model", ...); None when it
    is missing or an empty directory; "a file" or "other files" for anything else."""
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return "a file"
    names = {entry.name for entry in path.iterdir()}
    if not names:
        return None
    for kind, markers in _KINDS:
        if all(marker in names for marker in markers):
            return kind
    return "other files"


def describe(path: str | os.PathLike) -> str:
    """``kind_of`` with the names that identify it, e.g. "a fine-tuning run (metrics.json, model/)"."""
    path = Path(path)
    kind = kind_of(path)
    if kind in (None, "a file"):
        return kind or "nothing"
    shown = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in path.iterdir())
    more = f", +{len(shown) - 4} more" if len(shown) > 4 else ""
    return f"{kind} ({', '.join(shown[:4])}{more})"


def check_out_dir(path: str | os.PathLike, flag: str, *, overwrite: bool = False,
                  reusable: tuple[str, ...] = ()) -> Path:
    """Refuse an output directory that holds something this command did not make.

    ``reusable`` lists kinds the command may add to (e.g. its own earlier output). With
    ``overwrite`` anything but a plain file is accepted: the caller then builds the new
    output beside it and replaces it only when complete (``staged_dir``)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a directory")
    kind = kind_of(path)
    if kind is None or kind in reusable or overwrite:
        return path
    raise UserError(f"{flag} {path} already holds {describe(path)}; choose another {flag}"
                    " or pass --overwrite to replace it")


def check_out_file(path: str | os.PathLike, flag: str) -> Path:
    """An output file path must not be a directory, and its parent must be creatable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UserError(f"{flag} {path}: {parent} is a file, not a directory")
    return path


# -- what a pretraining run's prepared data was made from ---------------------------------------
DATA_SOURCE = "data_source.json"


def data_source(corpus: list[str], tokenizer: str, vocab_size: int, lowercase: bool,
                heldout_fraction: float, heldout_docs: int, seed: int, kind: str = "wordpiece") -> dict:
    """What OUT/data is built from: the corpus files (resolved path and size), the tokenizer
    (a directory, or the settings of the one trained) and the held-out choice."""
    files = [{"path": str(Path(p).resolve()), "bytes": Path(p).stat().st_size if Path(p).is_file() else None}
             for p in corpus]
    made_by = {"dir": str(Path(tokenizer).resolve())} if tokenizer else {
        "train": kind, "vocab_size": vocab_size, "lowercase": lowercase}
    return {"corpus": files, "tokenizer": made_by, "heldout_fraction": heldout_fraction,
            "heldout_docs": heldout_docs, "seed": seed}


def recorded_data_source(out: Path) -> dict | None:
    import json

    path = Path(out) / DATA_SOURCE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def record_data_source(out: Path, source: dict) -> None:
    import json

    write_text_atomic(Path(out) / DATA_SOURCE, json.dumps(source, indent=2) + "\n")


def check_data_source(out: Path, source: dict, resuming: bool) -> bool:
    """True when OUT/data can be reused for ``source``. A run with checkpoints cannot change its
    data (UserError); a fresh run's stale data (an earlier failed attempt with another corpus or
    vocabulary) is removed so it is rebuilt, never silently trained on."""
    out = Path(out)
    if not (out / "data" / "manifest.json").is_file():
        return False
    recorded = recorded_data_source(out)
    if recorded == source or (recorded is None and resuming):
        return True  # same data, or a run from before the record existed
    if resuming:
        changed = [key for key in source if recorded.get(key) != source[key]]
        raise UserError(f"{out / 'data'} was prepared from other data than the recipe names "
                        f"(differs in {', '.join(changed)}); a resumed run keeps its data: restore the recipe's "
                        "data section or start a new --out")
    own_tokenizer = source["tokenizer"].get("dir") != str((out / "tokenizer").resolve())
    for name in ("data", "tokenizer", DATA_SOURCE):
        path = out / name
        if name == "tokenizer" and not own_tokenizer:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return False
