"""NER: first-sub-token labels (BERT paper 5.3), windows over long sentences, and word-level decoding."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as BackendTokenizer
from wordpiece_helpers import tiny_wordpiece as wordpiece_over

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX, collate
from lmforge.tasks.base import LabelMap
from lmforge.tasks.base import TaskOptions
from lmforge.tasks.ner import (NerTask, TaggedSentence, align_labels, decode_word_tags, encode_ner, word_owners,
                               word_windows)
from lmforge.tokenization import Tokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in", "denver", ".", "un", "##aff", "##able"]


def tiny_wordpiece() -> BackendTokenizer:
    return wordpiece_over(VOCAB)


SENTENCE = TaggedSentence(
    words=["John", "unaffable", "lives", "in", "Denver", "."],
    tags=["B-PER", "O", "O", "O", "B-LOC", "O"],
)
LABELS = LabelMap.from_labels(SENTENCE.tags)  # sorted: B-LOC 0, B-PER 1, O 2
X = IGNORE_INDEX


def test_label_map_of_tags_is_sorted():
    assert LABELS.labels == ["B-LOC", "B-PER", "O"]


def test_align_labels_puts_the_tag_on_the_first_sub_token_only():
    word_ids = [None, 0, 1, 1, 1, 2, None]
    assert align_labels(word_ids, ["B-PER", "O", "B-LOC"], LABELS) == [X, 1, 2, X, X, 0, X]


def test_align_labels_rejects_unknown_tags():
    with pytest.raises(UserError, match="unknown label 'I-MISC'"):
        align_labels([None, 0, None], ["I-MISC"], LABELS)


@pytest.mark.parametrize("wrap", [False, True])
def test_encode_ner_with_a_multi_piece_word(wrap):
    tokenizer = Tokenizer(tiny_wordpiece(), "wordpiece", lowercase=True) if wrap else tiny_wordpiece()
    (feature,) = encode_ner([SENTENCE], tokenizer, max_length=32, label_map=LABELS)
    # [CLS] john un ##aff ##able lives in denver . [SEP]
    assert feature["input_ids"] == [2, 5, 10, 11, 12, 6, 7, 8, 9, 3]
    assert feature["word_ids"] == [None, 0, 1, 1, 1, 2, 3, 4, 5, None]
    assert feature["labels"] == [X, 1, 2, X, X, 2, 2, 0, 2, X]
    assert feature["token_type_ids"] == [0] * 10


def test_encode_ner_cuts_only_a_word_longer_than_the_window():
    features = encode_ner([SENTENCE], tiny_wordpiece(), max_length=4, label_map=LABELS)
    # Two tokens of text per window: "unaffable" (3 pieces) alone keeps its first two, so it keeps its label.
    (alone,) = [f for f in features if 1 in f["word_ids"]]
    assert alone["input_ids"] == [2, 10, 11, 3]
    assert alone["word_ids"] == [None, 1, 1, None]
    assert alone["labels"] == [X, 2, X, X]
    assert {f["example_index"] for f in features} == {0}


LONG = TaggedSentence(words=["John", "lives", "in", "Denver", "."] * 8,
                      tags=["B-PER", "O", "O", "B-LOC", "O"] * 8)


@pytest.mark.parametrize("max_length", [6, 8, 13])
def test_a_long_sentence_is_windowed_and_every_word_labelled_once(max_length):
    """Words past max_length used to be cut and tagged O; now overlapping windows cover them."""
    features = encode_ner([SENTENCE, LONG], tiny_wordpiece(), max_length=max_length, label_map=LABELS)
    windows = [f for f in features if f["example_index"] == 1]
    assert len(windows) > 1 and all(len(f["input_ids"]) <= max_length for f in features)
    labelled = [f["word_ids"][p] for f in windows for p, label in enumerate(f["labels"]) if label != X]
    assert sorted(labelled) == list(range(len(LONG.words)))  # each word labelled exactly once
    covered = [set(w for w in f["word_ids"] if w is not None) for f in windows]
    assert all(a & b for a, b in zip(covered, covered[1:]))  # consecutive windows overlap
    # Decoding reads each word where it was labelled: a wrong guess everywhere else changes nothing.
    task = NerTask(TaskOptions(max_length=max_length), LABELS)
    rows = [[label if label != X else LABELS.id_of("B-PER") for label in f["labels"]] for f in features]
    assert task.decode([SENTENCE, LONG], features, rows) == [SENTENCE.tags, LONG.tags]


def test_word_owners_prefers_the_window_with_more_context():
    # word 2 sits mid-window in the first window and at the edge of the second; word 3 the reverse
    owners = word_owners([[None, 0, 1, 2, 3, None], [None, 2, 3, 4, 5, None]])
    assert owners == {0: (0, 1), 1: (0, 2), 2: (0, 3), 3: (1, 2), 4: (1, 3), 5: (1, 4)}


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 6), max_size=40), st.integers(1, 12))
def test_word_windows_cover_every_word_within_the_budget(counts, budget):
    windows = word_windows(counts, budget)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for (first, end), (next_first, _) in zip(windows, windows[1:]):
        assert first < next_first <= end  # moving on, without a gap
    for first, end in windows:
        assert end - first == 1 or sum(counts[first:end]) <= budget


def test_decode_takes_the_first_sub_token_prediction():
    word_ids = [None, 0, 1, 1, 1, 2, 3, 4, 5, None]
    # The ##aff/##able predictions (B-PER) must not leak into the word's tag.
    predictions = [2, 1, 0, 1, 1, 2, 2, 0, 2, 2]
    assert decode_word_tags(predictions, word_ids, 6, LABELS) == ["B-PER", "B-LOC", "O", "O", "B-LOC", "O"]


def test_decode_gives_o_to_truncated_words_and_ignores_padding():
    word_ids = [None, 0, 1, 1, None]
    predictions = [1, 1, 0, 0, 1, 1, 1, 1]  # a padded batch row: 3 positions past the feature
    assert decode_word_tags(predictions, word_ids, 6, LABELS) == ["B-PER", "B-LOC", "O", "O", "O", "O"]


def test_gold_labels_round_trip_through_decoding():
    sentences = [SENTENCE, TaggedSentence(words=["Denver", "John"], tags=["B-LOC", "B-PER"])]
    features = encode_ner(sentences, tiny_wordpiece(), max_length=32, label_map=LABELS)
    for sentence, feature in zip(sentences, features):
        predictions = [label if label != X else 1 for label in feature["labels"]]
        assert decode_word_tags(predictions, feature["word_ids"], len(sentence.words), LABELS) == sentence.tags


def test_collate_pads_labels_with_ignore_index():
    sentences = [SENTENCE, TaggedSentence(words=["Denver"], tags=["B-LOC"])]
    batch = collate(encode_ner(sentences, tiny_wordpiece(), max_length=32, label_map=LABELS), pad_id=0)
    assert batch["input_ids"].tolist()[1] == [2, 8, 3] + [0] * 7
    assert batch["labels"].tolist()[1] == [X, 0, X] + [X] * 7
    assert batch["attention_mask"].tolist() == [[1] * 10, [1] * 3 + [0] * 7]
    assert "word_ids" not in batch
