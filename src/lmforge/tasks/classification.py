"""Sentence and sentence-pair classification (BERT paper, section 4.1 and figure 4a/b): the
reader, the encoding, the metrics and the ``ClassificationTask``.

Reading: TSV, CSV or JSONL with a header (optionally .gz/.xz). The GLUE layouts (as written by
GLUE's ``download_glue_data.py``) are recognised by their headers: SST-2 ``sentence, label``;
MRPC ``Quality, #1 ID, #2 ID, #1 String, #2 String``; RTE/WNLI ``index, sentence1, sentence2,
label``; QNLI ``index, question, sentence, label``; QQP ``..., question1, question2,
is_duplicate``. GLUE TSV files are not CSV-quoted (MRPC sentences contain bare ``"``), so TSV
lines are split on tabs and nothing else.

Encoding: a single sentence is ``[CLS] A [SEP]``, a pair ``[CLS] A [SEP] B [SEP]`` with segment
ids 0 then 1 (the tokenizer's template decides; RoBERTa's gives ``<s> A </s></s> B </s>``).
The classifier reads the final vector of the first token. Over-long pairs are cut one token
at a time from the longer side, as ``_truncate_seq_pair`` in google-research/bert's
``run_classifier.py`` (the tokenizers library's ``longest_first`` strategy). Labels become ids
through ``LabelMap`` (``lmforge.tasks.base``).

Metrics (GLUE, Wang et al. 2018): accuracy; F1 of the positive class (MRPC, QQP); macro F1;
Matthews correlation (CoLA), in the multi-class form of Gorodkin (2004) that scikit-learn
computes, which is the usual binary formula for two classes.

The task trains cross-entropy per example on the pooled [CLS] vector (transformers'
``run_glue.py``). On a decoder checkpoint (GPT, GPT-2, LLaMA) the inputs follow GPT's
transformations instead and the classifier reads the last token (``lmforge.tasks.gpt_inputs``):
``start text extract``, ``start premise delimiter hypothesis extract``, both orders added for
similarity (``symmetric_pairs``), and optionally GPT's auxiliary LM loss (``lm_loss_weight``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.tasks import gpt_inputs
from lmforge.tasks.base import LabelMap, Rows, Task
from lmforge.tasks.encoding import (
    backend_of,
    check_max_length,
    encode_in_chunks,
    one_line,
    truncating,
    without_keys,
)
from lmforge.tasks.io import format_suffix, numbered_lines, open_text, read_lines
from lmforge.tasks.metrics import f1_from_counts, paired

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


# ---------------------------------------------------------------------------------------
# Reading


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
    kind = format_suffix(path).lstrip(".")
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
    lines = numbered_lines(handle, path)
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
        for number, line in numbered_lines(handle, path):
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
# Encoding


def encode_classification(
    examples: Sequence[ClassificationExample], tokenizer: Any, max_length: int, label_map: LabelMap
) -> list[dict[str, Any]]:
    """Features ``{"input_ids", "token_type_ids", "label"}``, unpadded (see ``lmforge.objectives.base.collate``).

    ``tokenizer`` is an ``lmforge.tokenization.Tokenizer`` or a raw ``tokenizers.Tokenizer``.
    """
    backend = backend_of(tokenizer)
    is_pair = [example.pair is not None for example in examples]
    if any(is_pair) and not all(is_pair):
        raise UserError("mixed single sentences and sentence pairs in one dataset")
    check_max_length(backend, max_length, pair=bool(examples) and is_pair[0])
    inputs = [(e.text, e.pair) if e.pair is not None else e.text for e in examples]
    with truncating(backend, max_length, strategy="longest_first"):
        encodings = encode_in_chunks(backend, inputs, "encoding")
    return [
        {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "label": label_map.id_of(example.label)}
        for example, enc in zip(examples, encodings)
    ]


def encode_gpt_classification(examples: Sequence[ClassificationExample], tokenizer: Any, max_length: int,
                              label_map: LabelMap, tokens: "gpt_inputs.GptTokens",
                              symmetric: bool) -> list[dict[str, Any]]:
    """Features in GPT's layout: ``start A [delimiter B] extract``; with ``symmetric`` pairs also
    ``swapped_ids``, the pair in the other order (GPT's similarity)."""
    is_pair = [example.pair is not None for example in examples]
    if any(is_pair) and not all(is_pair):
        raise UserError("mixed single sentences and sentence pairs in one dataset")
    if symmetric and examples and not is_pair[0]:
        raise UserError("symmetric_pairs needs sentence pairs (a pair column)")
    firsts = gpt_inputs.plain_ids(tokenizer, [e.text for e in examples])
    seconds = gpt_inputs.plain_ids(tokenizer, [e.pair for e in examples]) if examples and is_pair[0] else \
        [None] * len(examples)
    features = []
    for example, first, second in zip(examples, firsts, seconds):
        feature = {"input_ids": gpt_inputs.transform(first, second, tokens, max_length),
                   "label": label_map.id_of(example.label)}
        if symmetric:
            feature["swapped_ids"] = gpt_inputs.transform(second, first, tokens, max_length)
        features.append(feature)
    return features


# ---------------------------------------------------------------------------------------
# Metrics


def accuracy(gold: Sequence, predicted: Sequence) -> float:
    gold, predicted = paired(gold, predicted)
    return sum(g == p for g, p in zip(gold, predicted)) / len(gold)


def f1_binary(gold: Sequence, predicted: Sequence, positive: Any = 1) -> float:
    """F1 of the ``positive`` class (GLUE's F1 for MRPC and QQP, positive = paraphrase = 1)."""
    gold, predicted = paired(gold, predicted)
    true_positives = sum(g == p == positive for g, p in zip(gold, predicted))
    return f1_from_counts(true_positives, gold.count(positive), predicted.count(positive))


def f1_macro(gold: Sequence, predicted: Sequence) -> float:
    """Unweighted mean of the per-class F1 over every class seen in gold or predictions."""
    gold, predicted = paired(gold, predicted)
    classes = set(gold) | set(predicted)
    return sum(f1_binary(gold, predicted, positive=c) for c in classes) / len(classes)


def matthews_corrcoef(gold: Sequence, predicted: Sequence) -> float:
    """(c*s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2)(s^2 - sum_k t_k^2)), with s samples,
    c correct, t_k gold and p_k predicted counts of class k; 0 when undefined (one class)."""
    gold, predicted = paired(gold, predicted)
    samples = len(gold)
    correct = sum(g == p for g, p in zip(gold, predicted))
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    covariance = correct * samples - sum(predicted_counts[k] * gold_counts[k] for k in gold_counts)
    predicted_var = samples**2 - sum(n * n for n in predicted_counts.values())
    gold_var = samples**2 - sum(n * n for n in gold_counts.values())
    if predicted_var == 0 or gold_var == 0:
        return 0.0
    return covariance / math.sqrt(predicted_var * gold_var)


# ---------------------------------------------------------------------------------------
# The task


class ClassificationTask(Task):
    """Single sentences (SST-2) and sentence pairs (MRPC, RTE) from the pooled [CLS] vector."""

    name = "classification"
    model_task = "sequence_classification"
    metric = "accuracy"
    predictions_file = "predictions.tsv"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if format_suffix(path) not in (".tsv", ".csv", ".jsonl"):
            raise UserError(f"{path}: --task classification reads .tsv, .csv or .jsonl files, not '{format_suffix(path)}'")
        return path

    def read(self, path: str | Path) -> list[ClassificationExample]:
        o = self.options
        return read_classification(self.check_file(path), o.text_column, o.pair_column, o.label_column)

    def labels_of(self, example: ClassificationExample) -> set[str]:
        return {example.label}

    def encode(self, examples: Sequence[ClassificationExample], tokenizer) -> list[dict]:
        if self.gpt is None:
            return encode_classification(examples, tokenizer, self.max_length, self.labels)
        return encode_gpt_classification(examples, tokenizer, self.max_length, self.labels, self.gpt,
                                         self.options.symmetric_pairs)

    def read_inputs(self, path: str | Path, pair: bool) -> list[ClassificationExample]:
        """Prediction input: one text per line, or ``text<TAB>pair`` lines. The label is a
        placeholder (encoding needs one); predictions never read it."""
        placeholder = self.labels.labels[0]
        examples = []
        for number, line in enumerate(read_lines(super().check_file(path)), start=1):
            if pair:
                fields = line.split("\t")
                if len(fields) != 2:
                    raise UserError(f"{path}:{number}: --pair needs 'text<TAB>second text', "
                                    f"found {len(fields)} field(s)")
                examples.append(ClassificationExample(fields[0], fields[1], placeholder))
            else:
                examples.append(ClassificationExample(line, None, placeholder))
        return examples

    def encode_inputs(self, examples: Sequence[ClassificationExample], tokenizer) -> list[dict]:
        return [without_keys(f, "label") for f in self.encode(examples, tokenizer)]

    # -- GPT's transformations on decoder checkpoints (lmforge.tasks.gpt_inputs) ---------------
    def collate(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if "swapped_ids" in features[0]:
            return gpt_inputs.collate_orders(super().collate, features)
        return super().collate(features)

    def counts(self, batch: dict) -> dict[str, int]:
        counts = {self.name: int(batch["label"].numel())}
        if self.gpt is not None and self.options.lm_loss_weight:
            counts["lm"] = gpt_inputs.lm_target_count(batch)
        return counts

    def _logits(self, model, batch: dict, unpad: bool, lm_loss: bool = False):
        if self.gpt is None:
            return self._forward(model, batch, unpad), None
        pooled, lm = gpt_inputs.final_states(model, batch, unpad, lm_loss)
        return model.classifier(pooled), lm

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        weight = self.options.lm_loss_weight if self.gpt is not None else 0.0
        logits, lm = self._logits(model, batch, unpad, lm_loss=bool(weight))  # (B, labels)
        sums = {self.name: F.cross_entropy(logits.float(), batch["label"], reduction="sum")}
        if lm is not None:
            sums["lm"] = weight * lm  # GPT's L3 = L2 + lambda L1, each a mean over its own items
        return sums

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        logits = self._logits(model, batch, unpad)[0].float()  # (B, labels)
        rows = list(logits.softmax(-1).cpu().numpy())
        if "label" not in batch:
            return rows, 0.0, 0
        return rows, float(F.cross_entropy(logits, batch["label"], reduction="sum")), len(rows)

    def decode(self, examples, features, rows: Rows) -> list[tuple[str, float]]:
        """(label, probability) per example."""
        return [(self.labels.label_of(int(p.argmax())), float(p.max())) for p in rows]

    def score(self, examples: Sequence[ClassificationExample], predictions) -> dict[str, float]:
        gold = [self.labels.id_of(e.label) for e in examples]
        predicted = [self.labels.id_of(label) for label, _ in predictions]
        metrics = {"accuracy": accuracy(gold, predicted)}
        if len(self.labels) == 2:
            # GLUE's F1 (MRPC, QQP) is that of the positive class "1"; other binary label
            # sets take the second label (sorted order) as positive.
            positive = self.labels.id_of("1") if "1" in self.labels.labels else 1
            metrics["f1"] = f1_binary(gold, predicted, positive=positive)
        metrics["f1_macro"] = f1_macro(gold, predicted)
        metrics["matthews_correlation"] = matthews_corrcoef(gold, predicted)
        return metrics

    def write_predictions(self, path: Path, examples, predictions) -> None:
        pairs = examples[0].pair is not None
        header = ["text", *(["pair"] if pairs else []), "gold", "predicted", "probability"]
        lines = ["\t".join(header)]
        for example, (label, probability) in zip(examples, predictions):
            texts = [one_line(example.text), *([one_line(example.pair)] if pairs else [])]
            lines.append("\t".join([*texts, example.label, label, f"{probability:.6f}"]))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [f"{label}\t{probability:.6f}" for label, probability in predictions]
