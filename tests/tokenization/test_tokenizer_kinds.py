"""Every kind of the table: training, layout, save -> from_dir round trips, AutoTokenizer parity,
the special-token layout of each spec and the word-start rule used by whole-word masking."""

from __future__ import annotations

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.errors import UserError
from lmforge.tokenization import KIND_SPECS, Tokenizer


@pytest.mark.parametrize("kind", ["bpe", "byte_bpe", "unigram"])
@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_other_kinds_train_encode_and_round_trip(kind, lowercase, corpus, tmp_path):
    tokenizer = Tokenizer.train([corpus], kind=kind, vocab_size=400, lowercase=lowercase, show_progress=False)
    assert (tokenizer.kind, tokenizer.lowercase) == (kind, lowercase)
    assert tokenizer.vocab_size <= 400 and len(tokenizer.special_ids) == 5
    text = "Café naïve unbelievable, the quick Dog!"
    encoded = tokenizer.encode(text, "relief")
    ids, types = encoded["input_ids"], encoded["token_type_ids"]
    cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id
    assert ids[0] == cls_id and ids[-1] == sep_id
    if kind == "unigram":  # ALBERT: [CLS] A [SEP] B [SEP], B in segment 1
        assert tokenizer.convert_ids_to_tokens([cls_id, sep_id]) == ["[CLS]", "[SEP]"]
        assert ids.count(sep_id) == 2 and types[-1] == 1 and types[0] == 0
    else:  # RoBERTa: <s> A </s></s> B </s>, one segment
        assert tokenizer.convert_ids_to_tokens([cls_id, sep_id]) == ["<s>", "</s>"]
        first_sep = ids.index(sep_id)
        assert ids[first_sep + 1] == sep_id and ids.count(sep_id) == 3 and set(types) == {0}
    expected = text
    if lowercase:  # byte_bpe only lowercases; BERT's and ALBERT's normalisers also strip accents
        expected = text.lower() if kind == "byte_bpe" else "cafe naive unbelievable, the quick dog!"
    assert tokenizer.decode(tokenizer.encode(text)["input_ids"]) == expected
    tokenizer.save(tmp_path)
    loaded = Tokenizer.from_dir(tmp_path)
    assert (loaded.kind, loaded.lowercase) == (kind, lowercase)
    assert loaded.fingerprint() == tokenizer.fingerprint()
    for text_a, pair in zip(TEXTS, PAIRS, strict=True):
        assert loaded.encode(text_a, pair, max_length=10) == tokenizer.encode(text_a, pair, max_length=10)
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text_a in TEXTS:
        assert auto(text_a)["input_ids"] == tokenizer.encode(text_a)["input_ids"], text_a


def test_word_start_mask_other_kinds(corpus):
    byte_bpe = Tokenizer.train([corpus], kind="byte_bpe", vocab_size=400, show_progress=False)
    mask = byte_bpe.word_start_mask()
    tokens = byte_bpe.convert_ids_to_tokens(range(byte_bpe.vocab_size))
    for i, token in enumerate(tokens):
        if token.startswith("Ġ") or token in {"!", ",", ".", "(", "<s>", "</s>", "<mask>"}:
            assert mask[i], token
        elif token.isascii() and token.isalpha():  # letters without a space marker continue a word
            assert not mask[i], token
    unigram = Tokenizer.train([corpus], kind="unigram", vocab_size=400, show_progress=False)
    mask = unigram.word_start_mask()
    tokens = unigram.convert_ids_to_tokens(range(unigram.vocab_size))
    for i, token in enumerate(tokens):
        # ALBERT _is_start_piece: the word marker, punctuation, or any non a-z character
        if token.startswith("▁") or token in {"[CLS]", "[SEP]", "[MASK]", "<pad>", "!", ","} or "1" in token:
            assert mask[i], token
        elif token.isascii() and token.isalpha():
            assert not mask[i], token
    assert mask[unigram.token_to_id("東")]


# ------------------------------------------------------------------------- the table, kind by kind
# Expected layout of encode(A, B) per kind: role tokens and the texts, with their segment ids.
PAIR_LAYOUTS = {
    "wordpiece": [("cls", 0), ("A", 0), ("sep", 0), ("B", 1), ("sep", 1)],
    "bpe": [("cls", 0), ("A", 0), ("sep", 0), ("sep", 0), ("B", 0), ("sep", 0)],
    "byte_bpe": [("cls", 0), ("A", 0), ("sep", 0), ("sep", 0), ("B", 0), ("sep", 0)],
    "gpt2_byte_bpe": [("A", 0), ("B", 1)],
    "unigram": [("cls", 0), ("A", 0), ("sep", 0), ("B", 1), ("sep", 1)],
    "llama_bpe": [("bos", 0), ("A", 0), ("bos", 1), ("B", 1)],
    "t5_unigram": [("A", 0), ("eos", 0), ("B", 0), ("eos", 0)],
}


@pytest.fixture(scope="module")
def trained(corpus) -> dict[str, Tokenizer]:
    return {
        name: Tokenizer.train([corpus], kind=name, vocab_size=400, lowercase=False, show_progress=False)
        for name in KIND_SPECS
    }


def test_every_kind_has_a_pair_layout():
    assert set(PAIR_LAYOUTS) == set(KIND_SPECS)


@pytest.mark.parametrize("kind", list(KIND_SPECS))
def test_special_tokens_follow_the_spec(kind, trained):
    tokenizer, spec = trained[kind], KIND_SPECS[kind]
    leading = spec.specials.leading
    assert tokenizer.convert_ids_to_tokens(range(len(leading))) == list(leading)
    for role, token in spec.specials.roles.items():
        assert getattr(tokenizer, f"{role}_id") == tokenizer.token_to_id(token), role
    assert set(range(len(leading))) <= tokenizer.special_ids
    a = tokenizer.encode("the quick dog", add_special_tokens=False)["input_ids"]
    b = tokenizer.encode("relief", add_special_tokens=False)["input_ids"]
    ids, types = [], []
    for part, segment in PAIR_LAYOUTS[kind]:
        piece = {"A": a, "B": b}.get(part) or [getattr(tokenizer, f"{part}_id")]
        ids += piece
        types += [segment] * len(piece)
    assert tokenizer.encode("the quick dog", "relief") == {
        "input_ids": ids, "token_type_ids": types, "attention_mask": [1] * len(ids),
    }


def test_t5_unigram_sentinels_take_the_top_ids(trained):
    t5 = trained["t5_unigram"]
    top = t5.vocab_size - 1
    assert t5.convert_ids_to_tokens([0, 1, 2]) == ["<pad>", "</s>", "<unk>"]
    assert (t5.pad_id, t5.eos_id, t5.unk_id) == (0, 1, 2)
    assert t5.cls_id is None and t5.mask_id is None
    assert t5.sentinel_ids == list(range(top, top - 100, -1))
    assert t5.convert_ids_to_tokens([top, top - 99]) == ["<extra_id_0>", "<extra_id_99>"]
    assert set(t5.sentinel_ids) <= t5.special_ids and t5.word_start_mask()[t5.sentinel_ids].all()
    # a sentinel inside a text is one token, and decoding drops it with the other specials
    ids = t5.encode("the dog <extra_id_0> fox")["input_ids"]
    assert top in ids and ids[-1] == t5.eos_id
    assert t5.decode(ids) == "the dog fox"
    # the learned pieces fill exactly the ids between the specials and the sentinels
    assert max(t5.backend.get_vocab(with_added_tokens=False).values()) < top - 99
    assert trained["unigram"].sentinel_ids == []


def test_t5_unigram_vocab_must_leave_room_for_sentinels(corpus):
    with pytest.raises(UserError, match="103 special tokens"):
        Tokenizer.train([corpus], kind="t5_unigram", vocab_size=103, show_progress=False)


@pytest.mark.parametrize("kind", list(KIND_SPECS))
def test_every_kind_round_trips_save_and_from_dir(kind, trained, tmp_path):
    tokenizer = trained[kind]
    tokenizer.save(tmp_path)
    loaded = Tokenizer.from_dir(tmp_path)
    assert (loaded.kind, loaded.lowercase, loaded.vocab_size) == (kind, False, tokenizer.vocab_size)
    assert loaded.fingerprint() == tokenizer.fingerprint()
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.special_ids == tokenizer.special_ids
    assert (loaded.word_start_mask() == tokenizer.word_start_mask()).all()
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        assert loaded.encode(text, pair) == tokenizer.encode(text, pair), text
        assert loaded.encode(text, pair, max_length=10) == tokenizer.encode(text, pair, max_length=10), text
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        assert auto(text, pair)["input_ids"] == tokenizer.encode(text, pair)["input_ids"], text


# (kind, token, starts a word): the continuation prefix, the byte-level space marker and
# SentencePiece's "▁", each with punctuation and ALBERT's non a-z rule
WORD_STARTS = [
    ("wordpiece", "play", True), ("wordpiece", "##ing", False), ("wordpiece", ",", True),
    ("bpe", "play", True), ("bpe", "##ing", False),
    ("byte_bpe", "Ġplay", True), ("byte_bpe", "ing", False), ("byte_bpe", ",", True), ("byte_bpe", "Ċ", True),
    ("gpt2_byte_bpe", "Ġthe", True), ("gpt2_byte_bpe", "the", False), ("gpt2_byte_bpe", "!?", True),
    ("unigram", "▁play", True), ("unigram", "ing", False), ("unigram", ",", True), ("unigram", "1", True),
    ("unigram", "é", True),
    ("llama_bpe", "▁The", True), ("llama_bpe", "ing", False), ("llama_bpe", "<0x0A>", True),
    ("t5_unigram", "▁The", True), ("t5_unigram", "ing", False), ("t5_unigram", ".", True),
]


@pytest.mark.parametrize(("kind", "token", "starts"), WORD_STARTS)
def test_word_start_rule_per_kind(kind, token, starts):
    assert KIND_SPECS[kind].starts_word(token) is starts


def test_word_start_rules_cover_every_kind():
    assert {kind for kind, _, _ in WORD_STARTS} == set(KIND_SPECS)
