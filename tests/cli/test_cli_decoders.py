"""The CLI on the decoder families: `lmforge presets` lists them with exact counts, and
`lmforge convert` takes a transformers GPT-2 / LLaMA / openai-gpt directory (weights and its
tokenizer files) to lmforge's layout and back, which transformers loads strictly."""

import json
import re

import pytest
import torch
import transformers

from lmforge.cli import main
from lmforge.tokenization import Tokenizer

TEXT = "the cat sat on the mat . the dog sat on the log . a bird sang in the tree .\n" * 20


def test_presets_lists_decoders_with_exact_counts(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^gpt2\s+gpt2\s+12\s+768\s+12\s+124,439,808", out, re.MULTILINE)
    assert re.search(r"^openai-gpt\s+openai-gpt\s+12\s+768\s+12\s+116,534,784", out, re.MULTILINE)
    assert re.search(r"^meta-llama/Llama-2-7b-hf\s+llama\s+32\s+4096\s+32\s+6,738,415,616", out, re.MULTILINE)
    for preset in ("gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2", "gpt2-tiny", "llama-tiny",
                   "TinyLlama/TinyLlama_v1.1", "meta-llama/Llama-3.2-1B"):
        assert re.search(rf"^{re.escape(preset)}\s", out, re.MULTILINE), preset


def _gpt2_dir(root):
    trained = Tokenizer.train([str(root / "corpus.txt")], kind="gpt2_byte_bpe", vocab_size=300, lowercase=False,
                              show_progress=False)
    model = json.loads(trained.backend.to_str())["model"]
    (root / "hf").mkdir()
    (root / "hf" / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    merges = "".join(f"{a} {b}\n" for a, b in model["merges"])
    (root / "hf" / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    config = transformers.GPT2Config(vocab_size=len(model["vocab"]), n_embd=32, n_layer=2, n_head=2, n_positions=64)
    return transformers.GPT2LMHeadModel(config), transformers.GPT2TokenizerFast.from_pretrained(root / "hf")


def _llama_dir(root):
    trained = Tokenizer.train([str(root / "corpus.txt")], kind="llama_bpe", vocab_size=400, lowercase=False,
                              show_progress=False)
    model = json.loads(trained.backend.to_str())["model"]
    tokenizer = transformers.LlamaTokenizerFast(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]],
                                                add_bos_token=True)
    config = transformers.LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config), tokenizer


@pytest.mark.parametrize("make", [_gpt2_dir, _llama_dir], ids=["gpt2", "llama"])
def test_convert_round_trip(make, tmp_path, capsys):
    (tmp_path / "corpus.txt").write_text(TEXT)
    torch.manual_seed(0)
    reference, tokenizer = make(tmp_path)
    reference.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    assert main(["convert", "from-hf", str(tmp_path / "hf"), str(tmp_path / "ours")]) == 0
    assert (tmp_path / "ours" / "lmforge.json").is_file()
    assert main(["convert", "to-hf", str(tmp_path / "ours"), str(tmp_path / "back")]) == 0
    back, info = type(reference).from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not any(info.values())
    theirs = reference.state_dict()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    for text in ("the cat sat", "a bird  sang!", "unseen Ωmega"):
        assert auto(text)["input_ids"] == tokenizer(text)["input_ids"], text
