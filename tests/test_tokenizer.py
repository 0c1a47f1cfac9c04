"""lmforge.tokenization: BERT WordPiece parity with transformers, the other kinds, files and CLI.

The WordPiece trainer breaks count ties in hash order (huggingface/tokenizers#1794), so the
learned vocabulary may differ between runs; every parity check therefore compares our ids with
transformers loading the very directory we saved, and value checks use vocabulary-independent
facts (alphabet characters, [UNK] for over-long words, special-token layout).
"""

from __future__ import annotations

import gzip
import json
import lzma
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer

SENTENCES = [
    "The quick brown Fox jumps over the lazy dog.",
    "Café naïve résumé: the Zürich office costs 12.50 euros!",
    "東京 is the capital of 日本, and 中文字符 appear here too.",
    "Don't stop (parentheses), [brackets] and \"quotes\" - okay?",
    "Numbers like 3.14159, 2,718 and 1e10 are COMMON in Reports.",
    "HELLO World, MixedCase WordsAreHere and camelCaseWords.",
    "unbelievable unbelievably believer believing relief relieved",
    "Straße ÅNGSTRÖM Ünïcödé señor façade coöperate.",
    "a" * 120 + " is a very long word indeed.",
]
LONG_WORD = "b" * 101  # one character over BERT's max_input_chars_per_word

# Texts for the parity checks: the corpus features plus whitespace and control characters,
# zero-width and non-breaking spaces, a ligature, an unseen emoji and a literal [MASK].
TEXTS = [
    "Café naïve unbelievable 東京!",
    "HELLO World [MASK] MixedCase believer",
    LONG_WORD + " end",
    "x",
    "",
    "  spaced   out\tTabs\nnewline\r\n",
    "Numbers 3.14159, 2,718!!",
    "Straße ﬁ ligature ÅNGSTRÖM \u00e9\u0301 combining",
    "\u200bzero\u00a0width\u0007bell 🙂 emoji",
    "don't (stop) relieved? OK.",
]
PAIRS = [
    "second one",
    "a b c d e f g h i j k l m n o p",
    "q",
    "東京 中文 日本 believing",
    "y" * 5,
    "Façade, coöperate.",
    "r",
    "the lazy dog jumps over the quick brown fox",
    "Zürich",
    "1 2 3 4 5 6 7 8 9",
]


def _write_corpus(path: Path) -> Path:
    rng = random.Random(0)
    words = [w for s in SENTENCES for w in s.split()]
    lines = SENTENCES * 3 + [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(300)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def saved_wordpiece(request, corpus, tmp_path_factory) -> tuple[Tokenizer, Path]:
    tokenizer = Tokenizer.train([str(corpus)], vocab_size=200, lowercase=request.param, show_progress=False)
    directory = tmp_path_factory.mktemp("wordpiece")
    tokenizer.save(directory)
    return tokenizer, directory


def _slow_bert_class():
    try:  # transformers 5 keeps the pure-Python tokenizer under this name
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

        return BertTokenizerLegacy
    except ImportError:  # transformers 4: BertTokenizer is the pure-Python one
        from transformers import BertTokenizer

        return BertTokenizer


def _vocab_only_dir(source: Path, target: Path, with_config: bool) -> Path:
    target.mkdir()
    shutil.copy(source / "vocab.txt", target)
    if with_config:
        shutil.copy(source / "tokenizer_config.json", target)
    return target


def _ours(tokenizer: Tokenizer, text: str, pair: str | None = None, max_length: int | None = None) -> dict:
    return tokenizer.encode(text, pair, max_length=max_length)


def _theirs(hf, text: str, pair: str | None = None, max_length: int | None = None) -> dict:
    kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
    out = hf(text, pair, return_token_type_ids=True, return_attention_mask=True, **kwargs)
    return {key: out[key] for key in ("input_ids", "token_type_ids", "attention_mask")}


# ------------------------------------------------------------------------- WordPiece = BERT
def test_wordpiece_matches_transformers_fast_and_slow(saved_wordpiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizer, directory = saved_wordpiece
    fast = transformers.BertTokenizerFast.from_pretrained(directory)
    auto = transformers.AutoTokenizer.from_pretrained(directory)
    slow = _slow_bert_class().from_pretrained(_vocab_only_dir(directory, tmp_path / "slow", with_config=True))
    assert slow.do_lower_case == tokenizer.lowercase
    for text in TEXTS:
        ours = _ours(tokenizer, text)
        for hf in (fast, auto, slow):
            assert _theirs(hf, text) == ours, (type(hf).__name__, text)
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        assert _theirs(fast, text, pair) == _ours(tokenizer, text, pair), text
        assert _theirs(slow, text, pair) == _ours(tokenizer, text, pair), text
        for max_length in (7, 8, 9, 12):
            ours = _ours(tokenizer, text, pair, max_length)
            assert len(ours["input_ids"]) <= max_length
            assert _theirs(fast, text, pair, max_length) == ours, (text, max_length)
            # With both texts cut to an odd budget (max_length - 3), the slow tokenizer (like
            # BERT's _truncate_seq_pair) gives the spare token to the first text, the Rust one
            # to the longer; we follow the fast one, so compare slow on even budgets only.
            if (max_length - 3) % 2 == 0:
                assert _theirs(slow, text, pair, max_length) == ours, (text, max_length)
    # and the other way round: a directory written by transformers loads with the same ids
    fast.save_pretrained(tmp_path / "from_hf")
    reloaded = Tokenizer.from_dir(tmp_path / "from_hf")
    assert (reloaded.kind, reloaded.lowercase) == ("wordpiece", tokenizer.lowercase)
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        assert reloaded.encode(text, pair, max_length=9) == tokenizer.encode(text, pair, max_length=9)


def test_wordpiece_follows_bert_rules(saved_wordpiece):
    tokenizer, _ = saved_wordpiece
    tokens = lambda text: tokenizer.convert_ids_to_tokens(tokenizer.encode(text)["input_ids"])  # noqa: E731
    assert [tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id] == [
        0, 1, 2, 3, 4,
    ]
    assert tokenizer.convert_ids_to_tokens(range(5)) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # CJK characters are split one per token; punctuation is its own token
    assert tokens("東京!") == ["[CLS]", "東", "京", "!", "[SEP]"]
    # a word over 100 characters is one [UNK]; 100 characters still gets word pieces
    assert tokens(LONG_WORD) == ["[CLS]", "[UNK]", "[SEP]"]
    assert "[UNK]" not in tokens("b" * 100)
    assert tokens("[MASK]") == ["[CLS]", "[MASK]", "[SEP]"]
    pieces = tokens("Café")[1:-1]
    if tokenizer.lowercase:  # lowercasing strips accents too, as BertTokenizer(do_lower_case=True)
        assert "".join(p.removeprefix("##") for p in pieces) == "cafe"
        assert tokenizer.decode(tokenizer.encode("Café ÅNGSTRÖM!")["input_ids"]) == "cafe angstrom!"
    else:
        assert "".join(p.removeprefix("##") for p in pieces) == "Café"
        assert tokenizer.decode(tokenizer.encode("Café ÅNGSTRÖM!")["input_ids"]) == "Café ÅNGSTRÖM!"
    encoded = tokenizer.encode("a b", "c")
    assert encoded["input_ids"][0] == 2 and encoded["input_ids"].count(3) == 2
    assert encoded["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    assert encoded["attention_mask"] == [1] * 6
    # an empty second text gives the single layout (BERT run_classifier: `if example.text_b`)
    assert tokenizer.encode("a b", "") == tokenizer.encode("a b")


def test_batch_call_matches_transformers(saved_wordpiece):
    transformers = pytest.importorskip("transformers")
    tokenizer, directory = saved_wordpiece
    fast = transformers.BertTokenizerFast.from_pretrained(directory)
    texts, pairs = TEXTS[:4] + TEXTS[5:], PAIRS[:4] + PAIRS[5:]
    cases = [
        ({"max_length": 512, "padding": "longest"}, None),
        ({"max_length": 9, "padding": "longest"}, pairs),
        ({"max_length": 16, "padding": "max_length"}, None),
        ({"max_length": 16, "padding": "max_length"}, pairs),
    ]
    for kwargs, batch_pairs in cases:
        ours = tokenizer(texts, batch_pairs, **kwargs)
        theirs = fast(texts, batch_pairs, truncation=True, return_tensors="pt", **kwargs)
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert ours[key].dtype == torch.long
            assert torch.equal(ours[key], theirs[key]), (kwargs, key)
        assert ours["word_ids"] == [theirs.word_ids(i) for i in range(len(texts))]
    assert tokenizer(texts, max_length=16, padding="max_length")["input_ids"].shape == (len(texts), 16)
    ragged = tokenizer(texts[:2], padding=False, return_tensors=None)
    assert [len(row) for row in ragged["input_ids"]] == [len(tokenizer.encode(t)["input_ids"]) for t in texts[:2]]
    with pytest.raises(ValueError):
        tokenizer(texts[:2], padding=False)  # ragged rows cannot become one tensor


def test_calls_leave_backend_settings_alone(saved_wordpiece):
    tokenizer, _ = saved_wordpiece
    tokenizer.backend.enable_truncation(5)
    try:
        tokenizer(TEXTS, max_length=12, padding="max_length")
        tokenizer.encode(TEXTS[0], max_length=None)
        assert tokenizer.backend.truncation["max_length"] == 5
        assert tokenizer.backend.padding is None
    finally:
        tokenizer.backend.no_truncation()


def test_round_trip_tokenizer_json_and_vocab_txt(saved_wordpiece, tmp_path):
    tokenizer, directory = saved_wordpiece
    loaded = [
        Tokenizer.from_dir(directory),
        Tokenizer.from_dir(_vocab_only_dir(directory, tmp_path / "vocab_config", with_config=True)),
    ]
    for other in loaded:
        assert (other.kind, other.lowercase) == ("wordpiece", tokenizer.lowercase)
        assert other.vocab_size == tokenizer.vocab_size
        assert other.fingerprint() == tokenizer.fingerprint()
        for text, pair in zip(TEXTS, PAIRS, strict=True):
            assert other.encode(text, pair, max_length=9) == tokenizer.encode(text, pair, max_length=9)
    # a bare vocab.txt defaults to lowercasing, as BertTokenizer does
    bare = Tokenizer.from_dir(_vocab_only_dir(directory, tmp_path / "bare", with_config=False))
    assert bare.lowercase is True
    assert (bare.fingerprint() == tokenizer.fingerprint()) == tokenizer.lowercase
    # saving again writes the same pipeline
    loaded[1].save(tmp_path / "again")
    assert Tokenizer.from_dir(tmp_path / "again").fingerprint() == tokenizer.fingerprint()
    assert (tmp_path / "again" / "vocab.txt").read_text(encoding="utf-8") == (directory / "vocab.txt").read_text(
        encoding="utf-8"
    )


def test_word_start_mask_wordpiece(saved_wordpiece):
    tokenizer, _ = saved_wordpiece
    mask = tokenizer.word_start_mask()
    assert mask.dtype == np.bool_ and mask.shape == (tokenizer.vocab_size,)
    tokens = tokenizer.convert_ids_to_tokens(range(tokenizer.vocab_size))
    continuations = [i for i, t in enumerate(tokens) if t.startswith("##")]
    assert continuations and not mask[continuations].any()
    assert mask[[tokenizer.token_to_id(t) for t in ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "東", "!")]].all()
    assert mask.sum() == tokenizer.vocab_size - len(continuations)
    assert tokenizer.special_ids == frozenset(range(5))


def test_encode_plain_decode_and_lookups(saved_wordpiece):
    tokenizer, _ = saved_wordpiece
    plain = tokenizer.encode_plain(TEXTS)
    assert plain == [tokenizer.encode(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    assert plain == [tokenizer.encode(t)["input_ids"][1:-1] for t in TEXTS]
    ids = tokenizer(["東京 x"])["input_ids"][0]
    assert tokenizer.decode(ids) == "東 京 x"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "[CLS] 東 京 x [SEP]"
    assert tokenizer.token_to_id("[MASK]") == 4 and tokenizer.token_to_id("not-a-token") is None


# ------------------------------------------------------------------------- the other kinds
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


def test_training_reads_jsonl_and_compressed_files(corpus, tmp_path):
    lines = corpus.read_text(encoding="utf-8").splitlines()
    jsonl_gz = tmp_path / "corpus.jsonl.gz"
    with gzip.open(jsonl_gz, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": line, "id": i}) + "\n" for i, line in enumerate(lines))
    txt_xz = tmp_path / "corpus.txt.xz"
    with lzma.open(txt_xz, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    # byte-level BPE training is deterministic (no "##" pieces), so the vocabularies must agree
    prints = {
        Tokenizer.train([path], kind="byte_bpe", vocab_size=350, show_progress=False).fingerprint()
        for path in (corpus, jsonl_gz, txt_xz)
    }
    assert len(prints) == 1
    half = tmp_path / "half.txt"
    half.write_text("\n".join(lines[: len(lines) // 2]), encoding="utf-8")
    assert Tokenizer.train([half], kind="byte_bpe", vocab_size=350, show_progress=False).fingerprint() not in prints
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        Tokenizer.train([bad], vocab_size=100, show_progress=False)


def test_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="missing.txt"):
        Tokenizer.train([corpus, tmp_path / "missing.txt"], show_progress=False)
    with pytest.raises(UserError, match="kind"):
        Tokenizer.train([corpus], kind="sentencepiece", show_progress=False)
    with pytest.raises(UserError, match="no_such_dir"):
        Tokenizer.from_dir(tmp_path / "no_such_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        Tokenizer.from_dir(tmp_path / "empty")


# ------------------------------------------------------------------------- CLI
def test_cli_train_and_encode(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--files", str(corpus), "--vocab-size", "180", "--cased", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocab size 180" in printed and str(out) in printed
    tokenizer = Tokenizer.from_dir(out)
    assert (tokenizer.kind, tokenizer.lowercase, tokenizer.vocab_size) == ("wordpiece", False, 180)
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "東京 x", "--pair", "!"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "tokens: [CLS] 東 京 x [SEP] ! [SEP]"
    assert printed[1].split()[1:] == [str(i) for i in tokenizer.encode("東京 x", "!")["input_ids"]]
    assert printed[2].split()[1:] == ["0", "0", "0", "0", "0", "1", "1"]


def test_cli_bad_input_path(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main(["tokenizer", "train", "--files", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "none"), "hi"]) == 2
