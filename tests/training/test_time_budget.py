"""Runs measured in time and in progress: a training-time budget whose schedule ends at 0
exactly at the budget and survives resume, the batch-size ramp, a curriculum of training sets,
and held-out masks at their own rate."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from toy import RecordingDataset, ToyModel, ToyObjective

from lmforge.errors import UserError
from lmforge.training.curriculum import Curriculum
from lmforge.training.distributed import DistributedContext
from lmforge.training.loop import Trainer, TrainConfig, read_metrics
from lmforge.training.schedules import by_progress

SECONDS_PER_STEP = 0.5


def test_progress_schedules():
    linear = by_progress("linear", warmup_fraction=0.2)
    assert [linear(p) for p in (0, 0.1, 0.2, 0.6, 1.0, 1.5)] == pytest.approx([0, 0.5, 1, 0.5, 0, 0])
    cosine = by_progress("cosine", warmup_fraction=0.0)
    assert [cosine(p) for p in (0, 0.5, 1)] == pytest.approx([1, 0.5, 0])
    cycle = by_progress("one_cycle", warmup_fraction=0.3)  # OneCycleLR: peak/25 -> peak -> peak/25e4
    assert [cycle(p) for p in (0, 0.15, 0.3, 1)] == pytest.approx([1 / 25, (1 + 1 / 25) / 2, 1, 1 / 25e4])
    assert by_progress("constant", 0.5)(0.9) == 1
    with pytest.raises(UserError, match="warm-up fraction"):
        by_progress("linear", warmup_fraction=1.0)


@pytest.fixture(autouse=True)
def toy_checkpoints(monkeypatch):
    """The toy model has no config; its checkpoint is its weights alone."""
    from safetensors.torch import save_file

    def save_weights(model, directory):
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, Path(directory) / "model.safetensors")

    monkeypatch.setattr("lmforge.training.checkpoint.save_native", save_weights)


def toy_trainer(tmp_path, data=None, should_stop=None, **settings):
    """A Trainer whose clock advances SECONDS_PER_STEP per training step, so budgets are exact."""
    config = TrainConfig(**{"batch_size": 8, "lr": 0.5, "log_every": 1, "device": "cpu", **settings})
    torch.manual_seed(0)
    trainer = Trainer(ToyModel(), ToyObjective(), data or RecordingDataset(), config, tmp_path,
                      DistributedContext(), should_stop=should_stop)
    ticks = itertools.count()
    trainer.clock = lambda: next(ticks) * SECONDS_PER_STEP  # each step spans one tick
    return trainer


def test_a_time_budget_sets_the_schedule_and_ends_the_run(tmp_path):
    trainer = toy_trainer(tmp_path, max_steps=0, time_budget_minutes=0.1, warmup_fraction=0.25)
    result = trainer.fit()
    steps = int(6 / SECONDS_PER_STEP)  # 0.1 minutes of training
    assert result["steps"] == steps and result["train_seconds"] == pytest.approx(6.0)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "lr" in r]
    shape = by_progress("linear", 0.25)
    # Step k (1-based) runs at the rate of the progress before it: (k - 1) * 0.5 s of 6 s.
    assert [r["lr"] for r in records] == pytest.approx([0.5 * shape((k - 1) / steps) for k in range(1, steps + 1)])
    assert [r["train_seconds"] for r in records] == pytest.approx([SECONDS_PER_STEP * k for k in range(1, steps + 1)])
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # the schedule ends at 0 exactly at the budget
    assert (tmp_path / "checkpoints" / f"step-{steps:08d}").is_dir()


def test_max_steps_caps_a_budget(tmp_path):
    assert toy_trainer(tmp_path, max_steps=3, time_budget_minutes=1.0).fit()["steps"] == 3


def test_resume_keeps_the_budget_accounting(tmp_path):
    budget = dict(max_steps=0, time_budget_minutes=0.1, schedule="one_cycle", warmup_fraction=0.3)
    whole = toy_trainer(tmp_path / "whole", **budget)
    whole.fit()
    first = toy_trainer(tmp_path / "cut", should_stop=lambda: first.step == 5, **budget)
    first.fit()  # stopped (and checkpointed) after 5 steps: 2.5 training seconds
    second = toy_trainer(tmp_path / "cut", **budget)
    result = second.fit(resume=True)
    assert result["steps_run"] == 7 and result["train_seconds"] == pytest.approx(6.0)
    lrs = lambda path: [r["lr"] for r in read_metrics(path / "metrics.jsonl") if "lr" in r]  # noqa: E731
    assert lrs(tmp_path / "cut") == lrs(tmp_path / "whole")
    for a, b in zip(whole.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_batch_size_ramp(tmp_path):
    data = RecordingDataset(n=200)
    trainer = toy_trainer(tmp_path, data=data, max_steps=10, batch_size=16, batch_ramp_start=4,
                          batch_ramp_fraction=0.5, save_every=0)
    trainer.fit()
    sizes = [r["batch_size"] for r in read_metrics(tmp_path / "metrics.jsonl") if "batch_size" in r]
    # 4 + 12 * min(1, (step / 10) / 0.5), rounded down
    assert sizes == [4, 6, 8, 11, 13, 16, 16, 16, 16, 16]
    first_epoch = data.read[:int(sum(sizes))]
    assert len(set(first_epoch)) == len(first_epoch) == 122  # no example twice within the epoch


def test_curriculum_switches_sets_and_keeps_the_share_of_the_epoch(tmp_path):
    short, full = RecordingDataset(n=64), RecordingDataset(n=32)
    trainer = toy_trainer(tmp_path, data=Curriculum([(0.5, short), (1.0, full)]), max_steps=6, save_every=0)
    trainer.fit()
    assert len(short.read) == 3 * 8 and len(full.read) == 3 * 8
    # After 24 of 64 short examples (3/8 of an epoch) the full set goes on from 12 of 32; the
    # third full batch would pass the end, so it opens epoch 1.
    order = lambda epoch: np.random.default_rng([12345, epoch]).permutation(32).tolist()  # noqa: E731
    assert full.read == order(0)[12:28] + order(1)[:8]


def test_run_length_errors():
    for bad, message in [(dict(max_steps=0), "max_steps must be at least 1"),
                         (dict(time_budget_minutes=1.0, warmup_steps=10), "warmup_fraction"),
                         (dict(batch_ramp_start=4, batch_ramp_fraction=0.0), "batch_ramp_fraction")]:
        with pytest.raises(UserError, match=message):
            Trainer(ToyModel(), ToyObjective(), RecordingDataset(), TrainConfig(device="cpu", **bad), "unused",
                    DistributedContext())
