"""A training set that changes with the run's progress: a curriculum of stages.

Short sequences first, then full length, is the sequence-length curriculum of BERT's own
pretraining (Devlin et al. 2019, appendix A.2: 90% of steps at 128 tokens, the rest at 512) and
of the efficient-pretraining work after it (Izsak et al. 2021; Li et al. 2022, "The Stability-
Efficiency Dilemma", sequence-length warm-up). Each stage is its own dataset; the Trainer calls
``set_progress`` with the share of the run done (of max_steps, or of a time budget) before it
takes a batch, and keeps its place in the epoch as a share when the stage changes.
"""

from __future__ import annotations

import torch

from lmforge.errors import UserError


class Curriculum(torch.utils.data.Dataset):
    """``stages``: ``[(until, dataset), ...]`` with ``until`` rising; the stage in use at
    progress ``p`` is the first whose ``until`` exceeds ``p`` (the last one from then on)."""

    def __init__(self, stages: list[tuple[float, torch.utils.data.Dataset]]) -> None:
        untils = [until for until, _ in stages]
        if not stages or untils != sorted(untils):
            raise UserError("a curriculum needs stages in order of their end")
        self.stages = stages
        self.stage = 0

    def set_progress(self, progress: float) -> None:
        self.stage = next((k for k, (until, _) in enumerate(self.stages) if progress < until), len(self.stages) - 1)

    def set_epoch(self, epoch: int) -> None:
        for _, dataset in self.stages:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    @property
    def current(self) -> torch.utils.data.Dataset:
        return self.stages[self.stage][1]

    def __len__(self) -> int:
        return len(self.current)

    def __getitem__(self, index: int):
        return self.current[index]
