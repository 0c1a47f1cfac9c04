"""Learning-rate schedules: by hand, against transformers' schedulers factor for factor, and as
the rates the training loop actually uses step by step."""

import math

import pytest
import torch
from torch import nn
from toy import RecordingDataset, ToyModel, ToyObjective
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

from lmforge.errors import UserError
from lmforge.training.distributed import DistributedContext
from lmforge.training.loop import TrainConfig, Trainer, read_metrics
from lmforge.training.schedules import slanted_triangular, warmup_then_decay

REFERENCES = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup,
              "constant": get_constant_schedule_with_warmup}


def reference_factors(kind: str, total: int, warmup: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    arguments = {"num_warmup_steps": warmup}
    if kind != "constant":
        arguments["num_training_steps"] = total
    factor = REFERENCES[kind](optimizer, **arguments).lr_lambdas[0]
    return [factor(s) for s in range(total + 1)]


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
@pytest.mark.parametrize("total, warmup", [(100, 10), (100, 0), (7, 3), (1, 0)])
def test_factors_equal_transformers(kind, total, warmup):
    ours = warmup_then_decay(total, warmup, kind)
    assert [ours(s) for s in range(total + 1)] == pytest.approx(reference_factors(kind, total, warmup), abs=1e-12)


def test_warmup_then_decay_by_hand():
    linear = warmup_then_decay(100, 10)
    # s / w in warm-up (0 at the first step, as transformers), then linear to 0; held at 0 after.
    assert [linear(s) for s in (0, 5, 10, 55, 100, 120)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])
    cosine = warmup_then_decay(100, 10, kind="cosine")
    assert cosine(55) == pytest.approx(0.5)
    assert cosine(32.5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine(100) == pytest.approx(0.0, abs=1e-12)
    assert cosine(150) == pytest.approx(0.0, abs=1e-12)  # no second wave past the end
    constant = warmup_then_decay(100, 4, kind="constant")
    assert [constant(s) for s in (0, 2, 4, 99, 500)] == [0.0, 0.5, 1.0, 1.0, 1.0]


def test_warmup_arguments_are_checked():
    with pytest.raises(UserError, match="warmup_steps"):
        warmup_then_decay(10, 10)
    with pytest.raises(UserError, match="unknown schedule kind"):
        warmup_then_decay(10, 1, kind="step")
    assert warmup_then_decay(10, 0)(0) == 1.0  # no warm-up: start at the full rate


def test_slanted_triangular_at_specific_steps():
    stlr = slanted_triangular(1000, cut_frac=0.1, ratio=32)  # cut = 100
    assert stlr(0) == pytest.approx(1 / 32)
    assert stlr(50) == pytest.approx((1 + 0.5 * 31) / 32)
    assert stlr(100) == pytest.approx(1.0)
    # decay: p = 1 - (t - cut) / (cut * (1 / cut_frac - 1)) = 1 - 450 / 900
    assert stlr(550) == pytest.approx((1 + 0.5 * 31) / 32)
    assert stlr(1000) == pytest.approx(1 / 32)
    assert stlr(1500) == pytest.approx(1 / 32)  # held at the floor past the end


def test_slanted_triangular_uses_the_floor_of_cut_and_the_paper_denominator():
    stlr = slanted_triangular(25, cut_frac=0.1, ratio=32)  # cut = floor(2.5) = 2, decay over 2 * 9 = 18
    assert stlr(1) == pytest.approx((1 + 0.5 * 31) / 32)
    assert stlr(2) == pytest.approx(1.0)
    assert stlr(11) == pytest.approx((1 + 0.5 * 31) / 32)
    assert stlr(20) == pytest.approx(1 / 32)
    short = slanted_triangular(5, cut_frac=0.1)  # T * cut_frac < 1: one warm-up step anyway
    assert (short(0), short(1)) == pytest.approx((1 / 32, 1.0))
    with pytest.raises(UserError):
        slanted_triangular(100, cut_frac=1.5)


def run_toy(tmp_path, **settings) -> list[dict]:
    config = TrainConfig(batch_size=8, lr=0.5, log_every=1, device="cpu", **settings)
    trainer = Trainer(ToyModel(), ToyObjective(), RecordingDataset(), config, tmp_path, DistributedContext(),
                      save_checkpoints=False)
    trainer.fit()
    return [r for r in read_metrics(tmp_path / "metrics.jsonl") if "lr" in r]


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_the_loop_steps_at_the_rates_of_transformers(tmp_path, kind):
    records = run_toy(tmp_path, max_steps=12, warmup_steps=3, schedule=kind)
    # The record of step t (1-based) holds the rate its optimizer step used: factor(t - 1).
    expected = [0.5 * f for f in reference_factors(kind, 12, 3)[:12]]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["lr"] for r in records] == pytest.approx(expected, abs=1e-15)


def test_a_run_shorter_than_its_warmup_reaches_the_peak_at_its_last_step(tmp_path):
    records = run_toy(tmp_path, max_steps=3, warmup_steps=10)
    assert [r["lr"] for r in records] == pytest.approx([0.0, 0.25, 0.5])
