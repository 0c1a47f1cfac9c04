"""Property-based fuzzing (hypothesis) of the input readers and of the masking objective.

Readers: any bytes, in any supported container (.txt, .jsonl, .tsv, .csv, CoNLL, SQuAD JSON,
raw or .gz/.xz, whole or truncated), give a result or a UserError, never another exception.
Masking: for any sequence, the labels mark only non-special positions, hold the original ids,
respect the prediction budget, and the masked sequence differs from the input only there.

Bounded for CI: derandomized, ~60 examples each, no deadline (first calls import torch).
"""

from __future__ import annotations

import gzip
import lzma
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.corpus import iter_documents
from lmforge.errors import UserError

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Bytes that look like text now and then: random bytes, valid UTF-8 text, latin-1 text, JSON-ish lines.
texty = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=300).map(lambda s: s.encode("utf-8")),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=200).map(lambda s: s.encode("latin-1")),
    st.lists(st.one_of(st.just(b'{"text": "a b c"}'), st.just(b'{"text": 3}'), st.just(b"[1, 2]"),
                       st.just(b'{"text": "x\\u00e9"}'), st.just(b"{"), st.just(b""), st.just(b"\xff"),
                       st.just(b"word\tlabel"), st.just(b"1\t0"), st.just(b"EU B-ORG"), st.just(b"-DOCSTART- O"),
                       st.just(b'{"data": []}'), st.just(b'"a","b"')), max_size=12).map(b"\n".join),
)
containers = st.sampled_from(["", ".gz", ".xz", ".gz-truncated", ".xz-truncated", ".gz-garbage", ".xz-garbage"])


def _write(directory: Path, name: str, data: bytes, container: str) -> Path:
    suffix, _, damage = container.partition("-")
    if suffix == ".gz" and damage != "garbage":
        data = gzip.compress(data)
    elif suffix == ".xz" and damage != "garbage":
        data = lzma.compress(data)
    if damage == "truncated":
        data = data[: max(1, len(data) // 2)]
    path = directory / (name + suffix)
    path.write_bytes(data)
    return path


@FUZZ
@given(data=texty, kind=st.sampled_from(["corpus.txt", "corpus.jsonl"]), container=containers)
def test_corpus_reader_any_bytes(data, kind, container):
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), kind, data, container)
        try:
            documents = list(iter_documents(path))
        except UserError as error:
            assert "\n" not in str(error)
            return
        assert all(isinstance(d, str) and d.strip() for d in documents)


words = st.text(alphabet="abcdefgh .,!?'-0123456789", min_size=1, max_size=12).filter(lambda s: s.strip())


@FUZZ
@given(st.lists(st.lists(words, min_size=1, max_size=4), min_size=1, max_size=6))
def test_corpus_txt_round_trip(documents):
    """Documents of non-blank lines, a blank line between them, read back as written."""
    text = "\n\n".join("\n".join(lines) for lines in documents) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.txt"
        path.write_text(text, encoding="utf-8")
        assert list(iter_documents(path)) == ["\n".join(lines) for lines in documents]


def _readers():
    from lmforge.tasks.classification import read_classification
    from lmforge.tasks.ner import read_conll
    from lmforge.tasks.qa import read_squad

    return {"train.tsv": read_classification, "train.csv": read_classification,
            "train.jsonl": read_classification, "train.txt": read_conll, "train.json": read_squad}


@FUZZ
@given(data=texty, name=st.sampled_from(["train.tsv", "train.csv", "train.jsonl", "train.txt", "train.json"]),
       container=containers)
def test_finetune_readers_any_bytes(data, name, container):
    """The readers themselves (lmforge.tasks.classification, .ner, .qa), with no CLI guard
    around them: any bytes give examples or a one-line UserError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), name, data, container)
        try:
            examples = _readers()[name](path)
        except UserError as error:
            assert "\n" not in str(error) and path.name in str(error)
            return
        assert examples


@FUZZ
@given(
    ids=st.lists(st.integers(0, 49), min_size=1, max_size=80),
    specials=st.sets(st.integers(0, 49), max_size=5),
    probability=st.floats(0.01, 1.0),
    max_predictions=st.one_of(st.none(), st.integers(1, 30)),
    whole_word=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_masking_invariants(ids, specials, probability, max_predictions, whole_word, seed):
    from lmforge.objectives.base import IGNORE_INDEX
    from lmforge.objectives.mlm import mask_tokens, num_to_predict

    ids = np.array(ids, dtype=np.int64)
    word_start = (np.arange(50) % 3 != 0) if whole_word else None
    mask_id = 4
    args = dict(vocab_size=50, mask_id=mask_id, special_ids=specials, mlm_probability=probability,
                max_predictions=max_predictions, word_start=word_start)
    masked, labels = mask_tokens(ids, np.random.default_rng(seed), **args)
    again = mask_tokens(ids, np.random.default_rng(seed), **args)
    assert np.array_equal(masked, again[0]) and np.array_equal(labels, again[1])  # deterministic in the seed
    assert masked.shape == labels.shape == ids.shape and masked.dtype == labels.dtype == np.int64
    chosen = labels != IGNORE_INDEX
    assert np.array_equal(labels[chosen], ids[chosen])
    assert not any(int(i) in specials for i in ids[chosen])
    assert np.array_equal(masked[~chosen], ids[~chosen])
    assert ((masked >= 0) & (masked < 50)).all()
    candidates = int(sum(int(i) not in specials for i in ids))
    budget = num_to_predict(len(ids), probability, max_predictions)
    if whole_word:
        assert chosen.sum() <= candidates
        assert chosen.sum() <= budget  # a word that would overflow the budget is skipped whole
        # every chosen word is whole: a chosen non-start token's previous candidate is chosen too
        positions = [p for p in range(len(ids)) if int(ids[p]) not in specials]
        for previous, current in zip(positions, positions[1:]):
            if chosen[current] and not word_start[ids[current]]:
                assert chosen[previous]
    else:
        assert chosen.sum() == min(budget, candidates)


@FUZZ
@given(
    documents=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=8), min_size=1, max_size=6),
    max_seq_length=st.integers(5, 48),
    short_seq_prob=st.sampled_from([0.0, 0.1, 1.0]),
    seed=st.integers(0, 2**31 - 1),
    dupe_round=st.integers(0, 3),
)
def test_sentence_pair_invariants(documents, max_seq_length, short_seq_prob, seed, dupe_round):
    """NSP pairs for any corpus shape (documents of sentences of given token counts): each pair
    fits ``[CLS] A [SEP] B [SEP]`` in max_seq_length with A and B non-empty; A is a run of whole
    leading sentences of its document (front/back truncation aside), B of its own document (the
    next sentences when IsNext); the label is 0/1; the table is the same for the same seed."""
    from lmforge.objectives.sentence_pairs import (A_END, A_START, B_END, B_START, IS_RANDOM_NEXT, assemble_pair,
                                                   build_instances)

    lengths = [n for document in documents for n in document]
    sentence_offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    document_offsets = np.concatenate(([0], np.cumsum([len(d) for d in documents]))).astype(np.int64)
    args = dict(seed=seed, dupe_round=dupe_round, max_seq_length=max_seq_length, short_seq_prob=short_seq_prob)
    table = build_instances(sentence_offsets, document_offsets, **args)
    assert np.array_equal(table, build_instances(sentence_offsets, document_offsets, **args))
    tokens = np.arange(int(sentence_offsets[-1]), dtype=np.int64) + 10  # token i has id i + 10
    doc_of_token = np.repeat(np.arange(len(documents)), [sum(d) for d in documents])
    for row in table:
        a_start, a_end, b_start, b_end, label = (int(row[c]) for c in (A_START, A_END, B_START, B_END, IS_RANDOM_NEXT))
        assert label in (0, 1)
        assert 0 <= a_start < a_end <= len(tokens) and 0 <= b_start < b_end <= len(tokens)
        assert (a_end - a_start) + (b_end - b_start) + 3 <= max_seq_length
        assert doc_of_token[a_start] == doc_of_token[a_end - 1]  # A never crosses documents
        assert doc_of_token[b_start] == doc_of_token[b_end - 1]
        if label == 0:  # IsNext: B follows A in the same document
            assert doc_of_token[b_start] == doc_of_token[a_start] and b_start >= a_end
        input_ids, types = assemble_pair(tokens, row, cls_id=1, sep_id=2)
        assert input_ids[0] == 1 and input_ids[-1] == 2 and list(input_ids).count(2) == 2
        assert len(input_ids) <= max_seq_length and types[0] == 0 and types[-1] == 1
