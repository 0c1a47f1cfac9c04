"""The efficient-pretraining options of a masked-LM recipe (Cramming, Geiping & Goldstein 2022;
Izsak et al. 2021): the model switches as recipe fields, the mask rate apart from the held-out
rate, the sequence-length curriculum, and a run measured by a time budget end to end."""

from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import UserError
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.pretraining import load_recipe, masked_lm_datasets, run_pretraining, validate_recipe
from lmforge.training.curriculum import Curriculum
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "pretrain" / "tiny.yaml"
CRAMMED = "model.config={norm_placement: pre, final_norm: true, bias: false, feed_forward: gated, " \
          "hidden_dropout: 0.0, attention_dropout: 0.0}"


def recipe(prepared, *overrides):
    return load_recipe(TINY, [f"data.prepared={prepared}", "objective.kind=mlm", *overrides])


def masked_share(dataset, count=40) -> float:
    examples = [dataset[i] for i in range(count)]
    return sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in examples) / sum(len(e["labels"]) for e in examples)


def test_training_and_heldout_mask_rates_are_separate(prepared):
    train, heldout = masked_lm_datasets(recipe(prepared, "objective.mlm_probability=0.4",
                                               "objective.max_predictions=26"), prepared)
    assert masked_share(train) == pytest.approx(0.4, abs=0.02)
    assert masked_share(heldout) == pytest.approx(0.15, abs=0.02)  # held-out figures stay comparable


def test_the_mask_cap_is_noted(prepared):
    from lmforge.pretraining import _mask_cap_note

    r = recipe(prepared, "objective.mlm_probability=0.4")  # tiny.yaml caps at 10 of 64 tokens
    assert "caps masking at 15.6% of 64 tokens" in _mask_cap_note(r.objective)
    assert _mask_cap_note(recipe(prepared).objective) == ""


def test_sequence_length_curriculum_datasets(prepared):
    r = recipe(prepared, "objective.seq_length_curriculum=[[16, 0.3], [32, 0.6]]", "objective.mlm_probability=0.3",
               "objective.max_predictions=20")
    train, _ = masked_lm_datasets(r, prepared)
    assert isinstance(train, Curriculum)
    for progress, length in [(0.0, 16), (0.29, 16), (0.3, 32), (0.59, 32), (0.6, 64), (1.0, 64)]:
        train.set_progress(progress)
        lengths = [len(train[i]["input_ids"]) for i in range(20)]
        assert max(lengths) == length
        assert masked_share(train, 20) == pytest.approx(0.3, abs=0.04)  # caps scale with the length
    train.set_progress(0.0)
    assert len(train) > 3 * len(train.stages[-1][1])  # shorter blocks, more of them


@pytest.mark.parametrize("stages, message", [
    ("[[128, 0.5]]", "below max_seq_length"), ("[[32, 0.6], [16, 0.8]]", "lengths must rise"),
    ("[[32, 1.2]]", "within"), ("[[32]]", r"\[LENGTH, UNTIL\]")])
def test_curriculum_errors(prepared, stages, message):
    with pytest.raises(UserError, match=message):
        validate_recipe(recipe(prepared, f"objective.seq_length_curriculum={stages}"))


def test_curriculum_is_for_masked_lm_kinds(prepared):
    with pytest.raises(UserError, match="masked-LM kinds"):
        validate_recipe(load_recipe(REPO / "recipes" / "pretrain" / "gpt2-tiny.yaml",
                                    [f"data.prepared={prepared}", "objective.seq_length_curriculum=[[16, 0.5]]"]))


def test_a_budgeted_run_with_every_option(prepared, tmp_path):
    """Pre-norm with a final norm, no biases, gated GELU, no dropout, mask rate 0.3, batch ramp,
    curriculum and a one-cycle schedule by time, in one short run."""
    r = recipe(prepared, CRAMMED, "objective.mlm_probability=0.3", "objective.max_predictions=20",
               "objective.seq_length_curriculum=[[32, 0.5]]", "train.time_budget_minutes=0.05", "train.max_steps=0",
               "train.warmup_steps=0", "train.warmup_fraction=0.2", "train.schedule=one_cycle",
               "train.batch_ramp_start=4", "train.batch_size=16", "train.eval_every_seconds=1", "train.log_every=1",
               "export_hf=false")
    result = run_pretraining(r, tmp_path / "run")
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    steps = [rec for rec in records if "loss" in rec]
    assert result["train_seconds"] >= 3.0 and steps[-1]["train_seconds"] == pytest.approx(result["train_seconds"])
    assert steps[0]["batch_size"] == 4 and steps[-1]["batch_size"] == 16
    assert steps[-1]["lr"] < 0.1 * max(rec["lr"] for rec in steps)  # the schedule ran down to the budget
    assert sum("eval_mlm_loss" in rec for rec in records) >= 3  # t = 0, every second, the end
    import lmforge

    model, _ = lmforge.load(tmp_path / "run" / "model")
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") and ".sublayer." in name for name in names)  # no linear biases
    assert any(".gate." in name for name in names) and model.config.norm_placement == "pre"
    assert model.config.final_norm and model.config.hidden_dropout == 0.0
    assert np.isfinite(steps[-1]["loss"])
