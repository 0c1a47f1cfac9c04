"""Every kind of the table: training, layout, save -> from_dir round trips, AutoTokenizer parity,
the special-token layout of each spec and the word-start rule used by whole-word masking."""

from __future__ import annotations

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.tokenization import Tokenizer


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
