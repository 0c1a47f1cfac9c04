"""The training loop, read top to bottom; pretraining and fine-tuning both run it.

What it does each optimizer step:
1. take the next global batch of example indices from a per-epoch permutation seeded by
   (seed, epoch), the same on every rank; under torchrun each rank takes its own slice, split
   into micro-batches;
2. ask the objective for the counts its losses are averaged over (masked tokens, examples),
   summed over micro-batches and ranks, so the loss is the mean over the whole global batch
   however it is split (one process or many, any accumulation);
3. seed dropout from (seed, rank, step): every rank draws its own masks, as independent
   workers would (one seed on all ranks would drop the same units everywhere);
4. forward/backward each micro-batch (bf16 autocast on GPU, fp32 on CPU), clip, AdamW step,
   learning-rate schedule step (``lmforge.training.schedules``);
5. log, evaluate on held-out data and checkpoint at their intervals.

A run has a length in steps (``max_steps``) or in time (``time_budget_minutes``, after Izsak
et al. 2021 and Cramming, Geiping & Goldstein 2022): with a budget the learning-rate schedule
is a function of the training seconds spent so far (``schedules.by_progress``), reaching 0
exactly when the budget is spent, and the run then ends with an evaluation and a checkpoint.
Training seconds count the steps (data, forward, backward, update), not held-out evaluation
or checkpoint writing, so evaluating more often does not shorten training; they are part of the
checkpoint, so a resumed run keeps its budget accounting. Progress (steps / max_steps, or
seconds / budget) also drives the batch-size ramp (``batch_ramp_start``) and a training set
that changes with it (a sequence-length curriculum: ``set_progress`` on the dataset).

Checkpoints hold everything needed for ``resume`` to continue exactly (see checkpoint.py):
a run killed at any moment and resumed reaches the same losses as one never interrupted. The
data order and the dropout masks are functions of (seed, epoch, index) and (seed, rank, step),
so every rank resumes exactly, although only rank 0 writes the checkpoint.
AdamW follows BERT's optimiser (no weight decay on biases and norm weights).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.objectives.base import Objective
from lmforge.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from lmforge.training.distributed import DistributedContext
from lmforge.training.schedules import Schedule, by_progress, warmup_then_decay


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps (with a time budget: a cap, 0 for none)
    # > 0: the run lasts this many minutes of training time and the schedule ends there
    time_budget_minutes: float = 0.0
    batch_size: int = 32  # sequences per optimizer step, over all ranks and micro-batches
    micro_batch_size: int = 0  # sequences per forward pass per rank; 0: batch_size / world size
    lr: float = 1e-4  # peak learning rate (BERT pretraining 1e-4)
    weight_decay: float = 0.01  # BERT: 0.01, never on biases and norm weights
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-6  # BERT's AdamWeightDecayOptimizer epsilon
    warmup_steps: int = 0  # linear warmup from 0 to lr (factor step / warmup_steps)
    # warm-up as a share of the run (of max_steps, or of the time budget); overrides warmup_steps
    warmup_fraction: float = 0.0
    # decay after warm-up; one_cycle: OneCycleLR's cosine up from lr/25 and down (schedules.by_progress)
    schedule: Literal["linear", "cosine", "constant", "one_cycle"] = "linear"
    # batch-size ramp (Cramming): start at this many sequences per step (0: off) and grow
    # linearly to batch_size over batch_ramp_fraction of the run
    batch_ramp_start: int = 0
    batch_ramp_fraction: float = 0.5
    clip_norm: float = 1.0  # global gradient-norm clipping (0: off)
    log_every: int = 10
    eval_every: int = 0  # 0: evaluate at the end only
    eval_every_seconds: float = 0.0  # also evaluate each time this many training seconds have passed
    eval_batches: int = 20  # cap on held-out examples per evaluation, in global batches
    save_every: int = 0  # 0: checkpoint at the end only
    keep_checkpoints: int = 2
    seed: int = 12345
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU
    unpad: bool = True  # run the model on real tokens only (no compute on padding)
    device: str = "auto"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices, not biases or norm weights (ndim < 2)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_schedule(config: TrainConfig) -> Schedule:
    """The multiplier of ``config.schedule`` after ``config.warmup_steps`` of warm-up, by steps."""
    if config.schedule == "one_cycle" or config.warmup_fraction > 0:
        shape = by_progress(config.schedule, config.warmup_fraction)
        return lambda step: shape(step / config.max_steps)
    # A run shorter than its warm-up (a smoke test of a long recipe) ends its warm-up one step
    # before the last, so the peak rate is reached.
    warmup = min(config.warmup_steps, max(0, config.max_steps - 1))
    return warmup_then_decay(config.max_steps, warmup, config.schedule)


def check_run_length(config: TrainConfig) -> None:
    """One-line errors for a run length or ramp that cannot work."""
    if config.time_budget_minutes < 0 or config.max_steps < 0:
        raise UserError("train.time_budget_minutes and train.max_steps must be >= 0")
    if config.time_budget_minutes == 0 and config.max_steps < 1:
        raise UserError("train.max_steps must be at least 1 (or set train.time_budget_minutes)")
    if config.time_budget_minutes > 0 and config.warmup_steps and not config.warmup_fraction:
        raise UserError("a time budget schedules by time: give the warm-up as train.warmup_fraction, "
                        "not train.warmup_steps")
    if not 0 <= config.warmup_fraction < 1:
        raise UserError(f"train.warmup_fraction must be in [0, 1), got {config.warmup_fraction}")
    if config.batch_ramp_start < 0 or not 0 < config.batch_ramp_fraction <= 1:
        raise UserError("train.batch_ramp_start must be >= 0 and train.batch_ramp_fraction in (0, 1]")
    if config.eval_every_seconds < 0:
        raise UserError("train.eval_every_seconds must be >= 0")


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the examples in ``epoch``: the same on every rank (ranks take slices)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


DROPOUT_STREAM = 2  # seed stream of dropout, apart from the data order's [seed, epoch]


def dropout_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of optimizer step ``step`` on ``rank``: distinct per rank and per step,
    and a function of them alone, so a resumed rank draws the masks it would have drawn."""
    return int(np.random.SeedSequence([seed, DROPOUT_STREAM, rank, step]).generate_state(1, np.uint64)[0])


class Trainer:
    """Runs ``objective`` (a pretraining objective or a fine-tuning task,
    ``lmforge.objectives.base.Objective``) on ``model`` over ``train_data`` (a map-style
    dataset whose items are deterministic in (epoch, index); ``set_epoch`` is called when it
    has one). Batches are made by ``objective.collate``."""

    def __init__(self, model: nn.Module, objective: Objective, train_data,
                 config: TrainConfig, out_dir: str | Path, ctx: DistributedContext, eval_data=None,
                 optimizer_groups: list[dict] | None = None, lr_multiplier: Schedule | None = None,
                 on_epoch: Callable[[int], None] | None = None, evaluate_fn: Callable[[], dict] | None = None,
                 token_key: str = "attention_mask", should_stop: Callable[[], bool] | None = None,
                 save_checkpoints: bool = True) -> None:
        """``should_stop`` is asked after every step (early stopping ends the run when it says
        True); ``save_checkpoints=False`` writes no checkpoints (a caller keeping its own best
        model, as fine-tuning does)."""
        self.config, self.ctx, self.objective, self.collate = config, ctx, objective, objective.collate
        self.train_data, self.eval_data = train_data, eval_data
        self.out_dir = Path(out_dir)
        self.on_epoch, self.evaluate_fn, self.token_key = on_epoch, evaluate_fn, token_key
        self.should_stop, self.save_checkpoints = should_stop, save_checkpoints
        self.micro = config.micro_batch_size or config.batch_size // ctx.world_size
        per_rank = config.batch_size // ctx.world_size
        if config.batch_size % ctx.world_size or per_rank % self.micro:
            raise UserError(
                f"batch_size {config.batch_size} must split evenly over {ctx.world_size} process(es) "
                f"and micro-batches of {self.micro}")
        check_run_length(config)
        self.step, self.epoch, self.position = 0, 0, 0  # position: examples taken in this epoch
        self.train_seconds = 0.0  # time spent in training steps, the budget's clock
        self.budget_seconds = config.time_budget_minutes * 60.0
        self._set_epoch(0)
        if len(self.train_data) < config.batch_size:
            raise UserError(f"the training data has {len(train_data)} examples, fewer than one batch of {config.batch_size}")
        self.model = model.to(ctx.device)
        groups = optimizer_groups or param_groups(model, config.weight_decay)
        # Fused AdamW on every device: on CPU it takes 14 ms per step for the 22.7M parameters
        # of MiniLM against 61 ms (foreach) and 95 ms (per-parameter loop), which matters when
        # fine-tuning batches are small; it differs from the loop by ~1e-8 (RESULTS.md).
        fused = {"fused": True}
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                                           eps=config.adam_eps, **fused)
        if lr_multiplier is None and self.budget_seconds:
            by_time = by_progress(config.schedule, config.warmup_fraction)
            lr_multiplier = lambda _step: by_time(self.progress())  # noqa: E731 (reads the clock)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier or lr_schedule(config))
        self.wrapped = model
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.wrapped = DistributedDataParallel(model, device_ids=ids)
        use_bf16 = config.precision == "bf16" or (config.precision == "auto" and ctx.device.type == "cuda")
        self.autocast = (lambda: torch.autocast(ctx.device.type, dtype=torch.bfloat16)) if use_bf16 else nullcontext

    # -- progress ---------------------------------------------------------------------------
    def progress(self) -> float:
        """How far the run is, in [0, 1]: training seconds / budget, or steps / max_steps."""
        if self.budget_seconds:
            return min(1.0, self.train_seconds / self.budget_seconds)
        return min(1.0, self.step / self.config.max_steps)

    def finished(self) -> bool:
        cfg = self.config
        out_of_time = bool(self.budget_seconds) and self.train_seconds >= self.budget_seconds
        return out_of_time or (cfg.max_steps > 0 and self.step >= cfg.max_steps)

    def batch_size_now(self) -> int:
        """The global batch of this step: batch_size, or on the ramp from batch_ramp_start to it
        (rounded down to a multiple of the process count)."""
        cfg, world = self.config, self.ctx.world_size
        if not cfg.batch_ramp_start or cfg.batch_ramp_start >= cfg.batch_size:
            return cfg.batch_size
        share = min(1.0, self.progress() / cfg.batch_ramp_fraction)
        size = cfg.batch_ramp_start + (cfg.batch_size - cfg.batch_ramp_start) * share
        return max(world, int(size) // world * world)

    # -- data -------------------------------------------------------------------------------
    def _set_epoch(self, epoch: int) -> None:
        # Datasets may rebuild per epoch (BERT's dupe rounds), so their length can change.
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        if hasattr(self.train_data, "set_progress"):
            # A curriculum's stage (e.g. its sequence length) follows progress; when the set
            # changes size, the place in the epoch keeps its share of the epoch.
            before = len(self.train_data)
            self.train_data.set_progress(self.progress())
            after = len(self.train_data)
            if after != before:
                self.position = self.position * after // max(before, 1)

    def _global_batch_indices(self) -> np.ndarray:
        size = self.batch_size_now()
        self._set_epoch(self.epoch)
        if self.position + size > len(self.train_data):
            self.epoch, self.position = self.epoch + 1, 0
            self._set_epoch(self.epoch)
            if self.on_epoch:
                self.on_epoch(self.epoch)
        order = epoch_order(len(self.train_data), self.config.seed, self.epoch)
        start = self.position
        self.position += size
        return order[start:start + size]

    def _micro_batches(self, indices: np.ndarray) -> list[dict]:
        per_rank = len(indices) // self.ctx.world_size
        mine = indices[self.ctx.rank * per_rank:(self.ctx.rank + 1) * per_rank]
        return [self._to_device(self.collate([self.train_data[int(i)] for i in mine[k:k + self.micro]]))
                for k in range(0, len(mine), self.micro)]

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.ctx.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    # -- one optimizer step -----------------------------------------------------------------
    clock = staticmethod(time.perf_counter)  # the budget's clock (tests give a fake one)

    def train_step(self) -> dict[str, float]:
        started = self.clock()
        record = self._train_step()
        seconds = self.clock() - started
        if self.ctx.enabled:  # one clock for every rank, so they all stop at the same step
            seconds = float(self.ctx.all_reduce_sum(torch.tensor([seconds], dtype=torch.float64))[0]) / self.ctx.world_size
        self.train_seconds += seconds
        self.scheduler.step()  # after the clock moved: a schedule by time reads it
        record["train_seconds"] = self.train_seconds
        return record

    def _train_step(self) -> dict[str, float]:
        batches = self._micro_batches(self._global_batch_indices())
        torch.manual_seed(dropout_seed(self.config.seed, self.ctx.rank, self.step))
        per_batch = [self.objective.counts(b) for b in batches]
        names = list(per_batch[0])
        counts = torch.tensor([[c[n] for n in names] for c in per_batch], dtype=torch.float64).sum(0)
        counts = self.ctx.all_reduce_sum(counts).clamp(min=1)
        sums = torch.zeros(len(names), dtype=torch.float64)
        self.wrapped.train()
        for k, batch in enumerate(batches):
            last = k == len(batches) - 1
            sync = nullcontext() if (last or not self.ctx.enabled) else self.wrapped.no_sync()
            with sync:
                with self.autocast():
                    terms = self.objective.loss_sums(self.wrapped, batch, self.config.unpad)
                # Each term averages over the whole global batch; DDP then averages ranks, so
                # multiply by the world size to undo that and keep the global mean.
                loss = sum(terms[n] / counts[i].item() for i, n in enumerate(names)) * self.ctx.world_size
                loss.backward()
            sums += torch.tensor([float(terms[n].detach()) for n in names], dtype=torch.float64)
        grad_norm = (torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
                     if self.config.clip_norm > 0 else torch.tensor(0.0))
        lr = self.optimizer.param_groups[-1]["lr"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        sums = self.ctx.all_reduce_sum(sums)
        tokens = self.ctx.all_reduce_sum(torch.tensor(float(sum(int(b[self.token_key].sum()) for b in batches))))
        record = {f"{n}_loss": float(sums[i] / counts[i]) for i, n in enumerate(names)}
        record["loss"] = sum(record.values())
        record.update(lr=lr, grad_norm=float(grad_norm), tokens=float(tokens),
                      batch_size=float(sum(len(b[self.token_key]) for b in batches) * self.ctx.world_size))
        return record

    # -- held-out evaluation ----------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.evaluate_fn is not None:
            return self.evaluate_fn()
        if self.eval_data is None:
            return {}
        self.model.eval()
        totals: dict[str, list[float]] = {}
        # The same examples however the run is split over processes (global batches).
        n = min(len(self.eval_data), self.config.eval_batches * self.config.batch_size)
        mine = list(range(self.ctx.rank, n, self.ctx.world_size))
        for start in range(0, len(mine), self.micro):
            batch = self._to_device(self.collate([self.eval_data[i] for i in mine[start:start + self.micro]]))
            with self.autocast():
                for key, (s, c) in self.objective.eval_sums(self.model, batch, self.config.unpad).items():
                    pair = totals.setdefault(key, [0.0, 0.0])
                    pair[0] += float(s)
                    pair[1] += float(c)
        keys = sorted(totals)
        flat = self.ctx.all_reduce_sum(torch.tensor([totals[k] for k in keys], dtype=torch.float64).reshape(-1, 2))
        metrics = {f"eval_{k}": float(s / max(c, 1)) for k, (s, c) in zip(keys, flat.tolist())}
        derived = getattr(self.objective, "derived_metrics", None)  # duck-typed objectives may lack it
        return {**metrics, **(derived(metrics) if derived else {})}

    # -- the run ----------------------------------------------------------------------------
    def fit(self, resume: bool = False, on_checkpoint: Callable[[Path], None] | None = None) -> dict[str, Any]:
        cfg, ctx = self.config, self.ctx
        metrics_path = self.out_dir / "metrics.jsonl"
        if resume:
            checkpoint = latest_checkpoint(self.out_dir / "checkpoints")
            if checkpoint is None:
                raise UserError(f"--resume: no checkpoint in {self.out_dir / 'checkpoints'}")
            state = load_checkpoint(checkpoint, self.model, self.optimizer, self.scheduler)
            self.step, self.epoch = state["step"], state["epoch"]
            # checkpoints before lmforge 0.3 count whole batches of batch_size
            self.position = state.get("example_in_epoch", state.get("batch_in_epoch", 0) * cfg.batch_size)
            self.train_seconds = float(state.get("train_seconds", 0.0))
            if ctx.is_main:
                _truncate_metrics(metrics_path, self.step)
        elif ctx.is_main:
            if (self.out_dir / "checkpoints").exists():
                raise UserError(f"{self.out_dir} already holds a run; pass --resume to continue it or choose another --out")
            self.out_dir.mkdir(parents=True, exist_ok=True)
            metrics_path.write_text("")
        if ctx.is_main:
            (self.out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        bar = _progress(cfg.max_steps, self.step, ctx.is_main, self.budget_seconds, self.train_seconds)
        every = cfg.eval_every_seconds
        next_grid_point = lambda: (int(self.train_seconds // every) + 1) * every if every else float("inf")  # noqa: E731
        next_eval_seconds = next_grid_point()
        window_tokens, window_start = 0.0, time.perf_counter()
        started, first_step = time.perf_counter(), self.step
        record: dict[str, float] = {}
        if self.step == 0:
            baseline = self.evaluate()  # the untrained model: where the curves start
            if baseline and ctx.is_main:
                with metrics_path.open("a") as f:
                    f.write(json.dumps({"step": 0, "epoch": 0, **baseline}) + "\n")
        while not self.finished():
            seconds_before = self.train_seconds
            record = self.train_step()
            window_tokens += record["tokens"]
            is_last = self.finished()
            due = self.train_seconds >= next_eval_seconds
            if due:
                next_eval_seconds = next_grid_point()
            if cfg.eval_every and self.step % cfg.eval_every == 0 or due or is_last:
                eval_started = time.perf_counter()
                record.update(self.evaluate())
                window_start += time.perf_counter() - eval_started  # rates count training only
            if self.step % cfg.log_every == 0 or is_last or any(k.startswith("eval_") for k in record):
                elapsed = time.perf_counter() - window_start
                record["tokens_per_second"] = window_tokens / max(elapsed, 1e-9)
                window_tokens, window_start = 0.0, time.perf_counter()
                if ctx.is_main:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps({"step": self.step, "epoch": self.epoch, **record}) + "\n")
            if bar is not None:
                bar.update(self.train_seconds - seconds_before if self.budget_seconds else 1)
                shown = {"step": str(self.step)} if self.budget_seconds else {}
                shown.update(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                if "tokens_per_second" in record:
                    shown["tok/s"] = f"{record['tokens_per_second']:.0f}"
                accuracy = next((v for k, v in record.items() if k.startswith("eval_") and k.endswith("accuracy")), None)
                if accuracy is not None:  # the objective's first held-out accuracy
                    shown["held-out acc"] = f"{accuracy:.1%}"
                bar.set_postfix(shown)
            elif ctx.is_main and any(k.startswith("eval_") for k in record):
                # No bar (a log file, CI): one plain line per evaluation instead.
                evals = "  ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("eval_"))
                where = (f"step {self.step}  {self.train_seconds:.0f}/{self.budget_seconds:.0f} s"
                         if self.budget_seconds else f"step {self.step}/{cfg.max_steps}")
                print(f"{where}  loss {record['loss']:.4f}  {evals}", flush=True)
            stop = self.should_stop is not None and self.should_stop()
            if self.save_checkpoints and ((cfg.save_every and self.step % cfg.save_every == 0) or is_last or stop):
                if ctx.is_main:
                    path = save_checkpoint(self.out_dir / "checkpoints", self.step, self.model, self.optimizer,
                                           self.scheduler, {"epoch": self.epoch, "example_in_epoch": self.position,
                                                            "train_seconds": self.train_seconds},
                                           keep=cfg.keep_checkpoints)
                    if on_checkpoint:
                        on_checkpoint(path)
                ctx.barrier()
            if stop:
                break
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        return {"steps": self.step, "seconds": seconds, "steps_run": self.step - first_step,
                "train_seconds": self.train_seconds, "last": record}


def _progress(total: int, initial: int, enabled: bool, budget_seconds: float = 0.0, spent: float = 0.0):
    """The bar of the main process, for a person at a terminal (``lmforge.progress``): steps,
    or training seconds of a time budget."""
    from lmforge.progress import progress_enabled

    if not enabled or not progress_enabled():
        return None
    from tqdm import tqdm

    if budget_seconds:
        return tqdm(total=round(budget_seconds), initial=spent, unit="s", dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n:.0f}/{total} s of training [{elapsed}<{remaining}{postfix}]")
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after the checkpoint we resume from: they will be redone."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept))


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
