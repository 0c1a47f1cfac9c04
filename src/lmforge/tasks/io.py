"""File helpers shared by the fine-tuning tasks' readers: compressed text, format suffixes,
numbered lines, JSON with one-line errors.

Any data file may be compressed as ``.gz`` or ``.xz``; the format is the suffix under it.
Whatever the bytes, reading through ``open_text`` ends in the text or a one-line UserError
naming the file: undecodable text, a truncated or damaged ``.gz``/``.xz`` and unreadable
files never escape as tracebacks (tests/faults/test_fuzz.py feeds the readers any bytes).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from lmforge import files
from lmforge.errors import UserError


@contextlib.contextmanager
def open_text(path: str | Path) -> Iterator[IO[str]]:
    """Open a UTF-8 text file, transparently decompressing ``.gz`` and ``.xz``, for a ``with``
    block; a decoding or decompression failure inside the block becomes a UserError.

    A leading byte-order mark is dropped (GLUE's original MRPC dev.tsv starts with one).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        if path.suffix == ".gz":
            handle = gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        elif path.suffix == ".xz":
            handle = lzma.open(path, "rt", encoding="utf-8-sig", newline="")
        else:
            handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror or error})") from None
    with handle, read_errors(path):
        yield handle


@contextlib.contextmanager
def read_errors(path: str | Path) -> Iterator[None]:
    """Turn what bad bytes (``lmforge.files.read_errors``) or the file system raise while
    reading ``path`` into one line naming it."""
    try:
        with files.read_errors(path):
            yield
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror or error})") from None


def format_suffix(path: str | Path) -> str:
    """The data format's suffix under any compression suffix: '.tsv' for train.tsv.xz."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".xz"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def numbered_lines(handle: IO[str], path: Path) -> Iterator[tuple[int, str]]:
    """Lines without their end-of-line, numbered from 1. A blank line is an error, except
    at the end of the file (a trailing newline or two is common and harmless)."""
    blank = None
    for number, line in enumerate(handle, start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            blank = blank or number
            continue
        if blank is not None:
            raise UserError(f"{path}:{blank}: empty row")
        yield number, line


def read_lines(path: str | Path) -> list[str]:
    """Every line of a text file, without line ends."""
    with open_text(path) as handle:
        return handle.read().splitlines()


def read_json(path: str | Path):
    """A JSON document (.json, .gz, .xz); invalid JSON is a UserError naming the line."""
    with open_text(Path(path)) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: invalid JSON at line {error.lineno} ({error.msg})") from None
