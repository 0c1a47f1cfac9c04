"""How lmforge touches files, at the bottom of the package (it depends only on ``errors``).

Writing: a crash, Ctrl-C or a full disk leaves either the old output or the new one, never half
of one: write beside the target, flush to disk (``fsync``, the file and then its directory, as in
SQLite's and git's atomic-commit recipes) and rename over it.

Reading: whatever bytes an input holds (not UTF-8, a truncated or damaged archive), reading it
fails in one line naming the file (``read_errors``), never with a decoder's traceback."""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path

from lmforge.errors import UserError

# What damaged or truncated compressed input raises while it is read.
DAMAGED_ARCHIVE = (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error)


@contextlib.contextmanager
def read_errors(*paths: str | os.PathLike | None) -> Iterator[None]:
    """Turn what bad bytes raise while the named inputs are read into one line naming them."""
    names = ", ".join(str(p) for p in paths if p)
    try:
        yield
    except UnicodeDecodeError as error:
        raise UserError(f"{names}: not UTF-8 text (byte 0x{error.object[error.start]:02x}); "
                        "convert it to UTF-8 first") from None
    except DAMAGED_ARCHIVE as error:
        raise UserError(f"{names}: damaged or truncated compressed file ({error or type(error).__name__})") from None


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
    under ``.NAME.old-PID`` beside the target rather than losing both; ``restore_interrupted``
    puts it back."""
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


def restore_interrupted(target: str | os.PathLike) -> Path | None:
    """Undo a swap a crash cut between its two renames: ``target`` is missing while its old
    copy waits beside it as ``.NAME.old-PID``; that copy goes back. Returns what was restored."""
    target = Path(target)
    if target.exists() or target.is_symlink() or not target.parent.is_dir():
        return None
    leftovers = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not leftovers:
        return None
    os.replace(leftovers[-1], target)
    fsync_dir(target.parent)
    return target


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh directory beside ``target`` to build the new output in; on success it replaces
    ``target`` (see ``replace_dir``), on any error it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(target)  # an earlier swap cut short: its old copy is the current one
    staging = target.with_name(f".{target.name}.new-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, target)
