"""T5's SentencePiece unigram with ``<extra_id_N>`` sentinels, built here (no download) from a
``spiece.model`` trained by the ``sentencepiece`` package with T5's special ids (pad 0, </s> 1,
<unk> 2, no <s>): ids identical to transformers' T5TokenizerFast on the same file, from the
file itself, from transformers' saved tokenizer.json and from ours; a T5 checkpoint directory's
tokenizer loads; ``sentinel_ids`` finds the sentinels by name and refuses a vocabulary without."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer
from lmforge.tokenization.sentinels import sentinel_ids

transformers = pytest.importorskip("transformers")
pytest.importorskip("google.protobuf")  # transformers reads .model files through protobuf

SAMPLE = [*TEXTS, "  leading and   inner   spaces ", "Ünïcödé ÀÉÎÕÜ ñ ç", "ＦＵＬＬ width ①②", "x" * 200,
          "the dog <extra_id_0> the fox <extra_id_1>.", "東京 🙂 emoji"]
SECONDS = [*PAIRS, *PAIRS, *PAIRS][: len(SAMPLE)]


def _train_t5_spiece(corpus: Path, directory: Path, config: str | None = None) -> Path:
    spm = pytest.importorskip("sentencepiece")
    directory.mkdir()
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "t5"), vocab_size=150,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=0.99995, minloglevel=2)
    shutil.move(directory / "t5.model", directory / "spiece.model")
    if config is not None:
        (directory / "tokenizer_config.json").write_text(config)
    return directory


def _assert_same_ids(ours: Tokenizer, hf, label: str) -> None:
    for text, second in zip(SAMPLE, SECONDS, strict=True):
        for args in ((text,), (text, second)):
            assert ours.encode(*args)["input_ids"] == hf(*args)["input_ids"], (label, args)
        truncated = ours.encode(text, second, max_length=16)["input_ids"]
        assert truncated == hf(text, second, truncation=True, max_length=16)["input_ids"], (label, text)
        ids = hf(text)["input_ids"]
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), (label, text)


@pytest.fixture(scope="module")
def t5_directory(corpus, tmp_path_factory) -> Path:
    return _train_t5_spiece(corpus, tmp_path_factory.mktemp("t5") / "spiece")


def test_spiece_model_matches_t5_tokenizer_fast(t5_directory, tmp_path):
    ours = Tokenizer.from_dir(t5_directory)
    hf = transformers.T5TokenizerFast.from_pretrained(t5_directory)
    assert ours.kind == "t5_unigram" and not ours.lowercase and ours.vocab_size == len(hf) == 250
    assert (ours.pad_id, ours.eos_id, ours.unk_id) == (hf.pad_token_id, hf.eos_token_id, hf.unk_token_id) == (0, 1, 2)
    expected = hf.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(100)])
    assert ours.sentinel_ids == sentinel_ids(ours, 100) == expected == list(range(249, 149, -1))
    _assert_same_ids(ours, hf, "spiece.model")
    # transformers' own save (tokenizer.json) and ours read back to the same ids
    hf.save_pretrained(tmp_path / "theirs")
    _assert_same_ids(Tokenizer.from_dir(tmp_path / "theirs"), hf, "transformers' tokenizer.json")
    assert Tokenizer.from_dir(tmp_path / "theirs").kind == "t5_unigram"
    ours.save(tmp_path / "ours")
    again = transformers.T5TokenizerFast.from_pretrained(tmp_path / "ours")
    _assert_same_ids(Tokenizer.from_dir(tmp_path / "ours"), again, "our tokenizer.json")
    _assert_same_ids(ours, again, "our tokenizer.json, transformers reading it")


def test_t5_checkpoint_directory_has_its_tokenizer(t5_directory, tmp_path):
    """A T5 checkpoint ships spiece.model next to config.json: lmforge.load finds both."""
    import lmforge

    model = lmforge.build("t5-tiny", task="seq2seq_lm", seed=0, vocab_size=256)
    directory = tmp_path / "checkpoint"
    lmforge.save(model, directory, format="hf")
    shutil.copy(t5_directory / "spiece.model", directory / "spiece.model")
    loaded, tokenizer = lmforge.load(directory)
    assert loaded.config.family == "t5" and tokenizer.kind == "t5_unigram"
    assert tokenizer.encode("the dog")["input_ids"][-1] == loaded.config.eos_token_id


def test_sentinel_free_vocabulary_is_a_clear_error(corpus, t5_directory, tmp_path):
    shutil.copytree(t5_directory, tmp_path / "none")
    (tmp_path / "none" / "tokenizer_config.json").write_text('{"tokenizer_class": "T5Tokenizer", "extra_ids": 0}')
    without = Tokenizer.from_dir(tmp_path / "none")
    assert without.sentinel_ids == [] and without.vocab_size == 150
    with pytest.raises(UserError, match=r"has no sentinel tokens \(<extra_id_0> \.\.\. <extra_id_99> needed\)"):
        sentinel_ids(without, 100)
    few = Tokenizer.from_dir(t5_directory)
    with pytest.raises(UserError, match="has only 100 sentinel tokens"):
        sentinel_ids(few, 101)
    albert = Tokenizer.train([corpus], kind="unigram", vocab_size=120, show_progress=False)
    with pytest.raises(UserError, match="no sentinel tokens") as error:
        sentinel_ids(albert, 3)
    assert "\n" not in str(error.value)
