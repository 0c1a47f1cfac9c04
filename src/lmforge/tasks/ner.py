"""Named-entity recognition as token tagging (BERT paper, section 5.3 and figure 4d): the
CoNLL-2003 reader, the encoding, entity-level scoring and the ``NerTask``.

Reading: the CoNLL-2003 column format, one token per line with the word first and the NER tag
last; blank lines end sentences.

Encoding: the words of a sentence are given to the tokenizer already split
(``is_pretokenized``), so each sub-token knows its word. Following the paper, a word's label
goes on its first sub-token and is predicted there; the other sub-tokens and the special
tokens carry ``IGNORE_INDEX`` (-100) and add nothing to the loss. At prediction time each
word takes the tag predicted on its first sub-token. A sentence longer than ``max_length``
is covered by overlapping windows of whole words, as run_squad covers a long context; each
word is labelled and read in the window where it has the most context (run_squad's
``_check_is_max_context``), so every word gets a prediction. Byte-level BPE tokenizers
(RoBERTa) encode each pre-split word with its leading space (``add_prefix_space``), as the
word appears mid-sentence (``tasks.base.pre_split_words``).

Scoring: entity-level micro precision/recall/F1 with the chunk rules of the shared task's
``conlleval`` script (as ``seqeval`` in its default mode): an entity is a maximal run of tags
of one type that starts at B-/S-, or at I-/E- after O or another type, and it counts only
when its type and both ends match.

The task trains cross-entropy per labelled token (transformers' ``run_ner.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.tasks.base import LabelMap, Rows, Task
from lmforge.tasks.encoding import (
    backend_of,
    check_max_length,
    encode_in_chunks,
    pre_split_words,
    truncating,
    without_keys,
)
from lmforge.tasks.io import format_suffix, open_text, read_lines
from lmforge.tasks.metrics import f1_from_counts

OUTSIDE = "O"


@dataclass(frozen=True)
class TaggedSentence:
    words: list[str]
    tags: list[str]


# ---------------------------------------------------------------------------------------
# Reading


# The phrase types of CoNLL-2000/2003 chunk tags (B-NP, I-VP, ...): found alone in the last
# column, the file lacks its NER column and the model would learn chunks as entities.
CHUNK_TYPES = frozenset({"NP", "VP", "PP", "ADVP", "ADJP", "SBAR", "PRT", "INTJ", "CONJP", "LST", "UCP"})
_PREFIXES = ("B", "I", "E", "S")  # IOB1, IOB2, IO and IOBES tags all use these
_LAYOUT = "CoNLL-2003 NER files have 4 columns: word, POS tag, chunk tag, NER tag"


def read_conll(path: str | Path) -> list[TaggedSentence]:
    """Read CoNLL-2003 columns: one token per line, the word first and the NER tag last
    (``EU NNP B-NP B-ORG``); blank lines end sentences; ``-DOCSTART-`` lines are skipped.

    Every token line must have the file's number of columns, and the last column must hold
    entity tags: ``O`` or PREFIX-TYPE with a B/I/E/S prefix. A last column of chunk tags
    (B-NP, I-VP: a file without its NER column) or POS tags is refused, naming the column.
    """
    path = Path(path)
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    columns = first_line = 0
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
            if not columns:
                columns, first_line = len(fields), number
            elif len(fields) != columns:
                raise UserError(f"{path}:{number}: {len(fields)} columns, but line {first_line} has {columns}; "
                                "every token line needs the same columns (word first, NER tag last)")
            tag = fields[-1]
            if tag != OUTSIDE and not _is_entity_tag(tag):
                raise UserError(f"{path}:{number}: the last of its {columns} columns holds {tag[:20]!r}, not an "
                                f"entity tag (O, B-TYPE, I-TYPE, E-TYPE or S-TYPE); {_LAYOUT}")
            words.append(fields[0])
            tags.append(tag)
    if words:
        sentences.append(TaggedSentence(words=words, tags=tags))
    if not sentences:
        raise UserError(f"{path}: no sentences")
    kinds = {tag[2:] for sentence in sentences for tag in sentence.tags if tag != OUTSIDE}
    if kinds and kinds <= CHUNK_TYPES:
        shown = ", ".join(f"B-{kind}" for kind in sorted(kinds)[:3])
        raise UserError(f"{path}: the last of its {columns} columns holds chunk tags ({shown}), not entity tags: "
                        f"is the NER column missing? {_LAYOUT}")
    return sentences


def _is_entity_tag(tag: str) -> bool:
    prefix, dash, kind = tag.partition("-")
    return prefix in _PREFIXES and bool(dash) and bool(kind)


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


def word_windows(counts: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word ranges ``[first, end)`` covering a sentence whose words have ``counts`` sub-tokens.

    Each window holds at most ``budget`` tokens (a single longer word alone, later cut), and
    the next starts at the first word at least ``budget // 2`` tokens after this one's start:
    windows overlap by about half, as run_squad's doc_stride, and there is never a gap.
    """
    if not len(counts):
        return [(0, 0)]
    starts = np.concatenate([[0], np.cumsum(counts)])  # token offset of each word
    stride = max(1, budget // 2)
    windows, first = [], 0
    while True:
        end = first + 1
        while end < len(counts) and starts[end + 1] - starts[first] <= budget:
            end += 1
        windows.append((first, end))
        if end >= len(counts):
            return windows
        following = first + 1
        while following < end and starts[following] - starts[first] < stride:
            following += 1
        first = following


def word_owners(windows: Sequence[Sequence[int | None]]) -> dict[int, tuple[int, int]]:
    """For the ``word_ids`` of each window of one sentence: every word's (window, position of
    its first sub-token) in the window where it has the most context, min(tokens left, tokens
    right) + 0.01 * window length, the earlier window on a tie (run_squad's
    ``_check_is_max_context``)."""
    best: dict[int, tuple[float, int, int]] = {}
    for window, word_ids in enumerate(windows):
        context = [position for position, word in enumerate(word_ids) if word is not None]
        if not context:
            continue
        low, high = context[0], context[-1]
        seen = set()
        for position, word in enumerate(word_ids):
            if word is None or word in seen:
                continue
            seen.add(word)
            score = min(position - low, high - position) + 0.01 * (high - low + 1)
            if word not in best or score > best[word][0]:
                best[word] = (score, window, position)
    return {word: (window, position) for word, (_, window, position) in best.items()}


def encode_ner(
    sentences: Sequence[TaggedSentence], tokenizer: Any, max_length: int, label_map: LabelMap
) -> list[dict[str, Any]]:
    """Features ``{"input_ids", "token_type_ids", "labels", "word_ids", "example_index"}``,
    unpadded, in sentence order: one per sentence that fits in ``max_length`` tokens, and
    overlapping windows of whole words (``word_windows``) for a longer one. A word's label
    goes on its first sub-token in the window where it has the most context
    (``word_owners``), where decoding reads its prediction; every word is tagged.

    ``word_ids`` (the sentence's word index per token, None for special tokens) is kept for
    decoding.
    """
    backend = backend_of(tokenizer)
    check_max_length(backend, max_length, pair=False)
    budget = max_length - backend.num_special_tokens_to_add(False)
    with truncating(backend, None), pre_split_words(backend):
        whole = encode_in_chunks(backend, [sentence.words for sentence in sentences], "encoding",
                                 is_pretokenized=True)
    pieces: list[tuple[int, int, Any]] = []  # (sentence index, its first word, encoding)
    windows: list[tuple[int, int, int]] = []  # (sentence index, first word, end word)
    for index, (sentence, encoding) in enumerate(zip(sentences, whole)):
        if len(encoding.ids) <= max_length:
            pieces.append((index, 0, encoding))
            continue
        counts = np.bincount([w for w in encoding.word_ids if w is not None], minlength=len(sentence.words))
        windows.extend((index, first, end) for first, end in word_windows(counts, budget))
    if windows:
        # Words are tokenized one by one (is_pretokenized), so a window's tokens are the
        # sentence's; truncation only cuts a single word longer than the window.
        with truncating(backend, max_length), pre_split_words(backend):
            encodings = backend.encode_batch([sentences[i].words[first:end] for i, first, end in windows],
                                             is_pretokenized=True)
        pieces.extend((i, first, encoding) for (i, first, _), encoding in zip(windows, encodings))
        pieces.sort(key=lambda piece: piece[:2])
    features = []
    for index, group in itertools.groupby(pieces, key=lambda piece: piece[0]):
        group = list(group)
        word_ids = [[None if w is None else w + first for w in encoding.word_ids] for _, first, encoding in group]
        tags = sentences[index].tags
        owners = word_owners(word_ids) if len(group) > 1 else None
        for window, (_, _, encoding) in enumerate(group):
            if owners is None:  # the whole sentence in one window: every first sub-token
                labels = align_labels(word_ids[window], tags, label_map)
            else:
                labels = [IGNORE_INDEX] * len(encoding.ids)
                for word, (owner, position) in owners.items():
                    if owner == window:
                        labels[position] = label_map.id_of(tags[word])
            features.append({"input_ids": encoding.ids, "token_type_ids": encoding.type_ids, "labels": labels,
                             "word_ids": word_ids[window], "example_index": index})
    return features


def decode_windows(
    windows: Sequence[tuple[Sequence[int | None], Sequence[int]]], num_words: int, label_map: LabelMap
) -> list[str]:
    """Word-level tags of one sentence from its windows' (``word_ids``, token-level predicted
    ids): each word takes the prediction on its first sub-token in the window where it has
    the most context (``word_owners``); a word with no token at all gets "O".

    A prediction row may be longer than its ``word_ids`` (a padded batch row); the tail is
    ignored.
    """
    tags = [OUTSIDE] * num_words
    for word, (window, position) in word_owners([word_ids for word_ids, _ in windows]).items():
        tags[word] = label_map.label_of(int(windows[window][1][position]))
    return tags


def decode_word_tags(
    token_predictions: Sequence[int], word_ids: Sequence[int | None], num_words: int, label_map: LabelMap
) -> list[str]:
    """``decode_windows`` of a single window: each word takes its first sub-token's tag; words
    with no token get "O"."""
    return decode_windows([(word_ids, token_predictions)], num_words, label_map)


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
        return read_conll(self.check_file(path))

    def labels_of(self, example: TaggedSentence) -> set[str]:
        return set(example.tags)

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
        """Word-level tags per sentence, from its one or more windows."""
        windows: list[list] = [[] for _ in examples]
        for feature, row in zip(features, rows):
            windows[feature["example_index"]].append((feature["word_ids"], row))
        return [decode_windows(parts, len(example.words), self.labels) for example, parts in zip(examples, windows)]

    def score(self, examples: Sequence[TaggedSentence], predictions) -> dict[str, float]:
        return entity_scores([e.tags for e in examples], predictions)

    def write_predictions(self, path: Path, examples, predictions) -> None:
        blocks = ["\n".join(f"{word} {gold} {tag}" for word, gold, tag in zip(e.words, e.tags, tags))
                  for e, tags in zip(examples, predictions)]
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")

    def format_predictions(self, examples, predictions) -> list[str]:
        return [" ".join(f"{word}/{tag}" for word, tag in zip(e.words, tags)) for e, tags in zip(examples, predictions)]
