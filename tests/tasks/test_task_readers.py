"""Readers for GLUE TSV (exact SST-2/MRPC/RTE layouts), CSV, JSONL, CoNLL-2003 and SQuAD v1.1,
plus label maps and classification features."""

import gzip
import json
import lzma

import pytest
from tokenizers import Tokenizer as BackendTokenizer
from wordpiece_helpers import tiny_wordpiece as wordpiece_over

from lmforge.errors import UserError
from lmforge.objectives.base import collate
from lmforge.tasks.base import LabelMap
from lmforge.tasks.classification import ClassificationExample, encode_classification, read_classification
from lmforge.tasks.ner import TaggedSentence, read_conll
from lmforge.tasks.qa import QAExample, read_squad

# Byte-for-byte the shapes of GLUE's files: SST-2 keeps a space before the tab, MRPC has bare
# double quotes, RTE has an index column.
SST2 = "sentence\tlabel\nit 's a charming and often affecting journey . \t1\nunflinchingly bleak and desperate \t0\n"
MRPC = (
    "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    "1\t1355540\t1355592\tHe said the pie business doesn 't fit .\t\" The pie business does not fit our strategy .\n"
    '0\t2029631\t2029565\tMagnarelli said Racicot hated it .\tHis wife said he was " 100 percent behind George Bush " .\n'
)
RTE = (
    "index\tsentence1\tsentence2\tlabel\n"
    "0\tDana Reeve, the widow of the actor, has died.\tChristopher Reeve had an accident.\tnot_entailment\n"
    "1\tYet, we now are discovering that antibiotics are losing.\tBacteria is winning.\tentailment\n"
)


def write(tmp_path, name, text):
    path = tmp_path / name
    if name.endswith(".xz"):
        path.write_bytes(lzma.compress(text.encode("utf-8")))
    elif name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_sst2_layout(tmp_path):
    examples = read_classification(write(tmp_path, "dev.tsv", SST2))
    assert examples == [
        ClassificationExample("it 's a charming and often affecting journey . ", None, "1"),
        ClassificationExample("unflinchingly bleak and desperate ", None, "0"),
    ]


def test_sst2_splits_on_the_last_tab_and_reads_xz(tmp_path):
    text = "sentence\tlabel\na\ttabbed sentence\t1\n"
    (example,) = read_classification(write(tmp_path, "train.tsv.xz", text))
    assert example == ClassificationExample("a\ttabbed sentence", None, "1")


def test_mrpc_layout_keeps_quotes(tmp_path):
    examples = read_classification(write(tmp_path, "dev.tsv", "\ufeff" + MRPC))  # GLUE's copy has a BOM
    assert examples[0] == ClassificationExample(
        "He said the pie business doesn 't fit .", '" The pie business does not fit our strategy .', "1"
    )
    assert examples[1].pair == 'His wife said he was " 100 percent behind George Bush " .'
    assert [e.label for e in examples] == ["1", "0"]


def test_rte_layout(tmp_path):
    examples = read_classification(write(tmp_path, "dev.tsv.gz", RTE))
    assert examples[0] == ClassificationExample(
        "Dana Reeve, the widow of the actor, has died.", "Christopher Reeve had an accident.", "not_entailment"
    )
    assert examples[1].label == "entailment"


def test_qnli_layout(tmp_path):
    text = "index\tquestion\tsentence\tlabel\n0\tWhat is it?\tIt is a test.\tentailment\n"
    assert read_classification(write(tmp_path, "dev.tsv", text)) == [
        ClassificationExample("What is it?", "It is a test.", "entailment")
    ]


def test_explicit_columns_override_detection(tmp_path):
    path = write(tmp_path, "dev.tsv", RTE)
    examples = read_classification(path, text_column="sentence2", label_column="index")
    assert examples[0] == ClassificationExample("Christopher Reeve had an accident.", None, "0")
    swapped = read_classification(path, text_column="sentence2", pair_column="sentence1")
    assert swapped[1] == ClassificationExample(
        "Bacteria is winning.", "Yet, we now are discovering that antibiotics are losing.", "entailment"
    )


def test_missing_column_lists_the_available_ones(tmp_path):
    path = write(tmp_path, "dev.tsv", RTE)
    with pytest.raises(UserError, match=r"no column 'premise' \(columns: 'index', 'sentence1', 'sentence2', 'label'\)"):
        read_classification(path, text_column="premise")
    with pytest.raises(UserError, match="pass text_column"):
        read_classification(write(tmp_path, "odd.tsv", "body\tlabel\nx\t1\n"))
    with pytest.raises(UserError, match="pass label_column"):
        read_classification(write(tmp_path, "nolabel.tsv", "sentence\tscore\nx\t1\n"))


def test_csv_uses_quoting(tmp_path):
    text = 'text,label\n"hello, world",pos\n"she said ""hi""",neg\n'
    assert read_classification(write(tmp_path, "data.csv", text)) == [
        ClassificationExample("hello, world", None, "pos"),
        ClassificationExample('she said "hi"', None, "neg"),
    ]


def test_jsonl_with_integer_labels(tmp_path):
    lines = [{"sentence1": "a b", "sentence2": "c", "label": 1}, {"sentence1": "d", "sentence2": "e f", "label": 0}]
    path = write(tmp_path, "train.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    assert read_classification(path) == [ClassificationExample("a b", "c", "1"), ClassificationExample("d", "e f", "0")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dev.tsv", RTE.replace("\tentailment\n", "\n"), r"dev.tsv:3: expected 4 tab-separated fields, found 3"),
        ("dev.tsv", SST2.replace("unflinchingly", "\nunflinchingly"), r"dev.tsv:3: empty row"),
        ("dev.tsv", SST2.replace("unflinchingly bleak and desperate ", "  "), r"dev.tsv:3: empty field 'sentence'"),
        ("dev.tsv", "sentence\tlabel\nfine\t\n", r"dev.tsv:2: empty field 'label'"),
        ("dev.tsv", "sentence\tlabel\n", r"no examples"),
        ("dev.tsv", "", r"empty file"),
        ("x.csv", "text,label\na,1\nb,1,extra\n", r"x.csv:3: expected 2 fields, found 3"),
        ("x.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label}\n', r"x.jsonl:2: invalid JSON"),
        ("x.jsonl", '{"text": "a", "label": 1}\n{"label": 1}\n', r"x.jsonl:2: no field 'text'"),
        ("x.jsonl", '{"text": ["a"], "label": 1}\n', r"x.jsonl:1: field 'text' must be a string"),
        ("x.txt", "sentence\tlabel\na\t1\n", r"unknown classification format '.txt'"),
    ],
)
def test_malformed_files_are_user_errors_with_line_numbers(tmp_path, name, text, message):
    with pytest.raises(UserError, match=message):
        read_classification(write(tmp_path, name, text))


def test_trailing_blank_lines_are_fine(tmp_path):
    assert len(read_classification(write(tmp_path, "dev.tsv", SST2 + "\n\n"))) == 2
    assert len(read_classification(write(tmp_path, "d.csv", "text,label\na,1\n\n"))) == 1


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_classification(tmp_path / "absent.tsv")


# ---------------------------------------------------------------------------------------
# CoNLL-2003

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O

BRUSSELS NNP B-NP B-LOC
"""


def test_read_conll(tmp_path):
    sentences = read_conll(write(tmp_path, "valid.txt", CONLL))
    assert sentences == [
        TaggedSentence(["EU", "rejects", "German", "call", "."], ["B-ORG", "O", "B-MISC", "O", "O"]),
        TaggedSentence(["Peter", "Blackburn"], ["B-PER", "I-PER"]),
        TaggedSentence(["BRUSSELS"], ["B-LOC"]),
    ]
    assert read_conll(write(tmp_path, "train.txt.xz", CONLL)) == sentences


def test_read_conll_two_columns_and_errors(tmp_path):
    assert read_conll(write(tmp_path, "a.txt", "Paris B-LOC\nis O\n")) == [
        TaggedSentence(["Paris", "is"], ["B-LOC", "O"])
    ]
    with pytest.raises(UserError, match=r"b.txt:2: expected a word and a tag"):
        read_conll(write(tmp_path, "b.txt", "Paris B-LOC\nlonely\n"))
    with pytest.raises(UserError, match="no sentences"):
        read_conll(write(tmp_path, "c.txt", "-DOCSTART- -X- -X- O\n\n"))


# ---------------------------------------------------------------------------------------
# SQuAD v1.1

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": "Super Bowl 50 was won by the Denver Broncos.",
                    "qas": [
                        {
                            "id": "56be4db0acb8001400a502ec",
                            "question": "Who won Super Bowl 50?",
                            "answers": [
                                {"answer_start": 29, "text": "Denver Broncos"},
                                {"answer_start": 25, "text": "the Denver Broncos"},
                            ],
                        }
                    ],
                }
            ],
        },
        {"title": "Other", "paragraphs": [{"context": "abc", "qas": [{"id": "x", "question": "q?", "answers": []}]}]},
    ],
}


def test_read_squad(tmp_path):
    expected = [
        QAExample(
            id="56be4db0acb8001400a502ec",
            question="Who won Super Bowl 50?",
            context="Super Bowl 50 was won by the Denver Broncos.",
            answers=[{"text": "Denver Broncos", "answer_start": 29}, {"text": "the Denver Broncos", "answer_start": 25}],
        ),
        QAExample(id="x", question="q?", context="abc", answers=[]),
    ]
    assert read_squad(write(tmp_path, "dev-v1.1.json", json.dumps(SQUAD))) == expected
    assert read_squad(write(tmp_path, "dev-v1.1.json.xz", json.dumps(SQUAD))) == expected
    context = expected[0].context
    assert context[29 : 29 + len("Denver Broncos")] == "Denver Broncos"


def test_read_squad_errors(tmp_path):
    broken = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]}
    with pytest.raises(UserError, match="not SQuAD v1.1 JSON \\(missing or malformed 'question'\\)"):
        read_squad(write(tmp_path, "a.json", json.dumps(broken)))
    with pytest.raises(UserError, match="no questions"):
        read_squad(write(tmp_path, "c.json", json.dumps({"data": [{"paragraphs": [{"qas": []}]}]})))
    with pytest.raises(UserError, match="invalid JSON at line 1"):
        read_squad(write(tmp_path, "b.json", "{"))


# ---------------------------------------------------------------------------------------
# Label maps and classification features


def test_label_map_order_and_round_trip():
    assert LabelMap.from_labels(["10", "2", "1", "2"]).labels == ["1", "2", "10"]
    labels = LabelMap.from_labels(["not_entailment", "entailment", "entailment"])
    assert labels.labels == ["entailment", "not_entailment"]
    assert (labels.id_of("not_entailment"), labels.label_of(0), len(labels)) == (1, "entailment", 2)
    saved = labels.to_dict()
    assert saved == {"id2label": {0: "entailment", 1: "not_entailment"}, "label2id": {"entailment": 0, "not_entailment": 1}}
    assert LabelMap.from_dict(json.loads(json.dumps(saved))) == labels  # JSON turns keys into strings
    with pytest.raises(UserError, match="unknown label 'neutral'"):
        labels.id_of("neutral")


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "good", "film", "bad", "plot", "very", "."]


def tiny_wordpiece() -> BackendTokenizer:
    return wordpiece_over(VOCAB)


def test_encode_single_sentences_and_collate():
    labels = LabelMap.from_labels(["0", "1"])
    examples = [ClassificationExample("A good film .", None, "1"), ClassificationExample("Bad", None, "0")]
    features = encode_classification(examples, tiny_wordpiece(), max_length=16, label_map=labels)
    assert features == [
        {"input_ids": [2, 5, 6, 7, 11, 3], "token_type_ids": [0] * 6, "label": 1},
        {"input_ids": [2, 8, 3], "token_type_ids": [0] * 3, "label": 0},
    ]
    batch = collate(features, pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 5, 6, 7, 11, 3], [2, 8, 3, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 0, 0, 0]]
    assert batch["label"].tolist() == [1, 0]


def test_encode_pairs_truncates_the_longer_side():
    labels = LabelMap.from_labels(["entailment", "not_entailment"])
    example = ClassificationExample("a very very very good film", "bad plot", "not_entailment")
    (feature,) = encode_classification([example], tiny_wordpiece(), max_length=9, label_map=labels)
    # 6 + 2 words + 3 specials = 11 > 9: two tokens come off the end of the longer first side
    assert feature["input_ids"] == [2, 5, 10, 10, 10, 3, 8, 9, 3]
    assert feature["token_type_ids"] == [0] * 6 + [1] * 3
    assert feature["label"] == 1


def test_encode_rejects_mixed_pairs_and_tiny_max_length():
    labels = LabelMap.from_labels(["0"])
    mixed = [ClassificationExample("a", None, "0"), ClassificationExample("a", "b", "0")]
    with pytest.raises(UserError, match="mixed"):
        encode_classification(mixed, tiny_wordpiece(), max_length=16, label_map=labels)
    with pytest.raises(UserError, match="no room"):
        encode_classification(mixed[1:], tiny_wordpiece(), max_length=4, label_map=labels)
