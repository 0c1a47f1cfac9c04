"""Training data that used to be read "successfully" while teaching the wrong thing: SQuAD
answers away from their answer_start, CoNLL files whose last column is not the NER tag,
evaluation labels the training data never shows, and the progress bars of the long steps."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest

from lmforge.errors import UserError
from lmforge.finetune.run import choose_labels
from lmforge.progress import progress_enabled
from lmforge.tasks import base, make_task
from lmforge.tasks.base import TaskOptions
from lmforge.tasks.classification import ClassificationExample
from lmforge.tasks.ner import TaggedSentence, read_conll
from lmforge.tasks.qa import QaTask, _answer_tokens, locate_answer, read_squad

CONTEXT = "Super Bowl 50 was won by the Denver Broncos in Santa Clara."


def squad(tmp_path, answers_of, contexts=None, name="train.json"):
    """A SQuAD file with one question per entry of ``answers_of`` (a list of answer lists)."""
    paragraphs = [{"context": (contexts or {}).get(i, CONTEXT),
                   "qas": [{"id": f"q{i}", "question": "Who won?", "answers": answers}]}
                  for i, answers in enumerate(answers_of)]
    path = tmp_path / name
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


RIGHT = {"text": "Denver Broncos", "answer_start": 29}


# -- SQuAD answers -------------------------------------------------------------------------------
def test_locate_answer_exact_near_and_missing():
    assert locate_answer(CONTEXT, "Denver Broncos", 29) == 29
    assert locate_answer(CONTEXT, "Denver Broncos", 28) == 29  # SQuAD's off-by-one offsets
    assert locate_answer(CONTEXT, "Denver Broncos", 32) == 29
    assert locate_answer(CONTEXT, "Denver Broncos", 33) is None  # more than NEAR away
    assert locate_answer(CONTEXT, "Denver Broncos", 500) is None
    assert locate_answer(CONTEXT, "", 0) is None


def test_an_off_by_one_offset_is_repaired_and_reported(tmp_path, capsys):
    path = squad(tmp_path, [[RIGHT], [{"text": "Denver Broncos", "answer_start": 30}]])
    examples = read_squad(path)
    assert [e.answers[0]["answer_start"] for e in examples] == [29, 29]
    (line,) = capsys.readouterr().err.splitlines()
    assert "repaired 1 of 2" in line and "q1" in line and str(path) in line


def test_few_answers_not_in_the_context_are_left_out_of_training(tmp_path, capsys):
    wrong = {"text": "Denver Broncos", "answer_start": 0}
    path = squad(tmp_path, [[RIGHT]] * 199 + [[wrong, {"text": "the Denver Broncos", "answer_start": 25}], [wrong]])
    examples = read_squad(path)
    (line,) = capsys.readouterr().err.splitlines()
    assert "2 of 202 answers are not in the context" in line and "q199" in line
    # the text stays a gold answer for scoring; training uses the second, located answer ...
    assert examples[199].answers[0] == {"text": "Denver Broncos", "answer_start": None}
    offsets = [None] * 7 + [(i, i + 1) for i in range(len(CONTEXT))] + [None]
    assert _answer_tokens(examples[199], offsets) == (7 + 25, 7 + 25 + len("the Denver Broncos") - 1)
    # ... and a question with no located answer is not trained as "no answer"
    kept = QaTask(TaskOptions()).trainable(examples)
    assert len(kept) == 200 and "q200" not in {e.id for e in kept}


@pytest.mark.parametrize("start, message", [(0, r"'Denver Broncos' is not at offset 0"),
                                            (500, r"offset 500 is past the context's 59 characters")])
def test_answers_away_from_their_offsets_are_an_error(tmp_path, start, message):
    path = squad(tmp_path, [[RIGHT], [{"text": "Denver Broncos", "answer_start": start}]])
    with pytest.raises(UserError, match=rf"train.json: 1 of 2 answers .* \(e.g. question q1: {message}\)"):
        read_squad(path)


def test_empty_context_and_bad_offsets_name_the_question(tmp_path):
    with pytest.raises(UserError, match=r"train.json: question q1 has an empty context"):
        read_squad(squad(tmp_path, [[RIGHT], [RIGHT]], contexts={1: "  "}))
    for value in ("twenty", -3, True, None, [1]):
        with pytest.raises(UserError, match=r"train.json: question q0: answer_start .* is not a character offset"):
            read_squad(squad(tmp_path, [[{"text": "Denver Broncos", "answer_start": value}]]))
    # digit strings (some converted copies) are offsets
    assert read_squad(squad(tmp_path, [[{"text": "Denver Broncos", "answer_start": "29"}]]))[0].answers == [RIGHT]


def test_prediction_input_ignores_answers_but_not_empty_contexts(tmp_path):
    path = squad(tmp_path, [[{"text": "x", "answer_start": "?"}]], name="in.json")
    assert QaTask(TaskOptions()).read_inputs(path, pair=False)[0].answers == []
    with pytest.raises(UserError, match="question q0 has an empty context"):
        QaTask(TaskOptions()).read_inputs(squad(tmp_path, [[]], contexts={0: ""}, name="in.json"), pair=False)


# -- CoNLL columns -------------------------------------------------------------------------------
CONLL_CHUNKS = "EU NNP B-NP\nrejects VBZ B-VP\nGerman JJ B-NP\ncall NN I-NP\n. . O\n"


def test_a_file_without_its_ner_column_is_refused(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\n" + CONLL_CHUNKS)
    with pytest.raises(UserError, match=r"train.txt: the last of its 3 columns holds chunk tags \(B-NP, B-VP\), "
                                        r"not entity tags: is the NER column missing\?"):
        read_conll(path)


def test_pos_tags_in_the_last_column_and_ragged_columns_are_refused(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("EU NNP\nrejects VBZ\n")
    with pytest.raises(UserError, match=r"train.txt:1: the last of its 2 columns holds 'NNP', not an entity tag"):
        read_conll(path)
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nGerman B-MISC\n")
    with pytest.raises(UserError, match=r"train.txt:4: 2 columns, but line 1 has 4"):
        read_conll(path)


@pytest.mark.parametrize("tags", [["B-PER", "I-PER", "O"], ["I-PER", "I-PER", "O"], ["S-LOC", "O", "O"],
                                  ["B-ORG", "E-ORG", "O"]])
def test_every_entity_tag_scheme_reads(tmp_path, tags):
    path = tmp_path / "train.txt"
    path.write_text("".join(f"w{i} NNP B-NP {tag}\n" for i, tag in enumerate(tags)))
    assert read_conll(path) == [TaggedSentence([f"w{i}" for i in range(3)], tags)]


# -- labels only in the evaluation data ----------------------------------------------------------
SOURCE = SimpleNamespace(task="masked_lm", config=SimpleNamespace(labels=()))


def test_an_evaluation_only_label_is_an_error_for_classification():
    task = make_task("classification", TaskOptions())
    train = [ClassificationExample("a", None, "pos"), ClassificationExample("b", None, "neg")]
    dev = [ClassificationExample("c", None, "pos"), *[ClassificationExample("d", None, "neutral")] * 3]
    with pytest.raises(UserError, match=r"label 'neutral' occurs in 3 example\(s\) of dev.tsv but never in train.tsv"):
        choose_labels(task, SOURCE, train, dev, "train.tsv", "dev.tsv")
    assert choose_labels(task, SOURCE, train, dev[:1]).labels == ["neg", "pos"]
    # a head that already knows the label has a class for it
    tuned = SimpleNamespace(task="sequence_classification", config=SimpleNamespace(labels=("neg", "neutral", "pos")))
    assert choose_labels(task, tuned, train, dev).labels == ["neg", "neutral", "pos"]


def test_an_evaluation_only_tag_is_an_error_for_ner():
    task = make_task("ner", TaskOptions())
    train = [TaggedSentence(["Paris"], ["B-LOC"]), TaggedSentence(["is"], ["O"])]
    dev = [TaggedSentence(["John", "Smith"], ["B-PER", "I-PER"]), TaggedSentence(["Paris", "Ann"], ["B-LOC", "B-PER"])]
    with pytest.raises(UserError, match=r"label 'B-PER' occurs in 2 example\(s\) of dev.txt but never in train.txt "
                                        r"\(and 1 more label\(s\): B-PER, I-PER\)"):
        choose_labels(task, SOURCE, train, dev, "train.txt", "dev.txt")


# -- progress bars -------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_at_a_terminal_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not progress_enabled()
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_enabled()
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()


def test_encoding_and_windowing_show_their_rate(monkeypatch):
    from wordpiece_helpers import tiny_wordpiece

    from lmforge.tasks.classification import encode_classification
    from lmforge.tasks.qa import QAExample, prepare_qa_features

    terminal = Terminal()
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", terminal)
    tokenizer = tiny_wordpiece(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"])
    labels = base.LabelMap(["0"])
    encode_classification([ClassificationExample("a b", None, "0")] * 5, tokenizer, 16, labels)
    prepare_qa_features([QAExample("q", "a", "a b a b", [])], tokenizer, max_length=16)
    shown = terminal.getvalue()
    assert "encoding" in shown and "windowing" in shown and "ex/s" in shown
