"""What a fine-tuning run and its feature-based variant share (``lmforge.finetune.run``,
``lmforge.finetune.feature_based``): the label map, the learning-rate schedule, early stopping,
the log lines, and the check of gold labels at evaluation."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lmforge.errors import UserError
from lmforge.tasks import LabelMap, Task
from lmforge.training.schedules import Schedule, slanted_triangular, warmup_then_decay


def choose_labels(task: Task, source: nn.Module, train_examples, eval_examples, train_name: str = "the training data",
                  eval_name: str = "the evaluation data") -> LabelMap | None:
    """The label map: the checkpoint's when it already tags this task with every label the
    data uses (training continues with its head), else the sorted labels of the training data.

    An evaluation label that neither the training data nor that head knows would become a
    class the model never sees a word of: a UserError naming it and how often it occurs."""
    if not task.has_labels:
        return None
    trained = set(task.label_names(train_examples))
    known = trained | (set(source.config.labels) if source.task == task.model_task else set())
    unseen = task.labels_outside(eval_examples, known)
    if unseen:
        label, count = unseen[0]
        names = sorted(name for name, _ in unseen)
        others = f" (and {len(unseen) - 1} more label(s): {', '.join(names[:5])})" if len(unseen) > 1 else ""
        raise UserError(f"label {label!r} occurs in {count} example(s) of {eval_name} but never in {train_name}"
                        f"{others}: the model cannot learn it; fix the label or add training examples")
    seen = trained | set(task.label_names(eval_examples))
    if source.task == task.model_task and source.config.labels and seen <= set(source.config.labels):
        return LabelMap(list(source.config.labels))
    return LabelMap.from_labels(seen)


def lr_schedule(cfg, total_steps: int) -> Schedule:
    """Multiplier of each group's lr after t optimizer steps (``lmforge.training.schedules``):
    warm-up over ``warmup_fraction`` of the steps, then linear decay or a constant rate; or
    ULMFiT's slanted triangle with ``warmup_fraction`` as its cut_frac."""
    if cfg.schedule == "slanted_triangular":
        return slanted_triangular(total_steps, cut_frac=cfg.warmup_fraction, ratio=32)
    warmup = min(int(cfg.warmup_fraction * total_steps), total_steps - 1)
    return warmup_then_decay(total_steps, warmup, cfg.schedule)


class EarlyStopping:
    """Tracks the best value of a metric (higher is better) and epochs without improvement."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """True when ``value`` is a new best (strictly: on a tie the earlier epoch stays)."""
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def describe(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def say(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)


def check_known_labels(task: Task, examples: list, data: str | Path) -> None:
    """A gold label the model was never trained on cannot be scored: one line naming it, the
    file and how many examples carry it, rather than a KeyError deep in encoding."""
    if task.labels is None:
        return
    unknown = task.labels_outside(examples, set(task.labels.labels))
    if unknown:
        label, count = unknown[0]
        more = f" (and {len(unknown) - 1} other unknown label(s))" if len(unknown) > 1 else ""
        raise UserError(f"{data}: label {label!r} ({count} example(s)) is not one the model was trained on"
                        f"{more}; its labels: {', '.join(task.labels.labels)}")
