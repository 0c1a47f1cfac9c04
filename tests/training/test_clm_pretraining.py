"""Causal-LM pretraining end to end (`objective.kind: clm`) on the decoder presets: the tiny
recipes' held-out loss falls (gpt2-tiny with and without document attention, llama-tiny, and
GPT's post-norm openai-gpt shape), the tokenizer's end/start-of-text ids reach the exported
config.json, pretrain -> generate from the command line, exact resume after SIGKILL; recipe checks."""

import json
from pathlib import Path

import pytest
from kill_resume import resumed_run_equals_uninterrupted

from lmforge.errors import UserError
from lmforge.pretraining import load_recipe, run_pretraining, validate_recipe
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "pretrain"
GPT2_TINY = RECIPES / "gpt2-tiny.yaml"
LLAMA_TINY = RECIPES / "llama-tiny.yaml"
CORPUS = REPO / "data" / "brown" / "brown-sample.jsonl"
# GPT's shape (post-norm blocks, no final norm) at gpt2-tiny's size.
OPENAI_GPT_TINY = ["model.preset=openai-gpt",
                   ("model.config={num_layers: 2, hidden_size: 128, num_heads: 4, intermediate_size: 512, "
                    "max_positions: 256}")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """GPT-2 byte-level BPE + shards of the bundled Brown sample, built once for this module."""
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("prepared")
    Tokenizer.train([CORPUS], kind="gpt2_byte_bpe", vocab_size=1200, lowercase=False,
                    show_progress=False).save(root / "tok")
    with pytest.raises(UserError, match="no mask/pad token; BERT pretraining"):
        prepare_corpus([CORPUS], root / "tok", root / "bert-data", heldout_docs=3, show_progress=False)
    prepare_corpus([CORPUS], root / "tok", root / "data", heldout_docs=3, show_progress=False,
                   required_roles=("eos",))
    return root / "data"


def recipe(prepared, *overrides, path=GPT2_TINY):
    return load_recipe(path, [f"data.prepared={prepared}", "train.log_every=1", "export_hf=false",
                                   *overrides])


def env():
    import os

    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("document_attention", [False, True])
def test_loss_falls(prepared, tmp_path, document_attention):
    r = recipe(prepared, f"objective.document_attention={str(document_attention).lower()}",
               "train.max_steps=24", "train.eval_every=12")
    result = run_pretraining(r, tmp_path / "run")
    assert result["steps"] == 24
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [m["lm_loss"] for m in records if "lm_loss" in m]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.5, losses
    evals = [m for m in records if "eval_lm_loss" in m]
    assert [m["step"] for m in evals] == [0, 12, 24]
    assert evals[-1]["eval_lm_loss"] < evals[0]["eval_lm_loss"] - 0.5
    for m in evals:
        assert m["eval_perplexity"] == pytest.approx(2.718281828 ** m["eval_lm_loss"], rel=1e-6)
    import lmforge

    model, tokenizer = lmforge.load(tmp_path / "run" / "model")
    assert model.task == "causal_lm" and model.config.family == "gpt2" and model.config.final_norm
    assert tokenizer.vocab_size == model.config.vocab_size and tokenizer.eos_id is not None


@pytest.mark.parametrize("shape", ["llama-tiny", "openai-gpt"])
def test_loss_falls_on_the_other_decoders(prepared, tmp_path, shape):
    """LLaMA's recipe (RMSNorm, SwiGLU, rotary, untied head) and GPT's post-norm blocks."""
    path, extra = (LLAMA_TINY, []) if shape == "llama-tiny" else (GPT2_TINY, OPENAI_GPT_TINY)
    r = recipe(prepared, *extra, "train.max_steps=16", "train.eval_every=16", path=path)
    run_pretraining(r, tmp_path / "run")
    evals = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval_lm_loss" in m]
    assert evals[-1]["eval_lm_loss"] < evals[0]["eval_lm_loss"] - 0.5, evals
    import lmforge

    model = lmforge.load_model(tmp_path / "run" / "model")
    family, tied, post_norm = {"llama-tiny": ("llama", False, False), "openai-gpt": ("openai-gpt", True, True)}[shape]
    assert model.config.family == family and model.config.tie_word_embeddings is tied
    assert (model.config.norm_placement == "post") is post_norm


def test_exported_config_carries_the_tokenizers_end_of_text(prepared, tmp_path, capsys):
    """The presets' eos/bos ids are replaced by the trained tokenizer's (gpt2_byte_bpe: 0), in
    lmforge's and Hugging Face's config.json alike, so generation stops at the end of text; then
    `lmforge generate` continues a prompt with the pretrained model, as the Python API does."""
    from lmforge.cli import main
    from lmforge.families import get_preset
    from lmforge.tokenization import Tokenizer

    eos = Tokenizer.from_dir(prepared / "tokenizer").eos_id
    assert get_preset("gpt2-tiny").eos_token_id is None and get_preset("llama-tiny").eos_token_id not in (None, eos)
    for path in (GPT2_TINY, LLAMA_TINY):
        out = tmp_path / path.stem
        run_pretraining(recipe(prepared, "train.max_steps=1", "train.eval_every=0", "export_hf=true", path=path), out)
        hf = json.loads((out / "model-hf" / "config.json").read_text())
        assert (hf["eos_token_id"], hf["bos_token_id"]) == (eos, eos), path.stem
        import lmforge

        assert lmforge.load_model(out / "model").config.eos_token_id == eos
    capsys.readouterr()
    assert main(["generate", "--model", str(out / "model"), "The", "--max-new-tokens", "6", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    model, tokenizer = lmforge.load(out / "model")
    assert printed == lmforge.generate(model, tokenizer, "The", max_new_tokens=6).texts[0] + "\n"


def test_trains_its_own_byte_level_tokenizer(tmp_path):
    r = load_recipe(GPT2_TINY, [f"data.corpus=[{CORPUS}]", "data.vocab_size=600", "train.max_steps=2",
                                "train.batch_size=4", "export_hf=false"])
    run_pretraining(r, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    assert manifest["tokenizer"]["kind"] == "gpt2_byte_bpe" and manifest["tokenizer"]["eos_id"] == 0
    source = json.loads((tmp_path / "run" / "data_source.json").read_text())
    assert source["tokenizer"]["train"] == "gpt2_byte_bpe"


def test_sigkill_and_resume_equals_uninterrupted(prepared, tmp_path):
    compared = resumed_run_equals_uninterrupted(
        GPT2_TINY, tmp_path, [f"data.prepared={prepared}", "objective.document_attention=true"],
        ("loss", "lm_loss", "eval_lm_loss", "eval_lm_accuracy", "eval_perplexity"), dict(rel=1e-5))
    assert compared > 30


def test_recipe_checks(prepared):
    with pytest.raises(UserError, match="document_attention needs train.unpad"):
        validate_recipe(recipe(prepared, "objective.document_attention=true", "train.unpad=false"))
    with pytest.raises(UserError, match="data.tokenizer_kind must be one of"):
        validate_recipe(load_recipe(GPT2_TINY, ["data.tokenizer_kind=sentencepiece"]))
    with pytest.raises(UserError, match="objective.kind must be one of"):
        load_recipe(GPT2_TINY, ["objective.kind=gpt"])


def test_recipes_name_the_decoder_presets_and_the_gpt_shape():
    gpt = load_recipe(RECIPES / "gpt-books.yaml")
    assert gpt.model.preset == "openai-gpt" and gpt.objective.kind == "clm"
    assert (gpt.objective.max_seq_length, gpt.train.batch_size, gpt.train.lr) == (512, 64, 2.5e-4)
    assert (gpt.train.warmup_steps, gpt.train.schedule) == (2000, "cosine")
    assert (gpt.data.tokenizer_kind, gpt.data.vocab_size) == ("bpe", 40478)
    for name, preset in (("gpt2-tiny", "gpt2-tiny"), ("llama-tiny", "llama-tiny")):
        r = load_recipe(RECIPES / f"{name}.yaml")
        assert r.model.preset == preset and r.objective.kind == "clm"
        assert r.data.tokenizer_kind == "gpt2_byte_bpe" and r.data.corpus == ["data/brown/brown-sample.jsonl"]
