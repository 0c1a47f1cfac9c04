"""Safe writes and output-directory guards shared by every command that writes files.

Two rules (see the README's "Failure behaviour"): a command never destroys what it did not
create, and what it replaces is replaced only once the new output is complete. Files and
directories are written beside their target, flushed to disk (``fsync``, the file and then its
directory, as in SQLite's and git's atomic-commit recipes) and renamed over it, so a crash or a
full disk leaves either the old output or the new one, never half of one.

``kind_of`` names what a directory holds from the files lmforge writes there, so a refusal can
say what it protects ("a fine-tuning run (model/, metrics.json)").
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from lmforge.errors import UserError

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


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def fsync_tree(root: str | os.PathLike) -> None:
    """fsync every file under ``root``, then every directory bottom-up."""
    for directory, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_file(Path(directory) / name)
        fsync_dir(directory)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text``: readers see the old or the new contents, never a mix."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)


def replace_dir(new: Path, target: Path) -> None:
    """Move the complete directory ``new`` to ``target``, replacing what is there.

    The old copy is renamed aside first and deleted last, so a crash in between leaves it
    under ``.NAME.old-PID`` beside the target rather than losing both."""
    fsync_tree(new)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    os.replace(new, target)
    fsync_dir(target.parent)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists() or old.is_symlink():
        old.unlink()


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh directory beside ``target`` to build the new output in; on success it replaces
    ``target`` (see ``replace_dir``), on any error it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)


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
                heldout_fraction: float, heldout_docs: int, seed: int) -> dict:
    """What OUT/data is built from: the corpus files (resolved path and size), the tokenizer
    (a directory, or the settings of the one trained) and the held-out choice."""
    files = [{"path": str(Path(p).resolve()), "bytes": Path(p).stat().st_size if Path(p).is_file() else None}
             for p in corpus]
    made_by = {"dir": str(Path(tokenizer).resolve())} if tokenizer else {
        "train": "wordpiece", "vocab_size": vocab_size, "lowercase": lowercase}
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
