"""`lmforge generate --model DIR` on encoder-decoder checkpoints saved by transformers itself
(BartForConditionalGeneration with RoBERTa's byte-level BPE, T5ForConditionalGeneration v1.1
with a T5 unigram tokenizer; tiny, random weights): the text printed is what transformers'
``generate`` produces from the same directory, decoded by the same tokenizer."""

import pytest
import torch
import transformers

from lmforge.cli import main
from lmforge.tokenization import Tokenizer

TEXT = "the cat sat on the mat . the dog sat on the log . a bird sang in the tree .\n" * 20
PROMPT = "the cat sat on the mat"


def _tokenizer(root, kind, vocab_size):
    (root / "corpus.txt").write_text(TEXT)
    return Tokenizer.train([str(root / "corpus.txt")], kind=kind, vocab_size=vocab_size, min_frequency=1,
                           show_progress=False)


@pytest.fixture(scope="module")
def bart_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bart")
    tokenizer = _tokenizer(root, "byte_bpe", 300)
    assert (tokenizer.cls_id, tokenizer.pad_id, tokenizer.sep_id) == (0, 1, 2)
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=tokenizer.vocab_size, d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_position_embeddings=64, init_std=0.3)
    transformers.BartForConditionalGeneration(config).eval().save_pretrained(root / "model")
    tokenizer.save(root / "model")
    return root / "model", tokenizer


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("t5")
    tokenizer = _tokenizer(root, "t5_unigram", 200)
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    head = torch.randn(model.lm_head.weight.shape)  # v1.1: untied
    head[sorted(tokenizer.special_ids)] = 0.0  # words win over the end token and the sentinels: some text shows
    model.lm_head.weight = torch.nn.Parameter(head)
    model.save_pretrained(root / "model")
    tokenizer.save(root / "model")
    return root / "model", tokenizer


def _theirs(directory, tokenizer, **options) -> str:
    reference = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    ids = torch.tensor([tokenizer.encode(PROMPT)["input_ids"]])
    with torch.no_grad():
        out = reference.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
    return tokenizer.decode(out[0, 1:].tolist(), skip_special_tokens=True)


def test_generate_on_a_bart_directory(bart_dir, capsys):
    directory, tokenizer = bart_dir
    # BART's config.json asks transformers for a forced </s> at the length limit.
    expected = _theirs(directory, tokenizer, max_new_tokens=8, num_beams=4)
    assert expected
    assert main(["generate", "--model", str(directory), PROMPT, "--max-new-tokens", "8", "--num-beams", "4",
                 "--forced-eos-token-id", "2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == expected + "\n"


def test_generate_on_a_t5_directory_streams(t5_dir, capsys):
    directory, tokenizer = t5_dir
    expected = _theirs(directory, tokenizer, max_new_tokens=8, decoder_start_token_id=0, eos_token_id=1,
                       pad_token_id=0)
    assert expected  # some text, not just an end token
    assert main(["generate", "--model", str(directory), PROMPT, "--max-new-tokens", "8", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == expected + "\n"
