"""`lmforge generate` and `lmforge perplexity` on a tiny decoder saved in lmforge's own format
(config family "test": native loading needs no registered family) with a byte-level BPE
tokenizer trained on a few lines; mistakes are one line, never a traceback."""

import pytest

import lmforge
from lmforge.cli import main
from lmforge.config import ModelConfig
from lmforge.generation.api import generate
from lmforge.generation.sliding_perplexity import perplexity
from lmforge.models.build import build_model
from lmforge.tokenization import Tokenizer

TEXT = "the cat sat on the mat . the dog sat on the log . a bird sang in the tree .\n" * 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    (root / "corpus.txt").write_text(TEXT)
    tokenizer = Tokenizer.train([str(root / "corpus.txt")], kind="gpt2_byte_bpe", vocab_size=300, min_frequency=1,
                                show_progress=False)
    config = ModelConfig(family="test", architecture="decoder", vocab_size=tokenizer.vocab_size, hidden_size=32,
                         num_layers=2, num_heads=4, intermediate_size=64, max_positions=48, type_vocab_size=0,
                         norm_placement="pre", final_norm=True, embedding_norm=False, pooler=False,
                         initializer_range=0.3)
    return lmforge.save(build_model(config, "causal_lm", seed=0), root / "model", tokenizer)


def test_generate_streams_one_prompt(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "the cat", "--max-new-tokens", "6", "--device", "cpu"]) == 0
    model, tokenizer = lmforge.load(model_dir)
    expected = generate(model, tokenizer, "the cat", max_new_tokens=6).texts[0]
    assert capsys.readouterr().out == expected + "\n"


def test_generate_batches_prompts_from_a_file(model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na bird sang in\n")
    assert main(["generate", "--model", str(model_dir), "--input", str(prompts), "--num-beams", "3",
                 "--num-return-sequences", "2", "--max-new-tokens", "5"]) == 0
    out = capsys.readouterr().out
    model, tokenizer = lmforge.load(model_dir)
    result = generate(model, tokenizer, ["the cat", "a bird sang in"], num_beams=3, num_return_sequences=2,
                      max_new_tokens=5)
    expected = "".join(f"=== prompt {p + 1}, sequence {s + 1} ===\n{result.texts[2 * p + s]}\n"
                       for p in range(2) for s in range(2))
    assert out == expected


def test_stop_string_cuts_the_text(model_dir):
    model, tokenizer = lmforge.load(model_dir)
    full = generate(model, tokenizer, "the", max_new_tokens=12).texts[0]
    stop = full.strip()[2:4]
    assert stop and stop in full
    cut = generate(model, tokenizer, "the", max_new_tokens=12, stop=stop)
    assert cut.texts[0] == full[: full.find(stop)]
    assert len(cut.token_ids[0]) < 12


def test_python_api_is_exported_lazily(model_dir):
    model, tokenizer = lmforge.load(model_dir)
    result = lmforge.generate(model, tokenizer, ["the cat", "a"], max_new_tokens=3)
    assert len(result.texts) == 2 and all(len(ids) == 3 for ids in result.token_ids)
    assert result.prompt_index == [0, 1]


def test_perplexity_command(model_dir, tmp_path, capsys):
    data = tmp_path / "data.txt"
    data.write_text(TEXT[:400])
    assert main(["perplexity", "--model", str(model_dir), "--data", str(data), "--max-length", "32",
                 "--stride", "16"]) == 0
    out = capsys.readouterr().out
    model, tokenizer = lmforge.load(model_dir)
    expected = perplexity(model, tokenizer.encode(TEXT[:400], max_length=None)["input_ids"], max_length=32, stride=16)
    assert out.startswith(f"perplexity {expected.perplexity:.4f} ")


@pytest.mark.parametrize("argv,message", [
    (["the cat", "--max-new-tokens", "0"], "max_new_tokens must be an integer >= 1"),
    (["the cat", "--max-new-tokens", "-2"], "max_new_tokens must be an integer >= 1"),
    (["the cat", "--max-new-tokens", "48"], "leaves no room for a prompt"),
    (["the cat", "--do-sample", "--top-p", "0"], "top_p must be in (0, 1]"),
    (["the cat", "--do-sample", "--top-p", "1.2"], "top_p must be in (0, 1]"),
    (["the cat", "--do-sample", "--temperature", "0"], "temperature must be > 0"),
    (["the cat", "--stop", ""], "stop strings must be non-empty"),
    ([""], "prompt 1 is empty"),
    ([], "no prompt"),
    (["the cat", "--num-beams", "2", "--num-return-sequences", "3"], "cannot exceed"),
])
def test_generate_mistakes_are_one_line(model_dir, capsys, argv, message):
    assert main(["generate", "--model", str(model_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_long_prompt_is_cut_from_the_left_with_a_warning(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "the cat sat on the mat . " * 8, "--max-new-tokens", "4"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: prompt 1 has") and "keeping its last 44" in err


def test_non_generative_model_is_refused(tmp_path, model_dir, capsys):
    model, tokenizer = lmforge.load(model_dir)
    encoder = build_model(model.config.replace(architecture="encoder"), "masked_lm", seed=0)
    lmforge.save(encoder, tmp_path / "encoder", tokenizer)
    assert main(["generate", "--model", str(tmp_path / "encoder"), "the cat"]) == 2
    assert "language-model head" in capsys.readouterr().err
    data = tmp_path / "data.txt"
    data.write_text("the cat sat")
    assert main(["perplexity", "--model", str(tmp_path / "encoder"), "--data", str(data)]) == 2
    assert "causal language model" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--stride", "40", "--max-length", "32"], "stride must be between 1 and max_length"),
    (["--max-length", "100"], "between 2 and the model's 48 positions"),
])
def test_perplexity_mistakes_are_one_line(model_dir, tmp_path, capsys, argv, message):
    data = tmp_path / "data.txt"
    data.write_text(TEXT[:200])
    assert main(["perplexity", "--model", str(model_dir), "--data", str(data), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
