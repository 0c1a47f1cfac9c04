"""SQuAD windows (run_squad's doc_stride loop), answer positions and n-best decoding."""

import numpy as np
import pytest
from tokenizers import Tokenizer as BackendTokenizer
from wordpiece_helpers import tiny_wordpiece as wordpiece_over

from lmforge.errors import UserError
from lmforge.tasks.qa import QAExample, postprocess_qa, prepare_qa_features
from lmforge.tokenization import Tokenizer

WORDS = [f"w{i}" for i in range(30)]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "what", "won", "?", ".", ",", "–"]
VOCAB += WORDS + ["the", "denver", "broncos", "beat", "carolina", "24", "10", "un", "##aff", "##able", "man"]


def tiny_wordpiece() -> BackendTokenizer:
    return wordpiece_over(VOCAB)


CONTEXT = " ".join(WORDS[:20])  # 20 one-token words: context token k is "wk"


def word_start(k: int) -> int:
    return CONTEXT.index(f"w{k} ") if k < 19 else CONTEXT.index("w19")


def example(first_word: int, last_word: int, question: str = "who what", id_: str = "q") -> QAExample:
    start = word_start(first_word)
    text = CONTEXT[start : word_start(last_word) + len(f"w{last_word}")]
    return QAExample(id=id_, question=question, context=CONTEXT, answers=[{"text": text, "answer_start": start}])


def context_words(feature: dict) -> list[int]:
    """Which context words a feature's window holds (from its offsets)."""
    return [int(CONTEXT[a:b][1:]) for a, b in (span for span in feature["offsets"] if span is not None)]


def test_windows_follow_run_squad_doc_stride():
    # max_length 16 - 2 question tokens - 3 specials = windows of 11 context tokens, and
    # run_squad moves the start by doc_stride = 4 until a window reaches the end (20 tokens).
    features = prepare_qa_features([example(9, 10)], tiny_wordpiece(), max_length=16, doc_stride=4)
    assert [context_words(f) for f in features] == [
        list(range(0, 11)),
        list(range(4, 15)),
        list(range(8, 19)),
        list(range(12, 20)),
    ]
    first = features[0]
    assert first["input_ids"][:4] == [2, VOCAB.index("who"), VOCAB.index("what"), 3]
    assert first["input_ids"][-1] == 3 and len(first["input_ids"]) == 16
    assert first["token_type_ids"] == [0] * 4 + [1] * 12
    assert first["offsets"][:4] == [None] * 4 and first["offsets"][-1] is None
    assert all(f["example_index"] == 0 for f in features)


def test_doc_stride_larger_than_window_steps_by_the_window():
    features = prepare_qa_features([example(0, 0)], tiny_wordpiece(), max_length=16, doc_stride=50)
    assert [context_words(f) for f in features] == [list(range(0, 11)), list(range(11, 20))]


def test_short_context_gives_one_window():
    features = prepare_qa_features([example(3, 4)], tiny_wordpiece(), max_length=64)
    assert len(features) == 1
    assert context_words(features[0]) == list(range(20))
    # [CLS] who what [SEP] then w0 at index 4: answer w3..w4 sits at 7..8
    assert (features[0]["start_position"], features[0]["end_position"]) == (7, 8)


def test_answer_positions_per_window_and_cls_when_outside():
    features = prepare_qa_features([example(9, 10)], tiny_wordpiece(), max_length=16, doc_stride=4)
    # Window starts 0, 4, 8, 12; context token k of a window starting at s sits at 4 + k - s.
    assert [(f["start_position"], f["end_position"]) for f in features] == [(13, 14), (9, 10), (5, 6), (0, 0)]


def test_answer_crossing_a_window_boundary_is_labelled_only_where_whole():
    # w10..w12 starts inside window 0 (words 0-10) but ends outside it.
    features = prepare_qa_features([example(10, 12)], tiny_wordpiece(), max_length=16, doc_stride=4)
    assert [(f["start_position"], f["end_position"]) for f in features] == [(0, 0), (10, 12), (6, 8), (0, 0)]


def test_question_is_cut_to_max_query_length():
    long_question = "who what won who what won"
    features = prepare_qa_features(
        [example(0, 0, question="  " + long_question)], tiny_wordpiece(), max_length=64, max_query_length=3
    )
    ids = features[0]["input_ids"]
    assert ids[:5] == [2, VOCAB.index("who"), VOCAB.index("what"), VOCAB.index("won"), 3]
    assert (features[0]["start_position"], features[0]["end_position"]) == (5, 5)


def test_examples_without_answers_point_at_cls():
    plain = QAExample(id="x", question="who", context=CONTEXT, answers=[])
    features = prepare_qa_features([plain], tiny_wordpiece(), max_length=16, doc_stride=8)
    # a one-token question leaves windows of 12: words 0-11, then 8-19
    assert [context_words(f) for f in features] == [list(range(0, 12)), list(range(8, 20))]
    assert {(f["start_position"], f["end_position"]) for f in features} == {(0, 0)}


def test_features_follow_example_order_across_question_lengths():
    examples = [example(1, 1, "who what won", "a"), example(2, 2, "who", "b"), example(3, 3, "who what won", "c")]
    features = prepare_qa_features(examples, tiny_wordpiece(), max_length=64)
    assert [f["example_index"] for f in features] == [0, 1, 2]
    # [CLS] + question + [SEP] precede the context: 5 + 1, 3 + 2, 5 + 3
    assert [f["start_position"] for f in features] == [6, 5, 8]


def test_max_length_too_small_for_the_question_is_a_user_error():
    with pytest.raises(UserError, match="no room"):
        prepare_qa_features([example(0, 0, question="who what won who")], tiny_wordpiece(), max_length=7)


def test_backend_settings_are_restored():
    backend = tiny_wordpiece()
    backend.enable_padding(pad_id=0, pad_token="[PAD]", length=40)
    prepare_qa_features([example(9, 10)], backend, max_length=16, doc_stride=4)
    assert backend.truncation is None
    assert backend.padding["length"] == 40


# ---------------------------------------------------------------------------------------
# Decoding


def one_feature(offsets, example_index=0):
    return {"example_index": example_index, "offsets": offsets}


# A window [CLS] q [SEP] c0 c1 c2 c3 [SEP] over the context "aa bb cc dd".
SMALL = QAExample(id="s", question="q", context="aa bb cc dd", answers=[])
SMALL_OFFSETS = [None, None, None, (0, 2), (3, 5), (6, 8), (9, 11), None]


def logits(values: dict[int, float], length: int = 8) -> list[float]:
    row = [0.0] * length
    for index, value in values.items():
        row[index] = value
    return row


def test_best_pair_is_the_highest_start_plus_end():
    start = logits({4: 3.0, 5: 1.0})
    end = logits({5: 2.0, 6: 2.5})
    # (4, 6): 5.5 beats (4, 5): 5.0 and (5, 6): 3.5
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end]) == {"s": "bb cc dd"}


def test_end_before_start_is_rejected():
    # The top start (c2, index 5) and top end (c0, index 3) would make a reversed span.
    start = logits({5: 5.0, 3: 1.0})
    end = logits({3: 5.0, 6: 0.5})
    # Valid pairs: (3, 3) 6.0, (5, 6) 5.5, (3, 6) 1.5, ... -> (3, 3)
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end]) == {"s": "aa"}


def test_max_answer_length_limits_the_span():
    start = logits({3: 4.0, 5: 1.0})
    end = logits({6: 4.0, 5: 0.5})
    # (3, 6) scores 8 but spans 4 tokens; with at most 2: (5, 6) = 5.0 beats (3, 4)/(5, 5) and friends.
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end], max_answer_length=4) == {
        "s": "aa bb cc dd"
    }
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end], max_answer_length=2) == {
        "s": "cc dd"
    }


def test_question_and_special_tokens_never_answer():
    start = logits({0: 9.0, 1: 9.0, 4: 1.0})
    end = logits({0: 9.0, 7: 9.0, 4: 1.0})
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end]) == {"s": "bb"}


def test_n_best_limits_the_candidates():
    # The only valid pair needs the 3rd-best start: with n_best=2 nothing valid remains.
    start = logits({0: 9.0, 1: 8.0, 4: 1.0})
    end = logits({4: 1.0})
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end], n_best=2) == {"s": ""}
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], [start], [end], n_best=3) == {"s": "bb"}


def test_padding_positions_past_the_feature_are_ignored():
    start = logits({4: 1.0, 9: 50.0}, length=12)
    end = logits({4: 1.0, 10: 50.0}, length=12)
    assert postprocess_qa([SMALL], [one_feature(SMALL_OFFSETS)], np.array([start]), np.array([end])) == {"s": "bb"}


def test_best_window_wins_and_spans_never_cross_windows():
    examples = [example(9, 10)]
    features = prepare_qa_features(examples, tiny_wordpiece(), max_length=16, doc_stride=4)
    rows = len(features[0]["input_ids"])
    starts = np.zeros((4, rows))
    ends = np.zeros((4, rows))
    # Window 0 (words 0-10) ends at w10 (index 14): a strong start there can only make the
    # one-word span w10, scoring 5 + 0; w10..w12 would cross into the next window.
    starts[0, 14] = 5.0
    # Window 1 (words 4-14): w11..w12 scores 2 + 4 = 6.
    starts[1, 4 + 11 - 4] = 2.0
    ends[1, 4 + 12 - 4] = 4.0
    assert postprocess_qa(examples, features, starts, ends) == {"q": "w11 w12"}
    starts[0, 14] = 7.0  # now window 0's w10 alone (7 + 0) beats 6
    assert postprocess_qa(examples, features, starts, ends) == {"q": "w10"}


def test_several_examples_and_unanswerable_ones():
    examples = [SMALL, QAExample(id="t", question="q", context="zz", answers=[])]
    features = [one_feature(SMALL_OFFSETS, 0), one_feature([None, None, None, None], 1)]
    starts = [logits({5: 1.0}), [0.0] * 4]
    ends = [logits({6: 1.0}), [0.0] * 4]
    assert postprocess_qa(examples, features, starts, ends) == {"s": "cc dd", "t": ""}


def trained_byte_bpe(tmp_path) -> Tokenizer:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The Denver Broncos beat Carolina 24–10, the unaffable man won.\n" * 20, encoding="utf-8")
    return Tokenizer.train([corpus], kind="byte_bpe", vocab_size=300, min_frequency=1, show_progress=False)


@pytest.mark.parametrize("kind", ["raw wordpiece", "lmforge wordpiece", "lmforge byte_bpe"])
def test_gold_positions_decode_back_to_the_answer_text(kind, tmp_path):
    context = "The Denver Broncos beat Carolina 24–10, the unaffable man won."
    answers = ["Denver Broncos", "24–10", "unaffable", "won", "The"]
    examples = [
        QAExample(id=str(i), question="who won?", context=context, answers=[{"text": a, "answer_start": context.index(a)}])
        for i, a in enumerate(answers)
    ]
    if kind == "raw wordpiece":
        tokenizer = tiny_wordpiece()
    elif kind == "lmforge wordpiece":
        tokenizer = Tokenizer(tiny_wordpiece(), "wordpiece", lowercase=True)
    else:
        tokenizer = trained_byte_bpe(tmp_path)
    features = prepare_qa_features(examples, tokenizer, max_length=16, doc_stride=3)
    assert len(features) > len(examples)  # several windows each
    predicted = {}
    for feature in features:
        if feature["start_position"] == 0:
            continue
        start = np.zeros(len(feature["input_ids"]))
        end = np.zeros(len(feature["input_ids"]))
        start[feature["start_position"]] = end[feature["end_position"]] = 1.0
        example_index = feature["example_index"]
        predicted.update(postprocess_qa([examples[example_index]], [{**feature, "example_index": 0}], [start], [end]))
    assert predicted == {str(i): a for i, a in enumerate(answers)}
