"""NER: first-sub-token labels (BERT paper 5.3), truncation, and word-level decoding."""

import pytest
from tokenizers import Tokenizer as BackendTokenizer
from wordpiece_helpers import tiny_wordpiece as wordpiece_over

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX, collate
from lmforge.tasks.base import LabelMap
from lmforge.tasks.ner import TaggedSentence, align_labels, decode_word_tags, encode_ner
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


def test_encode_ner_truncation_inside_a_word():
    (feature,) = encode_ner([SENTENCE], tiny_wordpiece(), max_length=5, label_map=LABELS)
    # [CLS] john un ##aff [SEP]: "unaffable" keeps its first piece, so it keeps its label
    assert feature["input_ids"] == [2, 5, 10, 11, 3]
    assert feature["word_ids"] == [None, 0, 1, 1, None]
    assert feature["labels"] == [X, 1, 2, X, X]


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
