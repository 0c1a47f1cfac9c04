"""GPT-2 / RoBERTa vocab.json + merges.txt: ids identical to transformers' GPT2TokenizerFast and
RobertaTokenizerFast built from the same files (written here from a trained byte-level BPE, so
no download), with the special tokens where the released vocabularies put them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer

# special tokens inside text, a leading space, and RoBERTa's <mask> after a space
EXTRA_TEXTS = ["a <mask> b", "x<mask>y <|endoftext|> z", " leading space", "<s>hi</s> there"]
ROBERTA_MASK = {  # as roberta-base's tokenizer_config.json declares it (transformers 5 form)
    "__type": "AddedToken", "content": "<mask>", "lstrip": True, "rstrip": False,
    "normalized": False, "single_word": False, "special": True,
}


@pytest.fixture(scope="module")
def learned(corpus) -> tuple[list[str], list[list[str]]]:
    """Tokens (special tokens removed) and merges of a byte-level BPE trained on the corpus."""
    trained = Tokenizer.train([corpus], kind="byte_bpe", vocab_size=500, lowercase=False, show_progress=False)
    model = json.loads(trained.backend.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].__getitem__)
    return [t for t in tokens if t not in trained.special_tokens.values()], model["merges"]


def _write_vocab_files(directory: Path, tokens: list[str], merges: list[list[str]], config: dict | None) -> Path:
    directory.mkdir()
    vocab = {token: index for index, token in enumerate(tokens)}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    (directory / "merges.txt").write_text("#version: 0.2\n" + lines, encoding="utf-8")
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return directory


def _gpt2_tokens(learned_tokens: list[str]) -> list[str]:
    return [*learned_tokens, "<|endoftext|>"]  # GPT-2: <|endoftext|> is the last id


def _roberta_tokens(learned_tokens: list[str]) -> list[str]:
    return ["<s>", "<pad>", "</s>", "<unk>", *learned_tokens, "<mask>"]  # fairseq dictionary order


CASES = {
    "gpt2": ("gpt2_byte_bpe", _gpt2_tokens, None),
    "gpt2-prefix-space": (
        "gpt2_byte_bpe", _gpt2_tokens, {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True}
    ),
    "roberta": ("byte_bpe", _roberta_tokens, None),
    "roberta-mask-lstrip": ("byte_bpe", _roberta_tokens, {"add_prefix_space": True, "mask_token": ROBERTA_MASK}),
}


@pytest.mark.parametrize("case", CASES)
def test_byte_bpe_vocab_files_match_transformers(case, learned, tmp_path):
    transformers = pytest.importorskip("transformers")
    kind, vocab_tokens, config = CASES[case]
    directory = _write_vocab_files(tmp_path / case, vocab_tokens(learned[0]), learned[1], config)
    theirs = (transformers.GPT2TokenizerFast if kind == "gpt2_byte_bpe" else transformers.RobertaTokenizerFast)
    hf = theirs.from_pretrained(directory)
    ours = Tokenizer.from_dir(directory)
    assert ours.kind == kind
    assert ours.vocab_size == len(hf)
    texts = TEXTS + EXTRA_TEXTS
    pairs = PAIRS + ["second"] * len(EXTRA_TEXTS)
    for text, pair in zip(texts, pairs, strict=True):
        for args in ((text,), (text, pair)):
            mine = ours.encode(*args)
            expected = hf(*args, return_token_type_ids=True, return_attention_mask=True)
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                assert mine[key] == expected[key], (case, args, key)
        assert ours.decode(ours.encode(text)["input_ids"]) == hf.decode(hf(text)["input_ids"], skip_special_tokens=True)
    for role in ("unk", "bos", "eos", "pad", "cls", "sep", "mask"):
        if getattr(hf, f"{role}_token", None) is not None:
            assert getattr(ours, f"{role}_id") == getattr(hf, f"{role}_token_id"), role
    if kind == "byte_bpe":  # with lstrip declared, the space before <mask> belongs to it
        tokens = ours.convert_ids_to_tokens(ours.encode("a <mask>", add_special_tokens=False)["input_ids"])
        assert tokens[-1] == "<mask>" and ("Ġ" in tokens) == ("mask_token" not in (config or {}))
    # saved in our layout, loaded again: same ids; and the directory transformers writes
    ours.save(tmp_path / "saved")
    hf.save_pretrained(tmp_path / "from_hf")
    for again in (Tokenizer.from_dir(tmp_path / "saved"), Tokenizer.from_dir(tmp_path / "from_hf")):
        assert again.kind == kind
        for text, pair in zip(texts, pairs, strict=True):
            assert again.encode(text, pair, max_length=12) == ours.encode(text, pair, max_length=12), text


def test_byte_bpe_vocab_files_layout(learned, tmp_path):
    """GPT-2 adds no tokens around a text; RoBERTa writes <s> A </s></s> B </s>."""
    gpt2 = Tokenizer.from_dir(_write_vocab_files(tmp_path / "gpt2", _gpt2_tokens(learned[0]), learned[1], None))
    plain = gpt2.encode("the dog", add_special_tokens=False)["input_ids"]
    assert gpt2.encode("the dog")["input_ids"] == plain
    assert gpt2.eos_id == gpt2.bos_id == gpt2.unk_id == len(learned[0]) and gpt2.pad_id is None
    roberta = Tokenizer.from_dir(_write_vocab_files(tmp_path / "rob", _roberta_tokens(learned[0]), learned[1], None))
    a = roberta.encode("the dog", add_special_tokens=False)["input_ids"]
    b = roberta.encode("fox", add_special_tokens=False)["input_ids"]
    assert roberta.encode("the dog", "fox")["input_ids"] == [0, *a, 2, 2, *b, 2]
    assert roberta.mask_id == roberta.vocab_size - 1


def test_bad_vocab_files(tmp_path):
    directory = tmp_path / "bad"
    directory.mkdir()
    (directory / "vocab.json").write_text("{not json", encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(UserError, match="vocab.json"):
        Tokenizer.from_dir(directory)
    (directory / "merges.txt").unlink()
    with pytest.raises(UserError, match="neither"):
        Tokenizer.from_dir(directory)
