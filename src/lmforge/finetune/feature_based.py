"""Feature-based fine-tuning (BERT paper §5.3, Table 7): the features of a frozen backbone (a
BERT-family encoder or ELMo), chosen by a layer strategy or ELMo's scalar mix, feed a head
trained alone, a 2-layer BiLSTM tagger for NER or a linear classifier on pooled features
(``lmforge.tasks.feature_based``, ``lmforge.tasks.feature_heads``). ``lmforge evaluate`` and
``lmforge predict`` read the saved head with the backbone it names.

The features are extracted once per run, before training (``lmforge.tasks.feature_sources``),
so no epoch runs the backbone. The training loop, its schedule and the per-epoch scoring
and early stopping are those of ``lmforge.finetune.run``. OUT gets model/ (the head in the
LSTM checkpoint layout, its config naming the backbone and strategy), metrics.json,
metrics.jsonl, the eval predictions and curves.png.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.tasks.feature_based import (
    DEFAULT_HEADS,
    FEATURE_TASKS,
    SCALAR_MIX,
    extraction_strategy,
    feature_width,
    normalise_strategy,
)
from lmforge.tasks.feature_heads import HEADS, build_head
from lmforge.tasks.feature_sources import (
    ALL_LAYERS,
    FeatureCache,
    WordSource,
    load_feature_source,
    pooled_features,
    reduce_stacked,
    word_features,
)

FEATURE_LR = 1e-3  # the CLI's default lr for a feature-based run: a head trained from scratch


def check_feature_settings(cfg) -> None:
    """The feature-based settings of a ``FinetuneConfig``: one-line UserErrors."""
    if not cfg.features:
        if cfg.head is not None:
            raise UserError("--head chooses the head of a feature-based run; add --features STRATEGY")
        return
    normalise_strategy(cfg.features)
    if cfg.task not in FEATURE_TASKS:
        raise UserError(f"--features works with --task {' or '.join(FEATURE_TASKS)}, not {cfg.task}")
    head = cfg.head or DEFAULT_HEADS[cfg.task]
    if head not in HEADS:
        raise UserError(f"unknown head {head!r}; choose from {', '.join(HEADS)}")
    if cfg.task == "classification" and head != "linear":
        raise UserError("feature-based classification reads one pooled vector per text: use --head linear")
    if cfg.head_hidden < 1:
        raise UserError(f"head_hidden must be at least 1, got {cfg.head_hidden}")
    if cfg.symmetric_pairs or cfg.lm_loss_weight:
        raise UserError("symmetric_pairs and lm_loss_weight are decoder fine-tuning options, not feature-based ones")
    if cfg.freeze_encoder or cfg.gradual_unfreezing or cfg.discriminative_decay:
        raise UserError("a feature-based run keeps the backbone frozen and trains the head only; "
                        "drop freeze_encoder, gradual_unfreezing and discriminative_decay")


def extract_features(task, source: WordSource, examples: list, strategy: str, batch_size: int,
                     cache: FeatureCache) -> list[np.ndarray]:
    """The frozen features of ``examples`` for ``strategy``: from the cache, derived from
    every layer when the cache holds those for the same data, else extracted."""
    wanted = extraction_strategy(strategy)
    if task.name == "ner":
        items, extract, kind = [e.words for e in examples], word_features, "words"
    else:
        items, extract, kind = [(e.text, e.pair) for e in examples], pooled_features, "pooled"
    every_layer = FeatureCache.key(source, ALL_LAYERS, kind, items)
    if wanted != ALL_LAYERS and every_layer in cache and FeatureCache.key(source, wanted, kind, items) not in cache:
        cache.hits += 1  # derived, not stored: a strategy's combination is cheap to redo
        return [reduce_stacked(stacked, wanted) for stacked in cache[every_layer]]
    return extract(source, items, wanted, batch_size, cache)


def head_outputs(task, model: nn.Module, features, batch_size: int, device: torch.device) -> tuple[list, float, int]:
    """Per-feature head outputs in input order, with the summed loss and its count (0 without targets)."""
    # Longest sentences first (NER vectors are (..., words, D)); pooled vectors all have one length.
    order = np.argsort([-f["vectors"].shape[-2] if task.name == "ner" else 0 for f in features], kind="stable")
    rows: list = [None] * len(features)
    loss, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            index = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in task.collate([features[i] for i in index]).items()}
            values, batch_loss, batch_count = task.infer_batch(model, batch, unpad=False)
            for i, value in zip(index, values):
                rows[i] = value
            loss, count = loss + batch_loss, count + batch_count
    model.train(was_training)
    return rows, loss, count


def evaluate_head(task, model: nn.Module, examples, features, batch_size: int,
                  device: torch.device) -> tuple[dict[str, float], Any]:
    """Metrics (with ``loss``) and predictions of the head on extracted eval features."""
    rows, loss, count = head_outputs(task, model, features, batch_size, device)
    predictions = task.decode(examples, features, rows)
    metrics = task.score(examples, predictions)
    if count:
        metrics["loss"] = loss / count
    return metrics, predictions


def save_head(model: nn.Module, head_config: dict, task, directory: Path) -> None:
    """The head in the LSTM checkpoint layout, staged and renamed over ``directory``."""
    from lmforge.files import staged_dir
    from lmforge.lstm.checkpoint import save_lstm

    with staged_dir(directory) as staging:
        save_lstm(model, head_config, "feature_head", task.model_task, staging)


def load_head(directory: str | Path) -> tuple[nn.Module, dict]:
    """(head, its config) from a feature-based run's model directory."""
    import lmforge.tasks.feature_heads  # noqa: F401 (registers the feature_head model type)
    from lmforge.lstm.checkpoint import load_lstm, read_lstm_config

    model_type, _, config = read_lstm_config(directory)
    if model_type != "feature_head":
        raise UserError(f"{directory} holds a {model_type} model, not a feature-based head")
    return load_lstm(directory), config


def is_feature_head(directory: str | Path) -> bool:
    from lmforge.lstm.checkpoint import is_lstm_checkpoint, read_lstm_config

    return is_lstm_checkpoint(directory) and read_lstm_config(directory)[0] == "feature_head"


def load_feature_model(directory: str | Path, task_name: str | None, options, device: str = "auto"):
    """(task, head, source, strategy, device) of a feature-based run's model directory; the
    backbone is the one its config names, read with the max_length it was trained with."""
    from lmforge.tasks import LabelMap
    from lmforge.training.distributed import setup

    head, config = load_head(directory)
    stored = config["fine_tuning_task"]
    if task_name is not None and task_name != stored:
        raise UserError(f"{directory} holds a feature-based {stored} head, not a {task_name} one")
    task = FEATURE_TASKS[stored](options, LabelMap(config["labels"]))
    device_ = setup(device).device
    source = load_feature_source(config["backbone"], config["max_length"], device_)
    return task, head.to(device_).eval(), source, config["strategy"], device_


def evaluate_feature_model(directory, task_name, data, options, batch_size: int, device: str,
                           limit: int = 0) -> tuple[Any, list, dict[str, float], Any]:
    """(task, examples, metrics, predictions) of a feature-based head on a labelled file."""
    from lmforge.finetune.common import check_known_labels

    task, head, source, strategy, device_ = load_feature_model(directory, task_name, options, device)
    examples = task.read(data)[: limit or None]
    check_known_labels(task, examples, data)
    features = task.features_from(examples, extract_features(task, source, examples, strategy, batch_size,
                                                             FeatureCache()))
    metrics, predictions = evaluate_head(task, head, examples, features, batch_size, device_)
    return task, examples, metrics, predictions


def predict_feature_lines(directory, task_name, input_path, pair: bool, options, batch_size: int,
                          device: str) -> list[str]:
    """``lmforge predict`` for a feature-based head: one output line per input."""
    task, head, source, strategy, device_ = load_feature_model(directory, task_name, options, device)
    examples = task.read_inputs(input_path, pair)
    if not examples:
        return []
    features = task.features_from(examples, extract_features(task, source, examples, strategy, batch_size,
                                                             FeatureCache()), labelled=False)
    rows, _, _ = head_outputs(task, head, features, batch_size, device_)
    return task.format_predictions(examples, task.decode(examples, features, rows))


def _backbone_name(model: str) -> str:
    """A local checkpoint as an absolute path (the head is read from anywhere later); a hub id as given."""
    return str(Path(model).resolve()) if Path(model).exists() else str(model)


class HeadEvaluator:
    """The Trainer's ``evaluate_fn``: score the eval features after each epoch; keep (save)
    the head of the best epoch."""

    def __init__(self, task, model, examples, features, cfg, steps_per_epoch: int, device, head_config: dict):
        from lmforge.finetune.common import EarlyStopping

        self.task, self.model, self.examples, self.features = task, model, examples, features
        self.cfg, self.steps_per_epoch, self.device, self.head_config = cfg, steps_per_epoch, device, head_config
        self.stopping = EarlyStopping(cfg.patience)
        self.current_step = lambda: 0
        self.best_metrics: dict[str, float] = {}
        self.best_predictions: Any = None
        self.seconds = 0.0
        self.epochs_run = 0

    def __call__(self) -> dict[str, float]:
        from lmforge.finetune.common import describe as _describe
        from lmforge.finetune.common import say as _say

        step = self.current_step()
        if step == 0:
            return {}
        started = time.perf_counter()
        metrics, predictions = evaluate_head(self.task, self.model, self.examples, self.features,
                                             self.cfg.eval_batch_size, self.device)
        epoch = self.epochs_run = step // self.steps_per_epoch
        improved = self.stopping.update(metrics[self.task.metric], epoch)
        if improved:
            self.best_metrics, self.best_predictions = metrics, predictions
            save_head(self.model, self.head_config, self.task, Path(self.cfg.out) / "model")
        _say(f"epoch {epoch}: {_describe(metrics)}" + (" (best, saved)" if improved else ""))
        self.seconds += time.perf_counter() - started
        return {f"eval_{k}": v for k, v in metrics.items()}

    def should_stop(self) -> bool:
        return self.stopping.should_stop


def run_feature_based(cfg, source: WordSource | None = None, cache: FeatureCache | None = None) -> dict[str, Any]:
    """Train a head on frozen features per ``cfg`` (``FinetuneConfig`` with ``features``).
    ``source`` (default: loaded from ``cfg.model``) and ``cache`` may be shared between runs
    on the same data, so a sweep over strategies runs the backbone once."""
    from lmforge.finetune.common import choose_labels, lr_schedule
    from lmforge.finetune.common import describe as _describe
    from lmforge.finetune.common import say as _say
    from lmforge.training import distributed
    from lmforge.training.loop import TrainConfig, Trainer
    from lmforge.training.report import plot_curves

    cfg.validate()
    if not cfg.features:
        raise UserError("run_feature_based needs features (a layer strategy)")
    out = Path(cfg.out)
    if (out / "model").exists() or (out / "metrics.json").exists():
        raise UserError(f"{out} already holds a fine-tuning run; choose another --out")
    strategy = normalise_strategy(cfg.features)
    head_name = cfg.head or DEFAULT_HEADS[cfg.task]
    task = FEATURE_TASKS[cfg.task](cfg.task_options())
    train_examples = task.trainable(task.read(cfg.train)[: cfg.limit or None])
    eval_examples = task.read(cfg.eval)[: cfg.eval_limit or None]
    no_head = SimpleNamespace(task="", config=SimpleNamespace(labels=()))  # labels come from the data
    task.labels = choose_labels(task, no_head, train_examples, eval_examples,
                                f"{cfg.train} (its first {cfg.limit} examples)" if cfg.limit else str(cfg.train),
                                f"{cfg.eval} (its first {cfg.eval_limit} examples)" if cfg.eval_limit else str(cfg.eval))
    ctx = distributed.setup(cfg.device)
    if ctx.world_size > 1:
        raise UserError("fine-tuning runs in one process; start it without torchrun")
    source = source or load_feature_source(cfg.model, task.max_length, ctx.device)
    cache = cache if cache is not None else FeatureCache()

    started = time.perf_counter()
    train_features = task.features_from(train_examples, extract_features(
        task, source, train_examples, strategy, cfg.eval_batch_size, cache))
    eval_features = task.features_from(eval_examples, extract_features(
        task, source, eval_examples, strategy, cfg.eval_batch_size, cache))
    extract_seconds = time.perf_counter() - started

    head_config = {"head": head_name, "width": feature_width(strategy, source.width), "num_labels": len(task.labels),
                   "hidden": cfg.head_hidden, "mix_layers": source.num_layers if strategy == SCALAR_MIX else 0,
                   "strategy": strategy, "backbone": _backbone_name(cfg.model), "fine_tuning_task": task.name,
                   "max_length": task.max_length, "labels": list(task.labels.labels)}
    torch.manual_seed(cfg.seed)
    model = build_head(head_config)
    batch_size = min(cfg.batch_size, len(train_features))
    steps_per_epoch = len(train_features) // batch_size
    total_steps = steps_per_epoch * cfg.epochs
    train_config = TrainConfig(max_steps=total_steps, batch_size=batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               eval_every=steps_per_epoch, log_every=max(1, total_steps // 1000), seed=cfg.seed,
                               unpad=False, device=cfg.device)
    model.to(ctx.device)
    evaluator = HeadEvaluator(task, model, eval_examples, eval_features, cfg, steps_per_epoch, ctx.device, head_config)
    trainer = Trainer(model, task, train_features, train_config, out, ctx, lr_multiplier=lr_schedule(cfg, total_steps),
                      evaluate_fn=evaluator, should_stop=evaluator.should_stop, save_checkpoints=False)
    evaluator.current_step = lambda: trainer.step
    _say(f"feature-based {task.name}: {head_name} head on {strategy} features of {cfg.model} "
         f"({sum(p.numel() for p in model.parameters()):,} parameters trainable; features of "
         f"{len(train_examples) + len(eval_examples):,} examples in {extract_seconds:.1f} s), "
         f"{cfg.epochs} epoch(s) of {steps_per_epoch} steps on {ctx.device}")
    result = trainer.fit()

    train_seconds = max(result["seconds"] - evaluator.seconds, 1e-9)
    task.write_predictions(out / task.predictions_file, eval_examples, evaluator.best_predictions)
    summary = {
        "task": task.name,
        "features": strategy,
        "head": head_name,
        "checkpoint": str(cfg.model),
        "model": str(out / "model"),
        **evaluator.best_metrics,
        "metric": task.metric,
        "best_epoch": evaluator.stopping.best_epoch,
        "epochs_run": evaluator.epochs_run,
        "stopped_early": evaluator.epochs_run < cfg.epochs,
        "extract_seconds": round(extract_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "examples_per_second": round(result["steps"] * batch_size / train_seconds, 2),
        "train_examples": len(train_examples),
        "eval_examples": len(eval_examples),
        "labels": list(task.labels.labels),
        "device": str(ctx.device),
        "settings": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"feature-based {task.name} ({strategy})")
    _say(f"best epoch {summary['best_epoch']}: {_describe(evaluator.best_metrics)}; "
         f"{summary['train_seconds']} s training; wrote {out}")
    return summary
