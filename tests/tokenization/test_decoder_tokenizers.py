"""The decoder families' tokenizers against transformers, built locally from vocabularies
trained on the test corpus (no download): LLaMA's byte-fallback BPE (LlamaTokenizerFast, with
and without the 256 ``<0xNN>`` byte pieces), GPT-2's byte-level BPE saved as tokenizer.json by
GPT2TokenizerFast, and openai-gpt's ``</w>`` BPE saved by OpenAIGPTTokenizer."""

from __future__ import annotations

import json

import pytest
from tokenizer_samples import PAIRS, TEXTS

from lmforge.tokenization import Tokenizer

transformers = pytest.importorskip("transformers")

# Characters the corpus never shows (emoji, Cyrillic, a control character): byte fallback.
UNSEEN = ["🙂 ok", "Привет мир", "tab\there\x01", "x  y   z", " leading", "trailing ", "<s> inside </s>"]
SAMPLE = TEXTS + PAIRS + UNSEEN


def _vocab_and_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list]:
    model = json.loads(tokenizer.backend.to_str())["model"]
    return model["vocab"], [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]


@pytest.fixture(scope="module")
def llama_trained(corpus) -> Tokenizer:
    return Tokenizer.train([corpus], kind="llama_bpe", vocab_size=600, lowercase=False, show_progress=False)


def test_llama_bpe_trains_in_llamas_vocabulary_order(llama_trained):
    assert llama_trained.vocab_size == 600
    assert llama_trained.convert_ids_to_tokens([0, 1, 2, 3, 258]) == ["<unk>", "<s>", "</s>", "<0x00>", "<0xFF>"]
    emoji = llama_trained.encode("🙂", add_special_tokens=False)["input_ids"]
    assert llama_trained.convert_ids_to_tokens(emoji)[-4:] == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
    for text in SAMPLE:
        assert llama_trained.decode(llama_trained.encode(text)["input_ids"]) == text.strip(" ") or " " in text


@pytest.mark.parametrize("byte_pieces", [True, False], ids=["with-byte-pieces", "without"])
def test_llama_ids_equal_llama_tokenizer_fast(llama_trained, byte_pieces, tmp_path):
    vocab, merges = _vocab_and_merges(llama_trained)
    if not byte_pieces:  # unseen characters become <unk> (fused), as in a vocabulary without them
        learned = sorted((t for t in vocab if not t.startswith("<0x")), key=vocab.__getitem__)
        vocab = {token: index for index, token in enumerate(learned)}
    theirs = transformers.LlamaTokenizerFast(vocab=vocab, merges=merges, add_bos_token=True)  # as LLaMA's config
    theirs.save_pretrained(tmp_path)
    ours = Tokenizer.from_dir(tmp_path)
    assert ours.kind == "llama_bpe" and (ours.bos_id, ours.eos_id, ours.unk_id) == (1, 2, 0)
    for text in SAMPLE:
        expected = theirs(text)["input_ids"]
        assert ours.encode(text)["input_ids"] == expected, text
        assert ours.decode(expected) == theirs.decode(expected, skip_special_tokens=True), text
        if byte_pieces:  # lmforge's own trained tokenizer encodes as LlamaTokenizerFast on its files
            assert llama_trained.encode(text)["input_ids"] == expected, text
    for text, pair in zip(TEXTS, PAIRS, strict=True):
        assert ours.encode(text, pair)["input_ids"] == theirs(text, pair)["input_ids"], (text, pair)


def test_gpt2_tokenizer_json_ids_equal_gpt2_tokenizer_fast(corpus, tmp_path):
    trained = Tokenizer.train([corpus], kind="gpt2_byte_bpe", vocab_size=500, lowercase=False, show_progress=False)
    vocab, merges = _vocab_and_merges(trained)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    theirs = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    theirs.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.json").is_file()
    for directory in (tmp_path, tmp_path / "saved"):  # vocab.json + merges.txt, and tokenizer.json
        ours = Tokenizer.from_dir(directory)
        assert ours.kind == "gpt2_byte_bpe" and ours.eos_id == vocab["<|endoftext|>"]
        assert len(theirs("the quick brown fox")["input_ids"]) >= 4
        for text in SAMPLE + ["<|endoftext|>a<|endoftext|>"]:
            assert ours.encode(text)["input_ids"] == theirs(text)["input_ids"], (directory, text)


def test_openai_gpt_tokenizer_json_ids_equal_openai_gpt_tokenizer(corpus, tmp_path):
    """openai-gpt's BPE marks word ends with ``</w>``; its tokenizer.json loads verbatim (kind bpe)."""
    import tokenizers

    backend = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    backend.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    backend.train_from_iterator(corpus.read_text(encoding="utf-8").splitlines(), tokenizers.trainers.BpeTrainer(
        vocab_size=500, special_tokens=["<unk>"], end_of_word_suffix="</w>", show_progress=False))
    vocab, merges = _vocab_and_merges(Tokenizer(backend, "bpe", True, {"unk": "<unk>"}, 512))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    theirs = transformers.OpenAIGPTTokenizer.from_pretrained(tmp_path)
    theirs.save_pretrained(tmp_path / "saved")
    ours = Tokenizer.from_dir(tmp_path / "saved")
    assert ours.kind == "bpe" and ours.unk_id == vocab["<unk>"]
    assert len(theirs("the quick brown fox")["input_ids"]) >= 4
    for text in SAMPLE:
        assert ours.encode(text)["input_ids"] == theirs(text)["input_ids"], text
