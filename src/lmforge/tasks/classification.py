"""Sequence and sequence-pair classification features (BERT paper, section 4.1 and figure 4a/b).

A single sentence is encoded ``[CLS] A [SEP]``, a pair ``[CLS] A [SEP] B [SEP]`` with segment
ids 0 then 1 (the tokenizer's template decides; RoBERTa's gives ``<s> A </s></s> B </s>``).
The classifier reads the final vector of the first token. Over-long pairs are cut one token
at a time from the longer side, as ``_truncate_seq_pair`` in google-research/bert's
``run_classifier.py`` (the tokenizers library's ``longest_first`` strategy).

``LabelMap`` fixes the label ids: labels sorted (numerically when every label is an
integer, so "2" < "10"), saved as the ``id2label``/``label2id`` pair that Hugging Face
configs also carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lmforge.errors import UserError
from lmforge.tasks import backend_of, check_max_length, truncating
from lmforge.tasks.readers import ClassificationExample


class LabelMap:
    """String labels <-> ids 0..n-1 in a stable, sorted order."""

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


def encode_classification(
    examples: Sequence[ClassificationExample], tokenizer: Any, max_length: int, label_map: LabelMap
) -> list[dict[str, Any]]:
    """Features ``{"input_ids", "token_type_ids", "label"}``, unpadded (see ``tasks.collate``).

    ``tokenizer`` is an ``lmforge.tokenization.Tokenizer`` or a raw ``tokenizers.Tokenizer``.
    """
    backend = backend_of(tokenizer)
    is_pair = [example.pair is not None for example in examples]
    if any(is_pair) and not all(is_pair):
        raise UserError("mixed single sentences and sentence pairs in one dataset")
    check_max_length(backend, max_length, pair=bool(examples) and is_pair[0])
    inputs = [(e.text, e.pair) if e.pair is not None else e.text for e in examples]
    with truncating(backend, max_length, strategy="longest_first"):
        encodings = backend.encode_batch(inputs)
    return [
        {"input_ids": enc.ids, "token_type_ids": enc.type_ids, "label": label_map.id_of(example.label)}
        for example, enc in zip(examples, encodings)
    ]
