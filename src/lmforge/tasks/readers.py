"""Readers for the fine-tuning data formats of the BERT paper's tasks.

- Sentence and sentence-pair classification: TSV, CSV or JSONL with a header. The GLUE
  layouts (as written by GLUE's ``download_glue_data.py``) are recognised by their headers:
  SST-2 ``sentence, label``; MRPC ``Quality, #1 ID, #2 ID, #1 String, #2 String``;
  RTE/WNLI ``index, sentence1, sentence2, label``; QNLI ``index, question, sentence, label``;
  QQP ``..., question1, question2, is_duplicate``. GLUE TSV files are not CSV-quoted (MRPC
  sentences contain bare ``"``), so TSV lines are split on tabs and nothing else.
- Named-entity recognition: the CoNLL-2003 column format (word first, tag last).
- Extractive QA: SQuAD v1.1 JSON (Rajpurkar et al. 2016).

Any file may be compressed as ``.gz`` or ``.xz``.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import lzma
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lmforge.errors import UserError

# Known GLUE layouts: (text column, pair column), tried in order when no text column is
# given. Pairs come first so that e.g. RTE's "sentence1" is never read as a single sentence.
_TEXT_LAYOUTS: tuple[tuple[str, str | None], ...] = (
    ("sentence1", "sentence2"),  # RTE, WNLI, MNLI, STS-B
    ("#1 String", "#2 String"),  # MRPC
    ("question1", "question2"),  # QQP
    ("question", "sentence"),  # QNLI
    ("text", "text_pair"),
    ("sentence", None),  # SST-2, CoLA with header
    ("text", None),
)
_LABEL_COLUMNS = ("label", "Quality", "is_duplicate", "gold_label")


@dataclass(frozen=True)
class ClassificationExample:
    text: str
    pair: str | None  # second sentence of a pair task, None for single-sentence tasks
    label: str


@dataclass(frozen=True)
class TaggedSentence:
    words: list[str]
    tags: list[str]


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: list[dict[str, Any]]  # [{"text": str, "answer_start": int (char offset)}]


def open_text(path: str | Path) -> IO[str]:
    """Open a UTF-8 text file, transparently decompressing ``.gz`` and ``.xz``.

    A leading byte-order mark is dropped (GLUE's original MRPC dev.tsv starts with one).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _format_of(path: Path) -> str:
    """The data format from the extension under any compression suffix: 'tsv', 'csv', ..."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".xz"):
        suffixes = suffixes[:-1]
    return suffixes[-1].lstrip(".") if suffixes else ""


# ---------------------------------------------------------------------------------------
# Classification


def read_classification(
    path: str | Path,
    text_column: str | None = None,
    pair_column: str | None = None,
    label_column: str | None = None,
) -> list[ClassificationExample]:
    """Read a labelled classification file (.tsv, .csv or .jsonl, optionally .gz/.xz).

    Columns given by name are used as is. Otherwise the text (and pair) columns come from the
    known GLUE layouts; when ``text_column`` is given, only an explicit ``pair_column`` makes
    it a pair task. Labels are kept as strings (``"1"``, ``"entailment"``); ``LabelMap``
    turns them into ids.
    """
    path = Path(path)
    kind = _format_of(path)
    if kind not in ("tsv", "csv", "jsonl"):
        raise UserError(f"{path}: unknown classification format '.{kind}' (expected .tsv, .csv or .jsonl)")
    with open_text(path) as handle:
        header, rows = {"tsv": _tsv_table, "csv": _csv_table, "jsonl": _jsonl_table}[kind](handle, path)
        text_column, pair_column, label_column = _resolve_columns(
            path, header, text_column, pair_column, label_column
        )
        examples = [
            ClassificationExample(
                text=_field(path, line, row, text_column),
                pair=_field(path, line, row, pair_column) if pair_column else None,
                label=_field(path, line, row, label_column),
            )
            for line, row in rows
        ]
    if not examples:
        raise UserError(f"{path}: no examples")
    return examples


Row = tuple[int, dict[str, Any]]  # (1-based line number, column -> value)
Table = tuple[list[str], Iterator[Row]]  # (header, rows)


def _tsv_table(handle: IO[str], path: Path) -> Table:
    lines = _numbered_lines(handle, path)
    first = next(lines, None)
    if first is None:
        raise UserError(f"{path}: empty file")
    header = first[1].split("\t")

    def rows() -> Iterator[Row]:
        for number, line in lines:
            if len(header) == 2 and header[1] in _LABEL_COLUMNS:
                # SST-2: text then label; split on the last tab so that a tab inside the
                # text stays part of the text.
                fields = line.rsplit("\t", 1)
            else:
                fields = line.split("\t")
            if len(fields) != len(header):
                raise UserError(f"{path}:{number}: expected {len(header)} tab-separated fields, found {len(fields)}")
            yield number, dict(zip(header, fields))

    return header, rows()


def _csv_table(handle: IO[str], path: Path) -> Table:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: empty file") from None
    except csv.Error as error:
        raise UserError(f"{path}:1: {error}") from None

    def rows() -> Iterator[Row]:
        blank = None  # as in _numbered_lines: blank rows are allowed only at the end
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise UserError(f"{path}:{reader.line_num}: {error}") from None
            if not fields:
                blank = blank or reader.line_num
                continue
            if blank is not None:
                raise UserError(f"{path}:{blank}: empty row")
            if len(fields) != len(header):
                raise UserError(f"{path}:{reader.line_num}: expected {len(header)} fields, found {len(fields)}")
            yield reader.line_num, dict(zip(header, fields))

    return header, rows()


def _jsonl_table(handle: IO[str], path: Path) -> Table:
    def rows() -> Iterator[Row]:
        for number, line in _numbered_lines(handle, path):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{path}:{number}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object")
            yield number, row

    all_rows = rows()
    first = next(all_rows, None)
    if first is None:
        raise UserError(f"{path}: no examples")
    # The first object's keys stand for the columns (used for detection and messages).
    return list(first[1]), itertools.chain([first], all_rows)


def _numbered_lines(handle: IO[str], path: Path) -> Iterator[tuple[int, str]]:
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


def _resolve_columns(
    path: Path, header: list[str], text: str | None, pair: str | None, label: str | None
) -> tuple[str, str | None, str]:
    available = ", ".join(repr(c) for c in header)
    for name in (text, pair, label):
        if name is not None and name not in header:
            raise UserError(f"{path}: no column {name!r} (columns: {available})")
    if text is None:
        for text_name, pair_name in _TEXT_LAYOUTS:
            if text_name in header and (pair_name is None or pair_name in header):
                text, pair = text_name, pair if pair is not None else pair_name
                break
        else:
            raise UserError(f"{path}: cannot tell which column holds the text; pass text_column (columns: {available})")
    if label is None:
        label = next((c for c in _LABEL_COLUMNS if c in header), None)
        if label is None:
            raise UserError(f"{path}: cannot tell which column holds the label; pass label_column (columns: {available})")
    return text, pair, label


def _field(path: Path, line: int, row: dict[str, Any], column: str) -> str:
    if column not in row:
        raise UserError(f"{path}:{line}: no field {column!r} (fields: {', '.join(map(repr, row))})")
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UserError(f"{path}:{line}: field {column!r} must be a string or an integer")
    value = str(value)
    if not value.strip():
        raise UserError(f"{path}:{line}: empty field {column!r}")
    return value


# ---------------------------------------------------------------------------------------
# NER


def read_conll(path: str | Path) -> list[TaggedSentence]:
    """Read CoNLL-2003 columns: one token per line, the word first and the NER tag last
    (``EU NNP B-NP B-ORG``); blank lines end sentences; ``-DOCSTART-`` lines are skipped."""
    path = Path(path)
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or fields[0] == "-DOCSTART-":
                if words:
                    sentences.append(TaggedSentence(words=words, tags=tags))
                    words, tags = [], []
                continue
            if len(fields) < 2:
                raise UserError(f"{path}:{number}: expected a word and a tag, found {line.strip()!r}")
            words.append(fields[0])
            tags.append(fields[-1])
    if words:
        sentences.append(TaggedSentence(words=words, tags=tags))
    if not sentences:
        raise UserError(f"{path}: no sentences")
    return sentences


# ---------------------------------------------------------------------------------------
# SQuAD


def read_json(path: str | Path):
    """A JSON document (.json, .gz, .xz); invalid JSON is a UserError naming the line."""
    with open_text(Path(path)) as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: invalid JSON at line {error.lineno} ({error.msg})") from None


def read_squad(path: str | Path) -> list[QAExample]:
    """Read SQuAD v1.1 JSON (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``)."""
    path = Path(path)
    document = read_json(path)
    try:
        examples = [
            QAExample(
                id=str(qa["id"]),
                question=qa["question"],
                context=paragraph["context"],
                answers=[
                    {"text": answer["text"], "answer_start": int(answer["answer_start"])}
                    for answer in qa["answers"]
                ],
            )
            for article in document["data"]
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (KeyError, TypeError) as error:
        raise UserError(f"{path}: not SQuAD v1.1 JSON (missing or malformed {error})") from None
    if not examples:
        raise UserError(f"{path}: no questions")
    return examples
