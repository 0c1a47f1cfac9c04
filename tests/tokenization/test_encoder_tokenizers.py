"""RoBERTa's byte-level BPE and ALBERT's SentencePiece unigram, built here (no download): ids
identical to transformers' RobertaTokenizerFast and AlbertTokenizerFast on a varied sample
(accents, CJK, emoji, URLs, very long words, leading spaces), single texts and pairs, from
our saved directories, from pre-split words with add_prefix_space, and from a SentencePiece
``spiece.model`` trained by the ``sentencepiece`` package."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer

SAMPLE = [
    *TEXTS,
    "https://example.com/a/b?x=1&y=2#frag visit www.test.org!",
    " leading space",
    "   three leading spaces",
    "🙂🙃 emoji 👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "東京都 中文 日本語テキスト 한국어 ภาษาไทย",
    "x" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Ünïcödé ÀÉÎÕÜ ñ ç Ångström",
    "``LaTeX'' quotes (and) £5 – €3 \"x\" - .",
    "ＦＵＬＬ width ①② ｶﾀｶﾅ",
]
SECONDS = [*PAIRS, *PAIRS][: len(SAMPLE)]
WORDS = [["Hello", "world", "!"], ["EU", "rejects", "German", "call"], ["Zürich", "東京", "🙂"], ["x" * 50], ["a"]]


def _assert_same_ids(ours: Tokenizer, hf, label: str) -> None:
    for text, second in zip(SAMPLE, SECONDS, strict=True):
        for args in ((text,), (text, second)):
            mine = ours.encode(*args)
            theirs = hf(*args, return_token_type_ids=True)
            assert mine["input_ids"] == theirs["input_ids"], (label, args)
            assert mine["token_type_ids"] == theirs["token_type_ids"], (label, args)
        truncated = ours.encode(text, second, max_length=16)["input_ids"]
        assert truncated == hf(text, second, truncation=True, max_length=16)["input_ids"], (label, text)


@pytest.fixture(scope="module")
def byte_bpe(corpus) -> Tokenizer:
    return Tokenizer.train([corpus], kind="byte_bpe", vocab_size=500, lowercase=False, show_progress=False)


def test_byte_bpe_matches_roberta_tokenizer_fast(byte_bpe, tmp_path):
    transformers = pytest.importorskip("transformers")
    byte_bpe.save(tmp_path)
    hf = transformers.RobertaTokenizerFast.from_pretrained(tmp_path)
    assert len(hf) == byte_bpe.vocab_size
    assert [hf.cls_token, hf.sep_token, hf.pad_token, hf.unk_token, hf.mask_token] == ["<s>", "</s>", "<pad>", "<unk>",
                                                                                       "<mask>"]
    assert (byte_bpe.cls_id, byte_bpe.pad_id, byte_bpe.sep_id, byte_bpe.unk_id, byte_bpe.mask_id) == (0, 1, 2, 3, 4)
    _assert_same_ids(byte_bpe, hf, "byte_bpe")
    _assert_same_ids(Tokenizer.from_dir(tmp_path), hf, "byte_bpe reloaded")


def test_byte_bpe_is_lossless_on_raw_text(byte_bpe):
    """No normalisation or pre-tokenisation heuristics beyond GPT-2's split: every text, spaces,
    emoji and unseen scripts included, decodes back to itself without unknown tokens."""
    assert byte_bpe.backend.normalizer is None
    for text in SAMPLE:
        ids = byte_bpe.encode(text, add_special_tokens=False)["input_ids"]
        assert byte_bpe.unk_id not in ids
        assert byte_bpe.decode(ids) == text


def test_add_prefix_space_for_pre_split_words(byte_bpe, corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    spaced = byte_bpe.with_prefix_space()
    assert spaced.add_prefix_space and not byte_bpe.add_prefix_space
    spaced.save(tmp_path)
    hf = transformers.RobertaTokenizerFast.from_pretrained(tmp_path)
    assert hf.add_prefix_space
    for words in WORDS:
        mine = spaced.backend.encode(words, is_pretokenized=True)
        theirs = hf(words, is_split_into_words=True)
        assert mine.ids == theirs["input_ids"], words
        assert mine.word_ids == theirs.word_ids(), words
        # every word, the first one included, starts with the space marker
        first_pieces = [mine.tokens[mine.word_ids.index(w)] for w in range(len(words))]
        assert all(piece.startswith("Ġ") for piece in first_pieces), first_pieces
    _assert_same_ids(spaced, hf, "add_prefix_space")
    assert Tokenizer.from_dir(tmp_path).add_prefix_space
    with pytest.raises(UserError, match="byte-level"):
        Tokenizer.train([corpus], kind="unigram", vocab_size=60,
                        show_progress=False).with_prefix_space()


@pytest.mark.parametrize("lowercase", [True, False], ids=["uncased", "cased"])
def test_unigram_matches_albert_tokenizer_fast(corpus, lowercase, tmp_path):
    transformers = pytest.importorskip("transformers")
    unigram = Tokenizer.train([corpus], kind="unigram", vocab_size=400, lowercase=lowercase, show_progress=False)
    unigram.save(tmp_path)
    hf = transformers.AlbertTokenizerFast.from_pretrained(tmp_path)
    assert len(hf) == unigram.vocab_size
    assert (hf.do_lower_case, hf.keep_accents) == (lowercase, not lowercase)
    assert [unigram.pad_id, unigram.unk_id, unigram.cls_id, unigram.sep_id, unigram.mask_id] == [
        hf.pad_token_id, hf.unk_token_id, hf.cls_token_id, hf.sep_token_id, hf.mask_token_id]
    _assert_same_ids(unigram, hf, f"unigram {lowercase}")
    _assert_same_ids(Tokenizer.from_dir(tmp_path), hf, f"unigram {lowercase} reloaded")


def _train_spiece(corpus: Path, directory: Path) -> Path:
    """An ALBERT-style SentencePiece model (the settings of google-research/albert's README)."""
    spm = pytest.importorskip("sentencepiece")
    directory.mkdir()
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "albert"), vocab_size=150, model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        user_defined_symbols=["(", ")", '"', "-", ".", "–", "£", "€"], character_coverage=0.99995,
        minloglevel=2,
    )
    shutil.move(directory / "albert.model", directory / "spiece.model")
    return directory


def test_spiece_model_matches_albert_tokenizer_fast(corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("google.protobuf")  # transformers reads .model files through protobuf
    directory = _train_spiece(corpus, tmp_path / "spiece")
    ours = Tokenizer.from_dir(directory)
    hf = transformers.AlbertTokenizerFast.from_pretrained(directory)
    assert ours.kind == "unigram" and ours.lowercase and ours.vocab_size == len(hf)
    assert ours.convert_ids_to_tokens(range(5)) == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    _assert_same_ids(ours, hf, "spiece.model")
    # the user-defined pieces stay whole, as SentencePiece matches them first
    pieces = ours.convert_ids_to_tokens(ours.encode("word(in)brackets", add_special_tokens=False)["input_ids"])
    assert "(" in pieces and ")" in pieces
    # saved in our layout: the same ids, and transformers still agrees
    ours.save(tmp_path / "saved")
    again = Tokenizer.from_dir(tmp_path / "saved")
    for text in SAMPLE:
        assert again.encode(text)["input_ids"] == ours.encode(text)["input_ids"], text


def test_a_checkpoint_with_only_spiece_model_has_a_tokenizer(corpus, tmp_path):
    """ALBERT hub repositories ship spiece.model without tokenizer.json: lmforge.load finds it."""
    from lmforge.api import load_tokenizer

    directory = _train_spiece(corpus, tmp_path / "albert")
    found = load_tokenizer(directory)
    assert found is not None and found.kind == "unigram"
    assert found.encode("a word")["input_ids"] == Tokenizer.from_dir(directory).encode("a word")["input_ids"]


def test_spiece_model_cased_options(corpus, tmp_path):
    """do_lower_case / keep_accents from tokenizer_config.json, as AlbertTokenizer reads them."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("google.protobuf")
    directory = _train_spiece(corpus, tmp_path / "spiece")
    (directory / "tokenizer_config.json").write_text('{"do_lower_case": false, "keep_accents": true}')
    ours = Tokenizer.from_dir(directory)
    hf = transformers.AlbertTokenizerFast.from_pretrained(directory)
    assert not ours.lowercase and not hf.do_lower_case
    _assert_same_ids(ours, hf, "spiece.model cased")


def test_spiece_reader_rejects_other_files(tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "spiece.model").write_bytes(b"\xff\xff\xff not a model")
    with pytest.raises(UserError, match="SentencePiece"):
        Tokenizer.from_dir(directory)
