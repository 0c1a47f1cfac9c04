"""The BERT paper's three fine-tuning tasks as objects the training loop and the inference
code can run (Devlin et al. 2019, section 4 and figure 4; google-research/bert
``run_classifier.py`` and ``run_squad.py``; transformers' ``run_glue.py``, ``run_ner.py``,
``run_qa.py``).

Each task reads its file format, turns examples into features (``lmforge.tasks``), is an
``Objective`` for ``lmforge.training.loop.Trainer`` (summed losses over counted items),
turns model outputs back into predictions, scores them and writes them:

- ``classification``: the pooled [CLS] vector -> softmax over labels; cross-entropy per
  example; accuracy, F1 (binary tasks), macro F1 and Matthews correlation.
- ``ner``: a label per token, scored on each word's first sub-token; cross-entropy per
  labelled token; entity-level precision, recall and F1 (conlleval rules).
- ``qa``: start and end logits; loss (CE(start) + CE(end)) / 2 per window, as run_squad;
  n-best span search over the windows of a question; SQuAD exact match and F1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.tasks import IGNORE_INDEX, collate
from lmforge.tasks.classification import LabelMap, encode_classification
from lmforge.tasks.metrics import accuracy, entity_scores, f1_binary, f1_macro, matthews_corrcoef, squad_scores
from lmforge.tasks.ner import decode_word_tags, encode_ner
from lmforge.tasks.qa import postprocess_qa, prepare_qa_features
from lmforge.tasks.readers import (ClassificationExample, QAExample, TaggedSentence, open_text, read_classification,
                                   read_conll, read_json, read_squad)

Rows = list[Any]  # one model output per feature (probabilities, token predictions, span logits)


@dataclass(frozen=True)
class TaskOptions:
    """What reading, encoding and decoding need; the CLI flags of the same names."""

    max_length: int | None = None  # None: the task's default (128, or 384 for qa)
    text_column: str | None = None
    pair_column: str | None = None
    label_column: str | None = None
    doc_stride: int = 128  # qa: step between window starts (run_squad)
    max_query_length: int = 64  # qa: question tokens kept (run_squad)
    max_answer_length: int = 30  # qa: longest answer span in tokens (run_squad)
    n_best: int = 20  # qa: start/end candidates per window (run_squad)


def _suffix(path: Path) -> str:
    """The format suffix under a compression suffix: '.tsv' for train.tsv.xz."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".xz"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _clean(text: str) -> str:
    """One TSV field: tabs and line breaks inside a text would break the columns."""
    return " ".join(text.split())


class Task:
    """What every task shares; subclasses fill in the format- and head-specific parts."""

    name = ""
    model_task = ""  # the lmforge task model it trains (encoder.TASK_MODELS key)
    metric = ""  # the eval metric early stopping maximises
    default_max_length = 128
    predictions_file = ""

    def __init__(self, options: TaskOptions, labels: LabelMap | None = None) -> None:
        self.options = options
        self.labels = labels

    @property
    def max_length(self) -> int:
        return self.options.max_length or self.default_max_length

    # -- files ------------------------------------------------------------------------------
    def check_file(self, path: str | Path) -> Path:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        return path

    def label_names(self, examples: Sequence[Any]) -> list[str]:
        """The labels seen in ``examples`` (none for qa)."""
        return []

    # -- the Objective protocol of the training loop ----------------------------------------
    def counts(self, batch: dict) -> dict[str, int]:
        return {self.name: int(batch["input_ids"].shape[0])}

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def eval_sums(self, model, batch: dict, unpad: bool) -> dict[str, tuple[float, float]]:
        _, loss, count = self.infer_batch(model, batch, unpad)
        return {"loss": (loss, count)}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        """Per-row outputs of a batch, with the summed loss and its count (0, 0 without targets)."""
        raise NotImplementedError

    @staticmethod
    def _forward(model, batch: dict, unpad: bool):
        return model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"), unpad=unpad)

    @staticmethod
    def _lengths(batch: dict) -> list[int]:
        return batch["attention_mask"].sum(1).tolist()


class ClassificationTask(Task):
    """Single sentences (SST-2) and sentence pairs (MRPC, RTE) from the pooled [CLS] vector."""

    name = "classification"
    model_task = "sequence_classification"
    metric = "accuracy"
    predictions_file = "predictions.tsv"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if _suffix(path) not in (".tsv", ".csv", ".jsonl"):
            raise UserError(f"{path}: --task classification reads .tsv, .csv or .jsonl files, not '{_suffix(path)}'")
        return path

    def read(self, path: str | Path) -> list[ClassificationExample]:
        o = self.options
        return read_classification(self.check_file(path), o.text_column, o.pair_column, o.label_column)

    def label_names(self, examples: Sequence[ClassificationExample]) -> list[str]:
        return [example.label for example in examples]

    def encode(self, examples: Sequence[ClassificationExample], tokenizer) -> list[dict]:
        return encode_classification(examples, tokenizer, self.max_length, self.labels)

    def read_inputs(self, path: str | Path, pair: bool) -> list[ClassificationExample]:
        """Prediction input: one text per line, or ``text<TAB>pair`` lines. The label is a
        placeholder (encoding needs one); predictions never read it."""
        placeholder = self.labels.labels[0]
        examples = []
        for number, line in enumerate(_lines(super().check_file(path)), start=1):
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
        return [_without(f, "label") for f in self.encode(examples, tokenizer)]

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        logits = self._forward(model, batch, unpad)  # (B, labels)
        return {self.name: F.cross_entropy(logits.float(), batch["label"], reduction="sum")}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        logits = self._forward(model, batch, unpad).float()  # (B, labels)
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
            texts = [_clean(example.text), *([_clean(example.pair)] if pairs else [])]
            lines.append("\t".join([*texts, example.label, label, f"{probability:.6f}"]))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [f"{label}\t{probability:.6f}" for label, probability in predictions]


class NerTask(Task):
    """CoNLL-2003 style tagging; the label sits on each word's first sub-token (BERT §5.3)."""

    name = "ner"
    model_task = "token_classification"
    metric = "f1"
    predictions_file = "predictions.conll"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if _suffix(path) in (".tsv", ".csv", ".jsonl", ".json"):
            raise UserError(f"{path}: --task ner reads CoNLL column files (word ... tag per line), "
                            f"not '{_suffix(path)}'")
        return path

    def read(self, path: str | Path) -> list[TaggedSentence]:
        path = self.check_file(path)
        sentences = read_conll(path)
        for sentence in sentences:
            for tag in sentence.tags:
                if tag != "O" and (tag[:2] not in ("B-", "I-", "E-", "S-") or len(tag) < 3):
                    raise UserError(f"{path}: tag {tag!r} is not BIO (B-X, I-X or O); is this a CoNLL NER file?")
        return sentences

    def label_names(self, examples: Sequence[TaggedSentence]) -> list[str]:
        return [tag for sentence in examples for tag in sentence.tags]

    def encode(self, examples: Sequence[TaggedSentence], tokenizer) -> list[dict]:
        return encode_ner(examples, tokenizer, self.max_length, self.labels)

    def read_inputs(self, path: str | Path, pair: bool) -> list[TaggedSentence]:
        """Prediction input: one sentence per line, words split on whitespace."""
        placeholder = self.labels.labels[0]
        return [TaggedSentence(words, [placeholder] * len(words))
                for words in (line.split() for line in _lines(super().check_file(path)))]

    def encode_inputs(self, examples: Sequence[TaggedSentence], tokenizer) -> list[dict]:
        return [_without(f, "labels") for f in self.encode(examples, tokenizer)]

    def counts(self, batch: dict) -> dict[str, int]:
        return {self.name: int((batch["labels"] != IGNORE_INDEX).sum())}

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scored = labels != IGNORE_INDEX  # first sub-tokens only
        return F.cross_entropy(logits[scored].float(), labels[scored], reduction="sum")

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: self._loss(self._forward(model, batch, unpad), batch["labels"])}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        logits = self._forward(model, batch, unpad)  # (B, T, labels)
        predicted = logits.argmax(-1).cpu().numpy()
        rows = [predicted[i, :n] for i, n in enumerate(self._lengths(batch))]
        if "labels" not in batch:
            return rows, 0.0, 0
        return rows, float(self._loss(logits, batch["labels"])), int((batch["labels"] != IGNORE_INDEX).sum())

    def decode(self, examples: Sequence[TaggedSentence], features, rows: Rows) -> list[list[str]]:
        """Word-level tags per sentence."""
        return [decode_word_tags(row, feature["word_ids"], len(example.words), self.labels)
                for example, feature, row in zip(examples, features, rows)]

    def score(self, examples: Sequence[TaggedSentence], predictions) -> dict[str, float]:
        return entity_scores([e.tags for e in examples], predictions)

    def write_predictions(self, path: Path, examples, predictions) -> None:
        blocks = ["\n".join(f"{word} {gold} {tag}" for word, gold, tag in zip(e.words, e.tags, tags))
                  for e, tags in zip(examples, predictions)]
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [" ".join(f"{word}/{tag}" for word, tag in zip(e.words, tags)) for e, tags in zip(examples, predictions)]


class QaTask(Task):
    """SQuAD v1.1 span extraction over sliding windows (run_squad)."""

    name = "qa"
    model_task = "question_answering"
    metric = "f1"
    default_max_length = 384
    predictions_file = "predictions.json"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if _suffix(path) != ".json":
            raise UserError(f"{path}: --task qa reads SQuAD v1.1 .json files, not '{_suffix(path)}'")
        return path

    def read(self, path: str | Path) -> list[QAExample]:
        return read_squad(self.check_file(path))

    def encode(self, examples: Sequence[QAExample], tokenizer) -> list[dict]:
        o = self.options
        return prepare_qa_features(examples, tokenizer, self.max_length, o.doc_stride, o.max_query_length)

    def read_inputs(self, path: str | Path, pair: bool) -> list[QAExample]:
        """Prediction input: SQuAD-format JSON whose questions may have no answers."""
        path = self.check_file(path)
        document = read_json(path)
        try:
            return [QAExample(str(qa["id"]), qa["question"], paragraph["context"], [])
                    for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
        except (KeyError, TypeError) as error:
            raise UserError(f"{path}: not SQuAD JSON (missing or malformed {error})") from None

    def encode_inputs(self, examples: Sequence[QAExample], tokenizer) -> list[dict]:
        return [_without(f, "start_position", "end_position") for f in self.encode(examples, tokenizer)]

    def _loss(self, start: torch.Tensor, end: torch.Tensor, batch: dict) -> torch.Tensor:
        # run_squad: the mean of the start and end cross-entropies.
        return (F.cross_entropy(start.float(), batch["start_position"], reduction="sum")
                + F.cross_entropy(end.float(), batch["end_position"], reduction="sum")) / 2

    def loss_sums(self, model, batch: dict, unpad: bool) -> dict[str, torch.Tensor]:
        return {self.name: self._loss(*self._forward(model, batch, unpad), batch)}

    def infer_batch(self, model, batch: dict, unpad: bool) -> tuple[Rows, float, int]:
        start, end = self._forward(model, batch, unpad)  # (B, T) each
        starts, ends = start.float().cpu().numpy(), end.float().cpu().numpy()
        rows = [(starts[i, :n], ends[i, :n]) for i, n in enumerate(self._lengths(batch))]
        if "start_position" not in batch:
            return rows, 0.0, 0
        return rows, float(self._loss(start, end, batch)), len(rows)

    def decode(self, examples: Sequence[QAExample], features, rows: Rows) -> dict[str, str]:
        """Answer text per question id."""
        return postprocess_qa(examples, features, [r[0] for r in rows], [r[1] for r in rows],
                              n_best=self.options.n_best, max_answer_length=self.options.max_answer_length)

    def score(self, examples: Sequence[QAExample], predictions) -> dict[str, float]:
        return squad_scores(examples, predictions)

    def write_predictions(self, path: Path, examples, predictions) -> None:
        path.write_text(json.dumps(predictions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [f"{e.id}\t{_clean(predictions[e.id])}" for e in examples]


TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (ClassificationTask, NerTask, QaTask)}


def make_task(name: str, options: TaskOptions, labels: LabelMap | None = None) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name](options, labels)


def task_for_model(model_task: str) -> str:
    """The fine-tuning task name of a model's head ('sequence_classification' -> 'classification')."""
    for name, cls in TASKS.items():
        if cls.model_task == model_task:
            return name
    raise UserError(f"a {model_task} model is not fine-tuned for a task; known: {', '.join(TASKS)}")


def _lines(path: Path) -> list[str]:
    with open_text(path) as handle:
        return handle.read().splitlines()


def _without(feature: dict, *keys: str) -> dict:
    return {k: v for k, v in feature.items() if k not in keys}


def batched_outputs(task: Task, model, features: Sequence[dict], pad_id: int, batch_size: int,
                    device: torch.device) -> tuple[Rows, float | None]:
    """Model outputs for every feature (in input order) and the mean loss when the features
    carry targets. Batches are cut from the features sorted by length, longest first, so
    padding stays small and a memory peak shows at once; ``unpad`` skips what is left."""
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
    rows: Rows = [None] * len(features)
    loss, count = 0.0, 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast:
        for start in range(0, len(features), batch_size):
            index = order[start:start + batch_size]
            batch = collate([features[i] for i in index], pad_id)
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            values, batch_loss, batch_count = task.infer_batch(model, batch, unpad=True)
            for i, value in zip(index, values):
                rows[i] = value
            loss, count = loss + batch_loss, count + batch_count
    model.train(was_training)
    return rows, (loss / count if count else None)
