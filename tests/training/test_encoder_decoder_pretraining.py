"""Encoder-decoder pretraining end to end: BART's denoising (`objective.kind: denoising`) and T5's
span corruption (`span_corruption`) on bart-tiny and t5-tiny: the tiny recipes' held-out loss
falls, the model saved is a seq2seq LM with the right decoder start, teacher forcing shifts the
targets right behind it, exact resume after SIGKILL, and the recipes' checks and paper settings."""

from pathlib import Path

import numpy as np
import pytest
from kill_resume import resumed_run_equals_uninterrupted

from lmforge.errors import UserError
from lmforge.pretraining import load_recipe, run_pretraining, validate_recipe
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "pretrain"
CORPUS = REPO / "data" / "brown" / "brown-sample.jsonl"
KINDS = {"bart-tiny": ("byte_bpe", ("bos", "eos", "mask", "pad")), "t5-tiny": ("t5_unigram", ("eos", "pad"))}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each tiny recipe's tokenizer kind + shards of the bundled Brown sample, built once."""
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("prepared")
    for name, (kind, roles) in KINDS.items():
        Tokenizer.train([CORPUS], kind=kind, vocab_size=2000, lowercase=False, show_progress=False).save(root / kind)
        prepare_corpus([CORPUS], root / kind, root / name, heldout_docs=3, show_progress=False,
                       required_roles=roles)
    return root


@pytest.mark.parametrize("name", ["bart-tiny", "t5-tiny"])
def test_tiny_recipe_loss_falls(prepared, tmp_path, name):
    recipe = load_recipe(RECIPES / f"{name}.yaml", [f"data.prepared={prepared / name}", "train.max_steps=20",
                                                     "train.batch_size=8", "objective.max_seq_length=48",
                                                     "train.log_every=1", "train.eval_every=20", "export_hf=false"])
    assert run_pretraining(recipe, tmp_path / "run")["steps"] == 20
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [m["lm_loss"] for m in records if "lm_loss" in m]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5, losses
    evals = [m for m in records if "eval_lm_loss" in m]
    assert [m["step"] for m in evals] == [0, 20]
    assert evals[-1]["eval_lm_loss"] < evals[0]["eval_lm_loss"] - 0.5, evals
    assert evals[-1]["eval_lm_accuracy"] > evals[0]["eval_lm_accuracy"]
    import lmforge

    model, tokenizer = lmforge.load(tmp_path / "run" / "model")
    assert model.task == "seq2seq_lm" and model.config.architecture == "encoder_decoder"
    start = tokenizer.eos_id if name == "bart-tiny" else tokenizer.pad_id  # BART </s>, T5 pad
    assert model.config.decoder_start_token_id == start
    assert (model.config.eos_token_id, model.config.vocab_size) == (tokenizer.eos_id, tokenizer.vocab_size)


def test_teacher_forcing_batch(prepared):
    from lmforge.objectives.base import IGNORE_INDEX
    from lmforge.objectives.seq2seq import encoder_decoder_data
    from lmforge.tokenization import Tokenizer

    recipe = load_recipe(RECIPES / "t5-tiny.yaml")
    tokenizer = Tokenizer.from_dir(prepared / "t5-tiny" / "tokenizer")
    train, _, objective = encoder_decoder_data("span_corruption", prepared / "t5-tiny", tokenizer, recipe.objective, 1)
    examples = [train[0], train[len(train) - 1]]  # a full segment and the short tail
    batch = objective.collate(examples)
    for row, example in enumerate(examples):
        labels = example["labels"]
        n = len(labels)
        assert batch["decoder_input_ids"][row, 0] == tokenizer.pad_id
        assert batch["decoder_input_ids"][row, 1:n].tolist() == labels[:-1].tolist()
        assert batch["labels"][row, :n].tolist() == labels.tolist()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all() and batch["decoder_attention_mask"][row].sum() == n
        assert batch["attention_mask"][row].sum() == len(example["input_ids"])
    assert objective.counts(batch)["lm"] == sum(len(e["labels"]) for e in examples)


@pytest.mark.parametrize("name", ["bart-tiny", "t5-tiny"])
def test_sigkill_and_resume_equals_uninterrupted(prepared, tmp_path, name):
    compared = resumed_run_equals_uninterrupted(
        RECIPES / f"{name}.yaml", tmp_path, [f"data.prepared={prepared / name}", "train.batch_size=4",
                                              "objective.max_seq_length=32"],
        ("loss", "lm_loss", "eval_lm_loss", "eval_lm_accuracy"), dict(rel=1e-5))
    assert compared > 30


def test_recipe_checks():
    bart = RECIPES / "bart-tiny.yaml"
    with pytest.raises(UserError, match="does not train a model of architecture decoder"):
        validate_recipe(load_recipe(bart, ["model.preset=gpt2-tiny"]))
    with pytest.raises(UserError, match="does not train a model of architecture encoder_decoder"):
        validate_recipe(load_recipe(bart, ["objective.kind=clm"]))
    with pytest.raises(UserError, match="unknown denoising preset"):
        validate_recipe(load_recipe(bart, ["objective.noise_preset=bart"]))
    with pytest.raises(UserError, match="unknown denoising option"):
        validate_recipe(load_recipe(bart, ["objective.noise={masking: 0.3}"]))
    with pytest.raises(UserError, match="replace_length must be -1, 0 or 1"):
        validate_recipe(load_recipe(bart, ["objective.noise={replace_length: 3}"]))
    with pytest.raises(UserError, match="noise_density must be in"):
        validate_recipe(load_recipe(RECIPES / "t5-tiny.yaml", ["objective.noise_density=1.5"]))
    with pytest.raises(UserError, match="objective.kind must be one of"):
        load_recipe(bart, ["objective.kind=bart"])


def test_paper_recipes_carry_the_paper_settings():
    from lmforge.objectives.denoising import noise_preset
    from lmforge.objectives.span_corruption import random_spans_helper

    bart = load_recipe(RECIPES / "bart-base.yaml")
    assert bart.model.preset == "facebook/bart-base" and bart.objective.kind == "denoising"
    assert (bart.data.tokenizer_kind, bart.data.vocab_size, bart.data.lowercase) == ("byte_bpe", 50265, False)
    noise = noise_preset(bart.objective.noise_preset, **bart.objective.noise)
    assert (noise.mask, noise.poisson_lambda, noise.permute_sentences, noise.replace_length, noise.mask_random,
            noise.rotate) == (0.3, 3.5, 1.0, 1, 0.1, 0.0)
    assert (bart.objective.max_seq_length, bart.train.batch_size, bart.train.max_steps) == (512, 8000, 500000)
    t5 = load_recipe(RECIPES / "t5-small.yaml")
    assert t5.model.preset == "t5-small" and t5.objective.kind == "span_corruption"
    assert (t5.data.tokenizer_kind, t5.data.vocab_size) == ("t5_unigram", 32100)
    o = t5.objective
    assert random_spans_helper(o.max_seq_length, o.noise_density, o.mean_noise_span_length) == (568, 114)
    assert (t5.train.batch_size, t5.train.max_steps) == (128, 2 ** 19)
    for name, kind in (("bart-tiny", "denoising"), ("t5-tiny", "span_corruption")):
        r = load_recipe(RECIPES / f"{name}.yaml")
        assert r.model.preset == name and r.objective.kind == kind
        assert r.data.tokenizer_kind == KINDS[name][0] and r.data.corpus == ["data/brown/brown-sample.jsonl"]
        validate_recipe(load_recipe(RECIPES / f"{name}.yaml", [f"data.corpus=[{CORPUS}]"]))
