"""Streaming readers for raw pretraining corpora.

Two formats, each optionally compressed (``.gz``, ``.xz``):

- ``.txt``: documents separated by one or more blank lines (BERT's
  ``create_pretraining_data.py`` input: one sentence per line, a blank line between documents);
- ``.jsonl``: one JSON object per line whose ``"text"`` field is a document (the format of
  ``shared/data/corpus`` and of most hub datasets).

Documents are yielded one at a time, so memory holds one document, whatever the corpus size.
Whatever the bytes, reading gives documents or a one-line UserError naming the file: text that
is not UTF-8, a truncated or damaged archive, a line that is not a JSON object with a "text"
string (tests/faults fuzz this).
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from lmforge.errors import UserError
from lmforge.files import read_errors

_OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
FORMATS = (".txt", ".jsonl")


def corpus_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(format, compression)`` from a file name, e.g. ``("jsonl", ".xz")``."""
    suffixes = Path(path).suffixes
    compression = suffixes[-1] if suffixes and suffixes[-1] in _OPENERS else None
    stem = suffixes[-2] if compression and len(suffixes) >= 2 else (suffixes[-1] if suffixes else "")
    if stem not in FORMATS:
        raise UserError(
            f"{path}: unknown corpus format; expected .txt or .jsonl, optionally .gz/.xz/.bz2 compressed"
        )
    return stem[1:], compression


def check_corpus_files(paths: list[str]) -> None:
    """Fail early, before any work, on a missing file or an unknown format."""
    if not paths:
        raise UserError("no corpus files given")
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"corpus file not found: {path}")
        corpus_format(path)


def _open_text(path: str | os.PathLike) -> IO[str]:
    _, compression = corpus_format(path)
    opener = _OPENERS.get(compression, open)
    return opener(path, "rt", encoding="utf-8")


def iter_documents(path: str | os.PathLike) -> Iterator[str]:
    """The non-empty documents of one corpus file, in file order."""
    kind, compression = corpus_format(path)
    try:
        with read_errors(path), _open_text(path) as handle:
            yield from (_iter_jsonl(handle, path) if kind == "jsonl" else _iter_txt(handle))
    except (OSError, ValueError) as error:  # what bz2 raises for a damaged stream
        if compression is None and isinstance(error, OSError):
            raise  # a plain file-system failure (the CLI reports it with the path)
        raise UserError(f"{path}: damaged or truncated compressed file ({error or type(error).__name__})") from None


def _iter_txt(handle: IO[str]) -> Iterator[str]:
    lines: list[str] = []
    for line in handle:
        if line.strip():
            lines.append(line.rstrip("\n"))
        elif lines:
            yield "\n".join(lines)
            lines = []
    if lines:
        yield "\n".join(lines)


def _iter_jsonl(handle: IO[str], path: str | os.PathLike) -> Iterator[str]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise UserError(f"{path}:{number}: expected a JSON object with a \"text\" field ({error})") from None
        if not isinstance(text, str):
            raise UserError(f"{path}:{number}: \"text\" must be a string")
        if text.strip():
            yield text


def iter_texts(path: str | os.PathLike) -> Iterator[str]:
    """The non-blank texts of one corpus file in file order: each line of a .txt, each document
    of a .jsonl. For readers that need no document boundaries (tokenizer training), so memory
    holds one line of a .txt however long its documents are."""
    kind, _ = corpus_format(path)
    with _open_text(path) as handle:
        if kind == "jsonl":
            yield from _iter_jsonl(handle, path)
        else:
            yield from (line.rstrip("\n") for line in handle if line.strip())
