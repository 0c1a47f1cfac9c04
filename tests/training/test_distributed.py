"""Per-rank randomness under DDP: every rank reads the same data order (its own slice of each
global batch) but draws its own dropout masks; two gloo processes on CPU."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from toy import RecordingDataset, ToyModel, ToyObjective

from lmforge.training.distributed import DistributedContext
from lmforge.training.loop import TrainConfig, Trainer, dropout_seed, epoch_order

SEED, STEPS, BATCH = 7, 2, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        # As run_pretraining and run_finetune do: one seed on every rank before the model is built.
        torch.manual_seed(SEED)
        model, data = ToyModel(), RecordingDataset()
        config = TrainConfig(max_steps=STEPS, batch_size=BATCH, seed=SEED, log_every=1, device="cpu")
        ctx = DistributedContext(rank, world_size, rank, torch.device("cpu"))
        Trainer(model, ToyObjective(), data, config, out, ctx, save_checkpoints=False).fit()
        masks = [m.int().tolist() for m in model.masks]
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"read": data.read, "masks": masks}, f)
    finally:
        dist.destroy_process_group()


def test_ranks_share_the_data_order_but_not_the_dropout_masks(tmp_path):
    mp.spawn(train_rank, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    order = epoch_order(len(RecordingDataset()), SEED, 0)
    half = BATCH // 2
    for step in range(STEPS):
        global_batch = order[step * BATCH:(step + 1) * BATCH].tolist()
        # Each rank reads its half of the same global batch of the shared permutation.
        assert ranks[0]["read"][step * half:(step + 1) * half] == global_batch[:half]
        assert ranks[1]["read"][step * half:(step + 1) * half] == global_batch[half:]
    masks = [np.array(r["masks"]) for r in ranks]
    assert masks[0].shape == masks[1].shape == (STEPS, half, 64)
    for step in range(STEPS):
        # Dropout on: about half the units dropped, and not the same ones on the two ranks.
        assert 0.3 < masks[0][step].mean() < 0.7
        assert (masks[0][step] != masks[1][step]).mean() > 0.3
    assert (masks[0][0] != masks[0][1]).mean() > 0.3  # and fresh masks every step


def test_dropout_seed_is_a_function_of_seed_rank_and_step():
    seeds = {dropout_seed(s, r, t) for s in (0, 1) for r in range(4) for t in range(50)}
    assert len(seeds) == 2 * 4 * 50
    assert dropout_seed(3, 1, 17) == dropout_seed(3, 1, 17)  # a resumed rank redraws the same masks
    torch.manual_seed(dropout_seed(3, 1, 17))
    first = torch.rand(5)
    torch.manual_seed(dropout_seed(3, 1, 17))
    assert torch.equal(first, torch.rand(5))
