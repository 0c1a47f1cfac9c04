"""RoBERTa's and ALBERT's recipes end to end: the tiny recipes (byte-level BPE + FULL-SENTENCES
+ fairseq masking; SentencePiece unigram + SOP + n-gram masking) train from raw text and their
losses fall; the paper-scale recipes carry the paper's settings; the new recipe fields are
checked."""

from pathlib import Path

import pytest
from kill_resume import resumed_run_equals_uninterrupted

from lmforge.errors import UserError
from lmforge.pretraining import (
    load_recipe,
    masking_unit,
    run_pretraining,
    validate_recipe,
)
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "pretrain"


def _mean(values):
    return sum(values) / len(values)


@pytest.mark.parametrize("name", ["roberta-tiny", "albert-tiny"])
def test_tiny_recipe_trains_and_loss_falls(name, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the recipes name the bundled corpus relative to the repository
    recipe = load_recipe(RECIPES / f"{name}.yaml", ["train.max_steps=30",
                                                    "train.log_every=1", "train.eval_every=30", "export_hf=false"])
    result = run_pretraining(recipe, tmp_path / "run")
    assert result["steps"] == 30
    records = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in m]
    assert _mean([m["loss"] for m in records[-5:]]) < _mean([m["loss"] for m in records[:5]]) - 0.3
    evals = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval_mlm_loss" in m]
    assert evals[-1]["eval_mlm_loss"] < evals[0]["eval_mlm_loss"]
    import lmforge

    model, tokenizer = lmforge.load(tmp_path / "run" / "model")
    if name == "albert-tiny":
        assert "sop_loss" in records[0] and "nsp_loss" not in records[0] and "eval_sop_accuracy" in evals[-1]
        assert model.task == "pretraining" and tokenizer.kind == "unigram"
    else:
        assert "sop_loss" not in records[0] and "nsp_loss" not in records[0]
        assert model.task == "masked_lm" and tokenizer.kind == "byte_bpe" and not tokenizer.lowercase


def test_paper_recipes_carry_the_paper_settings():
    roberta = load_recipe(RECIPES / "roberta-base.yaml")
    assert roberta.model.preset == "roberta-base"
    assert (roberta.data.tokenizer_kind, roberta.data.vocab_size, roberta.data.lowercase) == ("byte_bpe", 50265, False)
    o, t = roberta.objective, roberta.train
    assert (o.kind, o.max_seq_length, o.masking, o.masking_scheme) == ("mlm", 512, "dynamic", "fairseq")
    assert (t.adam_beta1, t.adam_beta2, t.adam_eps, t.lr, t.warmup_steps) == (0.9, 0.98, 1e-6, 6e-4, 24000)
    assert t.batch_size == 8192 and t.batch_size // t.micro_batch_size > 1  # 8K through accumulation
    albert = load_recipe(RECIPES / "albert-base.yaml")
    assert albert.model.preset == "albert-base-v2"
    o = albert.objective
    assert (o.kind, o.max_seq_length, o.masking_unit, o.max_ngram) == ("mlm+sop", 512, "ngram", 3)
    assert (albert.data.tokenizer_kind, albert.data.vocab_size) == ("unigram", 30000)


def test_new_objective_fields_are_checked(tmp_path):
    tiny = RECIPES / "tiny.yaml"
    with pytest.raises(UserError, match="objective.masking_unit must be one of"):
        load_recipe(tiny, ["objective.masking_unit=span"])
    with pytest.raises(UserError, match="objective.kind must be one of"):
        load_recipe(tiny, ["objective.kind=mlm+order"])
    corpus = f"data.corpus=[{REPO / 'data' / 'brown' / 'brown-sample.jsonl'}]"
    with pytest.raises(UserError, match="masking_scheme bert"):
        validate_recipe(load_recipe(tiny, [corpus, "objective.masking_unit=ngram", "objective.masking_scheme=fairseq"]))
    with pytest.raises(UserError, match="data.tokenizer_kind"):
        validate_recipe(load_recipe(tiny, [corpus, "data.tokenizer_kind=sentencepiece"]))
    with pytest.raises(UserError, match="objective.max_ngram"):
        validate_recipe(load_recipe(tiny, [corpus, "objective.max_ngram=0"]))
    # older recipes: whole_word: true still means whole-word masking
    assert masking_unit(load_recipe(tiny, ["objective.whole_word=true"]).objective) == "whole_word"
    assert masking_unit(load_recipe(tiny).objective) == "token"


def test_albert_objectives_resume_exactly_after_sigkill(tmp_path):
    """SOP pairs and n-gram masks are functions of (seed, epoch, index): a run killed with -9 and
    resumed logs what the uninterrupted run logs."""
    compared = resumed_run_equals_uninterrupted(
        RECIPES / "albert-tiny.yaml", tmp_path, ["train.batch_size=8"],
        ("loss", "mlm_loss", "sop_loss", "eval_mlm_loss", "eval_sop_accuracy"), dict(abs=1e-5))
    assert compared > 30
