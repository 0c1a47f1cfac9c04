"""Named-entity recognition as token tagging (BERT paper, section 5.3 and figure 4d): the
CoNLL-2003 reader, the encoding, entity-level scoring and the ``NerTask``.

Reading: the CoNLL-2003 column format, one token per line with the word first and the NER tag
last; blank lines end sentences.

Encoding: the words of a sentence are given to the tokenizer already split
(``is_pretokenized``), so each sub-token knows its word. Following the paper, a word's label
goes on its first sub-token and is predicted there; the other sub-tokens and the special
tokens carry ``IGNORE_INDEX`` (-100) and add nothing to the loss. At prediction time each
word takes the tag predicted on its first sub-token; words cut off by ``max_length`` get
``"O"``, so that the word-level output always has one tag per input word and scoring stays
honest about them. Byte-level BPE tokenizers (RoBERTa) need ``add_prefix_space=True`` to
encode pre-split words.

Scoring: entity-level micro precision/recall/F1 with the chunk rules of the shared task's
``conlleval`` script (as ``seqeval`` in its default mode): an entity is a maximal run of tags
of one type that starts at B-/S-, or at I-/E- after O or another type, and it counts only
when its type and both ends match.

The task trains cross-entropy per labelled token (transformers' ``run_ner.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.tasks.base import LabelMap, Rows, Task, backend_of, check_max_length, truncating, without_keys
from lmforge.tasks.io import format_suffix, open_text, read_lines
from lmforge.tasks.metrics import f1_from_counts

OUTSIDE = "O"


@dataclass(frozen=True)
class TaggedSentence:
    words: list[str]
    tags: list[str]


# ---------------------------------------------------------------------------------------
# Reading


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
# Encoding and decoding


def align_labels(word_ids: Sequence[int | None], word_tags: Sequence[str], label_map: LabelMap) -> list[int]:
    """One label id per token: the word's tag on its first sub-token, -100 elsewhere."""
    labels = []
    previous = None
    for word in word_ids:
        if word is None or word == previous:
            labels.append(IGNORE_INDEX)
        else:
            labels.append(label_map.id_of(word_tags[word]))
        previous = word
    return labels


def encode_ner(
    sentences: Sequence[TaggedSentence], tokenizer: Any, max_length: int, label_map: LabelMap
) -> list[dict[str, Any]]:
    """Features ``{"input_ids", "token_type_ids", "labels", "word_ids"}``, unpadded.

    ``word_ids`` (None for special tokens) is kept for ``decode_word_tags``.
    """
    backend = backend_of(tokenizer)
    check_max_length(backend, max_length, pair=False)
    with truncating(backend, max_length):
        encodings = backend.encode_batch([sentence.words for sentence in sentences], is_pretokenized=True)
    features = []
    for sentence, enc in zip(sentences, encodings):
        word_ids = enc.word_ids
        features.append(
            {
                "input_ids": enc.ids,
                "token_type_ids": enc.type_ids,
                "labels": align_labels(word_ids, sentence.tags, label_map),
                "word_ids": word_ids,
            }
        )
    return features


def decode_word_tags(
    token_predictions: Sequence[int], word_ids: Sequence[int | None], num_words: int, label_map: LabelMap
) -> list[str]:
    """Word-level tags from token-level predicted ids: each word takes its first sub-token's
    tag; words with no token (truncated away) get "O".

    ``token_predictions`` may be longer than ``word_ids`` (a padded batch row); the tail is
    ignored.
    """
    tags = [OUTSIDE] * num_words
    seen = set()
    for word, prediction in zip(word_ids, token_predictions):
        if word is not None and word not in seen:
            seen.add(word)
            tags[word] = label_map.label_of(int(prediction))
    return tags


# ---------------------------------------------------------------------------------------
# Scoring (conlleval)


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, _, kind = tag.partition("-")
    if prefix not in ("B", "I", "E", "S") or not kind:
        raise UserError(f"tag {tag!r} is not in BIO/IOBES form (B-X, I-X, E-X, S-X or O)")
    return prefix, kind


def _ends_chunk(prev_tag: str, tag: str, prev_kind: str, kind: str) -> bool:
    """conlleval's endOfChunk: does the chunk open at the previous token end before this one?"""
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I"):
        return tag in ("B", "S", "O") or kind != prev_kind
    return False


def _starts_chunk(prev_tag: str, tag: str, prev_kind: str, kind: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    if tag in ("B", "S"):
        return True
    if tag in ("I", "E"):
        return prev_tag in ("E", "S", "O") or kind != prev_kind
    return False


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The entity chunks of one sentence as (type, first token, last token)."""
    chunks = set()
    prev_tag, prev_kind, begin = "O", "", 0
    # A trailing "O" closes a chunk still open at the end of the sentence.
    for position, tag in enumerate([*tags, "O"]):
        prefix, kind = _split_tag(tag)
        if _ends_chunk(prev_tag, prefix, prev_kind, kind):
            chunks.add((prev_kind, begin, position - 1))
        if _starts_chunk(prev_tag, prefix, prev_kind, kind):
            begin = position
        prev_tag, prev_kind = prefix, kind
    return chunks


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over the entities of all sentences."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    true_positives = gold_count = predicted_count = 0
    for index, (gold_tags, predicted_tags) in enumerate(zip(gold, predicted)):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(f"sentence {index}: {len(gold_tags)} gold tags but {len(predicted_tags)} predicted")
        gold_chunks, predicted_chunks = entities(gold_tags), entities(predicted_tags)
        true_positives += len(gold_chunks & predicted_chunks)
        gold_count += len(gold_chunks)
        predicted_count += len(predicted_chunks)
    return {
        "precision": true_positives / predicted_count if predicted_count else 0.0,
        "recall": true_positives / gold_count if gold_count else 0.0,
        "f1": f1_from_counts(true_positives, gold_count, predicted_count),
    }


# ---------------------------------------------------------------------------------------
# The task


class NerTask(Task):
    """CoNLL-2003 style tagging; the label sits on each word's first sub-token (BERT §5.3)."""

    name = "ner"
    model_task = "token_classification"
    metric = "f1"
    predictions_file = "predictions.conll"

    def check_file(self, path: str | Path) -> Path:
        path = super().check_file(path)
        if format_suffix(path) in (".tsv", ".csv", ".jsonl", ".json"):
            raise UserError(f"{path}: --task ner reads CoNLL column files (word ... tag per line), "
                            f"not '{format_suffix(path)}'")
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
                for words in (line.split() for line in read_lines(super().check_file(path)))]

    def encode_inputs(self, examples: Sequence[TaggedSentence], tokenizer) -> list[dict]:
        return [without_keys(f, "labels") for f in self.encode(examples, tokenizer)]

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
