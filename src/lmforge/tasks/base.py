"""What the fine-tuning tasks share (BERT paper, section 4; Devlin et al. 2019): the ``Task``
base class, its options and the label map (the tokenizer handling of encoding is in
``lmforge.tasks.encoding``).

A ``Task`` is the ``lmforge.objectives.base.Objective`` of a fine-tuning run: the training loop
(``lmforge.training.loop.Trainer``) collates its features and sums its losses exactly as it
does a pretraining objective's. Features are plain dicts of Python lists, cheap to build and inspect; the one
``collate`` turns a list of them into tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lmforge.errors import UserError
from lmforge.objectives.base import Objective

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
    symmetric_pairs: bool = False  # decoder pair classification: both orders, states added (GPT similarity)
    lm_loss_weight: float = 0.0  # decoder tasks: GPT's auxiliary LM loss weight (the paper: 0.5); 0: off
    # seq2seq (lmforge.tasks.seq2seq)
    source_column: str | None = None  # JSONL source field (None: "source")
    target_column: str | None = None  # JSONL target field (None: "target")
    max_target_length: int | None = None  # target tokens kept (None: 128, at most the decoder's positions)
    label_smoothing: float = 0.0  # transformers' label_smoothing_factor (fairseq/BART: 0.1)
    metric: str | None = None  # rouge, bleu or accuracy (None: accuracy with label_words, else rouge)
    num_beams: int | None = None  # beam width of evaluation by generation (None: the model's saved one, or 4)
    source_prefix: str | None = None  # T5 task prefix put before every source ("sst2 sentence: ")
    label_words: str | None = None  # T5 text-to-text classification: "negative,positive" or "0=negative,..."


class LabelMap:
    """String labels <-> ids 0..n-1 in a stable, sorted order (numerically when every label is
    an integer, so "2" < "10"), saved as the ``id2label``/``label2id`` pair that Hugging Face
    configs also carry. Classification labels and NER tags both use it."""

    def __init__(self, labels: Sequence[str]) -> None:
        if len(set(labels)) != len(labels):
            raise UserError(f"duplicate labels in {list(labels)}")
        self.labels: list[str] = list(labels)
        self._ids = {label: index for index, label in enumerate(self.labels)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelMap:
        """The sorted set of the labels seen (e.g. all training labels or tags)."""
        unique = set(labels)
        if not unique:
            raise UserError("no labels to build a label map from")
        if all(_is_int(label) for label in unique):
            return cls(sorted(unique, key=int))
        return cls(sorted(unique))

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> LabelMap:
        """Inverse of ``to_dict``; ``id2label`` keys may be ints or strings (JSON)."""
        id2label = {int(index): str(label) for index, label in saved["id2label"].items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise UserError(f"label ids must be 0..{len(id2label) - 1}, got {sorted(id2label)}")
        return cls([id2label[index] for index in range(len(id2label))])

    def to_dict(self) -> dict[str, dict]:
        return {
            "id2label": dict(enumerate(self.labels)),
            "label2id": dict(self._ids),
        }

    def __len__(self) -> int:
        return len(self.labels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self.labels == other.labels

    def __repr__(self) -> str:
        return f"LabelMap({self.labels})"

    def id_of(self, label: str) -> int:
        try:
            return self._ids[label]
        except KeyError:
            raise UserError(f"unknown label {label!r} (known: {', '.join(self.labels)})") from None

    def label_of(self, index: int) -> str:
        return self.labels[index]


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


class Task(Objective):
    """A fine-tuning task: what the training loop trains (``Objective``: collation and summed
    losses) plus reading, encoding, decoding, scoring and writing. Subclasses fill in the
    format- and head-specific parts.

    ``labels`` (the label map) and ``pad_id`` (the tokenizer's) are set once the data and
    the checkpoint are known.
    """

    name = ""
    model_task = ""  # the lmforge task model it trains (encoder.TASK_MODELS key)
    has_labels = True  # a label map names the head's outputs (not so for span QA or multiple choice)
    metric = ""  # the eval metric early stopping maximises
    default_max_length = 128
    predictions_file = ""

    def __init__(self, options: TaskOptions, labels: LabelMap | None = None, pad_id: int = 0) -> None:
        self.options = options
        self.labels = labels
        self.pad_id = pad_id
        self.gpt = None  # GPT's start/delimiter/extract tokens once configured for a decoder

    def configure_for(self, model, tokenizer) -> None:
        """Adapt the input layout to the checkpoint: on a decoder, GPT's transformations
        (``lmforge.tasks.gpt_inputs``) with the tokenizer's tokens; options only a decoder
        supports are refused on an encoder."""
        from lmforge.tasks.gpt_inputs import GptTokens

        decoder = model.config.architecture == "decoder"
        if not decoder and (self.options.symmetric_pairs or self.options.lm_loss_weight):
            raise UserError("symmetric_pairs and lm_loss_weight are GPT's decoder fine-tuning options; "
                            f"this checkpoint is an {model.config.architecture}")
        if decoder and self.options.lm_loss_weight and not model.config.tie_word_embeddings:
            # The fine-tuned model keeps no output projection of its own (LLaMA's lm_head is untied).
            raise UserError("lm_loss_weight needs a decoder whose output projection is tied to its token "
                            "embeddings (GPT, GPT-2); this checkpoint's is untied (LLaMA-style)")
        self.gpt = GptTokens.from_tokenizer(tokenizer) if decoder else None
        if self.gpt is not None and self.pad_id is None:
            self.pad_id = self.gpt.extract  # GPT-2 has no padding token; the mask hides the fill

    @property
    def max_length(self) -> int:
        return self.options.max_length or self.default_max_length

    # -- files ------------------------------------------------------------------------------
    def check_file(self, path: str | Path) -> Path:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        return path

    def read(self, path: str | Path) -> list:
        """The labelled examples of a file."""
        raise NotImplementedError

    def read_inputs(self, path: str | Path, pair: bool) -> list:
        """Examples to predict on, from raw input (their targets are placeholders)."""
        raise NotImplementedError

    def label_names(self, examples: Sequence[Any]) -> list[str]:
        """The labels seen in ``examples`` (none for qa)."""
        return [label for example in examples for label in self.labels_of(example)]

    def labels_of(self, example: Any) -> set[str]:
        """The labels one example carries (none for qa)."""
        return set()

    def labels_outside(self, examples: list, known: set[str]) -> list[tuple[str, int]]:
        """Labels the examples carry that ``known`` lacks, with how many examples carry each,
        most frequent first."""
        counts: dict[str, int] = {}
        for example in examples:
            for label in self.labels_of(example) - known:
                counts[label] = counts.get(label, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def trainable(self, examples: list) -> list:
        """The examples training can learn from (qa leaves out questions whose answers were
        not found in their context; the reader has said how many)."""
        return examples

    def encode(self, examples: Sequence[Any], tokenizer) -> list[dict]:
        """Features (``lmforge.objectives.base.collate`` keys, unpadded) with their targets."""
        raise NotImplementedError

    def encode_inputs(self, examples: Sequence[Any], tokenizer) -> list[dict]:
        """Features without targets, for prediction."""
        raise NotImplementedError

    def decode(self, examples, features, rows: Rows):
        """Predictions from the per-feature model outputs of ``infer_batch``."""
        raise NotImplementedError

    def score(self, examples, predictions) -> dict[str, float]:
        raise NotImplementedError

    def write_predictions(self, path: Path, examples, predictions) -> None:
        raise NotImplementedError

    def format_predictions(self, examples, predictions) -> list[str]:
        """One line per example, for ``lmforge predict``."""
        raise NotImplementedError

    # -- the Objective protocol of the training loop (collate comes from Objective) --------
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
