"""Token tagging features for NER (BERT paper, section 5.3 and figure 4d).

The words of a CoNLL sentence are given to the tokenizer already split (``is_pretokenized``),
so each sub-token knows its word. Following the paper, a word's label goes on its first
sub-token and is predicted there; the other sub-tokens and the special tokens carry
``IGNORE_INDEX`` (-100) and add nothing to the loss. At prediction time each word takes the
tag predicted on its first sub-token; words cut off by ``max_length`` get ``"O"``, so that the
word-level output always has one tag per input word and scoring stays honest about them.

Byte-level BPE tokenizers (RoBERTa) need ``add_prefix_space=True`` to encode pre-split words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmforge.tasks import IGNORE_INDEX, backend_of, check_max_length, truncating
from lmforge.tasks.classification import LabelMap
from lmforge.tasks.readers import TaggedSentence

OUTSIDE = "O"


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
