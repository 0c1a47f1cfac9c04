"""Fine-tuning a checkpoint on a labelled task: settings -> model -> Trainer -> OUT.

BERT's recipe (Devlin et al. 2019, section 4 and appendix A.3): all parameters updated, AdamW
with weight decay 0.01 (not on biases and LayerNorm weights), linear warm-up over the first
10% of the steps then linear decay to 0, a few epochs, the best epoch chosen on the dev set.
The ULMFiT toolbox (Howard & Ruder 2018; ``lmforge.toolbox``) is available as options:
discriminative learning rates over ``model.layer_groups()``, the slanted triangular
schedule (``lmforge.training.schedules``), gradual unfreezing (one more group per epoch, from the top) and a frozen encoder
(a linear probe on the pooled or per-token vectors).

The run reuses the pretraining loop (``lmforge.training.loop.Trainer``) with the task as its
objective; after every epoch the whole eval file is decoded and scored, and the model of the
best epoch is written to OUT/model in Hugging Face layout with its tokenizer and label names.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.finetune.common import EarlyStopping, choose_labels, lr_schedule
from lmforge.finetune.common import describe as _describe
from lmforge.finetune.common import say as _say
from lmforge.finetune.inference import (
    check_length,
    evaluate_features,
    load_checkpoint_and_tokenizer,
)
from lmforge.tasks import LabelMap, Task, TaskOptions, make_task


@dataclass
class FinetuneConfig:
    """Every setting of ``lmforge finetune``; a recipe file holds the same keys (flat)."""

    model: str = ""  # checkpoint directory (lmforge or HF layout) with any head
    task: Literal["classification", "ner", "qa", "multiple_choice", "seq2seq"] = "classification"
    train: str = ""  # training file
    eval: str = ""  # held-out file: scored every epoch, picks the best epoch
    out: str = ""  # output directory
    epochs: int = 3  # BERT: 2-4
    batch_size: int = 32  # BERT: 16 or 32
    eval_batch_size: int = 64
    lr: float = 5.0e-5  # BERT: 5e-5, 3e-5 or 2e-5
    max_length: int | None = None  # tokens per sequence; None: 128 (qa: 384)
    seed: int = 42
    limit: int = 0  # use the first N training examples (0: all)
    eval_limit: int = 0  # score the first N eval examples (0: all)
    text_column: str | None = None  # classification columns; None: detected (GLUE headers)
    pair_column: str | None = None
    label_column: str | None = None
    doc_stride: int = 128  # qa (run_squad)
    max_query_length: int = 64  # qa (run_squad)
    max_answer_length: int = 30  # qa (run_squad)
    n_best: int = 20  # qa (run_squad)
    symmetric_pairs: bool = False  # GPT similarity on a decoder: both orders of a pair, final states added
    lm_loss_weight: float = 0.0  # GPT's auxiliary LM loss on a decoder (the paper: 0.5); 0: off
    warmup_fraction: float = 0.1  # BERT: 10% warm-up; the cut_frac of slanted_triangular
    weight_decay: float = 0.01  # BERT
    schedule: Literal["linear", "slanted_triangular", "constant"] = "linear"
    discriminative_decay: float = 0.0  # ULMFiT: 2.6 (each lower layer group's lr / 2.6); 0: off
    gradual_unfreezing: bool = False  # ULMFiT: train the top group, then one more per epoch
    freeze_encoder: bool = False  # train the task head only (a linear probe)
    patience: int = 0  # stop after N epochs without improvement (0: run every epoch)
    device: str = "auto"
    # seq2seq (lmforge.tasks.seq2seq): fields, decoding and metrics; BART's MT source encoder
    source_column: str | None = None  # JSONL source field (default "source")
    target_column: str | None = None  # JSONL target field (default "target")
    max_target_length: int | None = None  # target tokens kept (default 128, at most the decoder's positions)
    label_smoothing: float = 0.0  # transformers/fairseq label smoothing (BART: 0.1)
    metric: str | None = None  # rouge, bleu or accuracy (default: accuracy with label_words, else rouge)
    num_beams: int = 4  # beam width when evaluating by generation
    source_prefix: str | None = None  # T5 task prefix before every source ("sst2 sentence: ")
    label_words: str | None = None  # classification as text: "negative,positive" or "0=negative,1=positive"
    new_source_encoder: int = 0  # BART MT: layers of a new random source encoder before BART's encoder (0: none)
    source_tokenizer: str | None = None  # BART MT: the source language's tokenizer directory (its own vocabulary)
    stage1_epochs: int = 0  # BART MT: first epochs train only the new encoder, positions, layer-0 q/k/v
    # The feature-based approach (BERT §5.3; lmforge.finetune.feature_based): a head on frozen features.
    features: str | None = None  # layer strategy (lmforge.tasks.feature_based.FEATURE_STRATEGIES); None: fine-tune
    head: Literal["bilstm", "linear"] | None = None  # None: bilstm for ner, linear for classification
    head_hidden: int = 768  # BiLSTM units per direction (BERT §5.3: 768)

    def task_options(self) -> TaskOptions:
        names = {f.name for f in fields(TaskOptions)}
        return TaskOptions(**{k: v for k, v in asdict(self).items() if k in names})

    def validate(self) -> None:
        for key in ("model", "train", "eval", "out"):
            if not getattr(self, key):
                raise UserError(f"missing --{key} (or '{key}:' in the recipe)")
        positive = ("epochs", "batch_size", "eval_batch_size", "doc_stride", "max_query_length",
                    "max_answer_length", "n_best")
        for key in positive:
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("limit", "eval_limit", "patience"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0 or self.weight_decay < 0 or self.discriminative_decay < 0 or self.lm_loss_weight < 0:
            raise UserError("lr must be positive; weight_decay, discriminative_decay and lm_loss_weight >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise UserError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.schedule == "slanted_triangular" and self.warmup_fraction == 0:
            raise UserError("the slanted triangular schedule needs warmup_fraction (its cut_frac) > 0")
        if self.freeze_encoder and self.gradual_unfreezing:
            raise UserError("choose one of freeze_encoder and gradual_unfreezing")
        if self.max_length is not None and self.max_length < 8:
            raise UserError(f"max_length {self.max_length} is too short")
        self._validate_seq2seq()
        from lmforge.finetune.feature_based import check_feature_settings

        check_feature_settings(self)

    def _validate_seq2seq(self) -> None:
        seq2seq_only = ("source_column", "target_column", "max_target_length", "source_prefix", "label_words",
                        "metric", "source_tokenizer")
        used = [k for k in seq2seq_only if getattr(self, k) is not None]
        used += [k for k in ("new_source_encoder", "stage1_epochs", "label_smoothing") if getattr(self, k)]
        if self.task != "seq2seq" and used:
            raise UserError(f"{used[0]} is a --task seq2seq setting")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.num_beams < 1 or (self.max_target_length is not None and self.max_target_length < 2):
            raise UserError("num_beams must be at least 1 and max_target_length at least 2")
        if self.new_source_encoder < 0 or self.stage1_epochs < 0:
            raise UserError("new_source_encoder and stage1_epochs must be >= 0")
        if bool(self.new_source_encoder) != bool(self.source_tokenizer):
            raise UserError("new_source_encoder (layers) and source_tokenizer (its vocabulary) go together")
        if self.stage1_epochs and not self.new_source_encoder:
            raise UserError("stage1_epochs trains a new source encoder first; set new_source_encoder")
        if self.stage1_epochs and (self.freeze_encoder or self.gradual_unfreezing):
            raise UserError("stage1_epochs chooses what trains; leave out freeze_encoder and gradual_unfreezing")
        if self.stage1_epochs >= self.epochs and self.stage1_epochs:
            raise UserError(f"stage1_epochs {self.stage1_epochs} leaves no epoch of stage 2 in {self.epochs}")


# ---------------------------------------------------------------------------------------
# The model to start from


def initial_model(source: nn.Module, task: Task, labels: LabelMap | None, seed: int) -> nn.Module:
    """The model to fine-tune: ``source`` itself when it already has this task's head with
    these labels, else a new task model holding ``source``'s backbone with a freshly
    initialised head (BERT's N(0, 0.02)). A pooler that ``source`` lacks (a token tagger's
    backbone used for classification) starts from its initialisation too, as in
    transformers; any other missing or extra backbone weight is an error."""
    from lmforge.models.build import build_model

    label_names = tuple(labels.labels) if labels is not None else ()
    if source.task == task.model_task and tuple(source.config.labels) == label_names:
        return source.float()
    config = source.config.replace(labels=label_names)
    if config.architecture == "decoder":
        config = config.replace(pooling="last")  # GPT: the classifier reads the final (extract) token
    model = build_model(config, task.model_task, seed=seed)
    backbone = source.backbone
    missing, unexpected = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
    wrong = [name for name in [*missing, *unexpected] if not name.startswith("pooler.")]
    if wrong:
        raise UserError(f"the checkpoint's backbone does not fit a {task.model_task} model ({wrong[0]})")
    return model.float()


# ---------------------------------------------------------------------------------------
# The toolbox wiring


def optimizer_groups(model: nn.Module, cfg: FinetuneConfig) -> list[dict]:
    """AdamW groups over ``model.layer_groups()`` (bottom to top): one rate everywhere, or
    ULMFiT's discriminative rates lr / decay^(depth below the top). Every parameter is in a
    group, frozen or not, so that gradual unfreezing can train it later."""
    from lmforge.toolbox import discriminative_param_groups

    layer_groups = model.layer_groups()
    grouped = {id(p) for group in layer_groups for p in group.parameters()}
    leftover = [p for p in model.parameters() if id(p) not in grouped]
    if leftover:  # a layer_groups() that forgot a parameter would silently never train it
        raise UserError(f"{type(model).__name__}.layer_groups() misses {len(leftover)} parameter(s)")
    return discriminative_param_groups(layer_groups, cfg.lr, decay=cfg.discriminative_decay or 1.0,
                                       weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------------------
# Per-epoch evaluation, early stopping, the best model


class EpochEvaluator:
    """The Trainer's ``evaluate_fn``: decode and score the whole eval file; after a training
    epoch, keep the model and predictions when the metric improves."""

    def __init__(self, task: Task, model: nn.Module, tokenizer, examples, features, cfg: FinetuneConfig,
                 steps_per_epoch: int, device: torch.device) -> None:
        self.task, self.model, self.tokenizer = task, model, tokenizer
        self.examples, self.features, self.cfg = examples, features, cfg
        self.steps_per_epoch, self.device = steps_per_epoch, device
        self.stopping = EarlyStopping(cfg.patience)
        self.current_step = lambda: 0  # set once the Trainer exists
        self.best_metrics: dict[str, float] = {}
        self.best_predictions: Any = None
        self.seconds = 0.0  # evaluating and saving, left out of the training time
        self.epochs_run = 0

    def __call__(self) -> dict[str, float]:
        step = self.current_step()
        if step == 0:
            return {}  # the loop's untrained baseline: a new head's guesses say nothing
        started = time.perf_counter()
        metrics, predictions = evaluate_features(self.task, self.model, self.tokenizer, self.examples,
                                                 self.features, self.cfg.eval_batch_size, self.device)
        epoch = step // self.steps_per_epoch
        self.epochs_run = epoch
        improved = self.stopping.update(metrics[self.task.metric], epoch)
        if improved:
            self.best_metrics, self.best_predictions = metrics, predictions
            save_model(self.model, self.tokenizer, Path(self.cfg.out) / "model")
        _say(f"epoch {epoch}: {_describe(metrics)}"
             + (" (best, saved)" if improved else f" (best {self.task.metric} "
                f"{self.stopping.best:.4f} at epoch {self.stopping.best_epoch})"))
        self.seconds += time.perf_counter() - started
        return {f"eval_{k}": v for k, v in metrics.items()}

    def should_stop(self) -> bool:
        return self.stopping.should_stop


def save_model(model: nn.Module, tokenizer, directory: Path) -> None:
    """HF layout (lmforge's own where transformers has no class for the family's task, e.g.
    multiple choice on GPT-2), built beside the target and renamed over it
    (``lmforge.files.staged_dir``): the previous best model stays whole until the new one is complete."""
    import lmforge
    from lmforge.families import registered_families
    from lmforge.files import staged_dir
    from lmforge.tasks.source_encoder import save_source_side

    family = registered_families().get(model.config.family)
    has_hf_class = family is not None and model.task in family.hf_architectures and \
        not getattr(model.backbone, "source_encoder", None)
    with staged_dir(directory) as staging:
        lmforge.save(model, staging, tokenizer, format="hf" if has_hf_class else "lmforge")
        save_source_side(model, staging)


def _source_tokenizer(directory: str):
    import lmforge

    tokenizer = lmforge.load_tokenizer(directory)
    if tokenizer is None:
        raise UserError(f"--source-tokenizer {directory} holds no tokenizer files (tokenizer.json or vocab.txt)")
    return tokenizer


# ---------------------------------------------------------------------------------------
# The run


def run_finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune per ``cfg``; OUT gets model/, metrics.json, metrics.jsonl, the eval
    predictions and curves.png. Returns the contents of metrics.json."""
    from lmforge.tasks.source_encoder import TwoStages, with_source_encoder
    from lmforge.toolbox import GradualUnfreezer, freeze
    from lmforge.training import distributed
    from lmforge.training.loop import TrainConfig, Trainer
    from lmforge.training.report import plot_curves

    cfg.validate()
    if cfg.features:
        from lmforge.finetune.feature_based import run_feature_based

        return run_feature_based(cfg)
    out = Path(cfg.out)
    if (out / "model").exists() or (out / "metrics.json").exists():
        raise UserError(f"{out} already holds a fine-tuning run; choose another --out")
    task = make_task(cfg.task, cfg.task_options())
    train_examples = task.trainable(task.read(cfg.train)[: cfg.limit or None])
    eval_examples = task.read(cfg.eval)[: cfg.eval_limit or None]
    source, tokenizer = load_checkpoint_and_tokenizer(cfg.model)
    train_name = f"{cfg.train} (its first {cfg.limit} examples)" if cfg.limit else str(cfg.train)
    eval_name = f"{cfg.eval} (its first {cfg.eval_limit} examples)" if cfg.eval_limit else str(cfg.eval)
    task.labels = choose_labels(task, source, train_examples, eval_examples, train_name, eval_name)
    task.pad_id = tokenizer.pad_id
    model = initial_model(source, task, task.labels, cfg.seed)
    if cfg.new_source_encoder:  # BART's machine translation (lmforge.tasks.source_encoder)
        model = with_source_encoder(model, cfg.new_source_encoder, _source_tokenizer(cfg.source_tokenizer), cfg.seed)
    task.configure_for(model, tokenizer)
    check_length(task, model)
    train_features = task.encode(train_examples, tokenizer)
    eval_features = task.encode(eval_examples, tokenizer)
    if task.name == "qa":  # offsets matter for decoding only: drop them from training windows
        train_features = [{k: v for k, v in f.items() if k != "offsets"} for f in train_features]

    ctx = distributed.setup(cfg.device)
    if ctx.world_size > 1:
        raise UserError("fine-tuning runs in one process; start it without torchrun")
    batch_size = min(cfg.batch_size, len(train_features))  # a tiny training set: one batch of all of it
    steps_per_epoch = len(train_features) // batch_size
    total_steps = steps_per_epoch * cfg.epochs
    groups = optimizer_groups(model, cfg)
    on_epoch = None
    if cfg.stage1_epochs:
        stages = TwoStages(model, cfg.stage1_epochs)
        stages.on_epoch(0)
        on_epoch = stages.on_epoch
    elif cfg.freeze_encoder:
        freeze(model.backbone)
    elif cfg.gradual_unfreezing:
        unfreezer = GradualUnfreezer(model.layer_groups())
        unfreezer.start()
        on_epoch = unfreezer.on_epoch
    # The loop's own warm-up/schedule fields stay unused: lr_multiplier below replaces them.
    train_config = TrainConfig(
        max_steps=total_steps, batch_size=batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
        eval_every=steps_per_epoch, log_every=max(1, total_steps // 1000), seed=cfg.seed, unpad=True,
        device=cfg.device)
    model.to(ctx.device)
    evaluator = EpochEvaluator(task, model, tokenizer, eval_examples, eval_features, cfg, steps_per_epoch, ctx.device)
    # Dropout is seeded by the Trainer, from (seed, step).
    trainer = Trainer(model, task, train_features, train_config, out, ctx, optimizer_groups=groups,
                      lr_multiplier=lr_schedule(cfg, total_steps),
                      on_epoch=on_epoch, evaluate_fn=evaluator, should_stop=evaluator.should_stop,
                      save_checkpoints=False)
    evaluator.current_step = lambda: trainer.step
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _say(f"fine-tuning {task.model_task} ({trainable:,} of {sum(p.numel() for p in model.parameters()):,} "
         f"parameters trainable) on {len(train_examples):,} examples ({len(train_features):,} sequences), "
         f"{cfg.epochs} epoch(s) of {steps_per_epoch} steps on {ctx.device}")
    result = trainer.fit()

    train_seconds = max(result["seconds"] - evaluator.seconds, 1e-9)
    task.write_predictions(out / task.predictions_file, eval_examples, evaluator.best_predictions)
    if task.name == "seq2seq":  # evaluate and predict read the prefix, label words and metric from here
        from lmforge.tasks.seq2seq import save_settings

        save_settings(task.options, out / "model")
    summary = {
        "task": task.name,
        "checkpoint": str(cfg.model),
        "model": str(out / "model"),
        **evaluator.best_metrics,
        "metric": task.metric,
        "best_epoch": evaluator.stopping.best_epoch,
        "epochs_run": evaluator.epochs_run,
        "stopped_early": evaluator.epochs_run < cfg.epochs,
        "train_seconds": round(train_seconds, 3),
        "examples_per_second": round(result["steps"] * batch_size / train_seconds, 2),
        "train_examples": len(train_examples),
        "train_sequences": len(train_features),
        "eval_examples": len(eval_examples),
        "labels": list(task.labels.labels) if task.labels else [],
        "device": str(ctx.device),
        "settings": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_curves(out / "metrics.jsonl", out / "curves.png", title=f"{task.name} fine-tuning")
    _say(f"best epoch {summary['best_epoch']}: {_describe(evaluator.best_metrics)}; "
         f"{summary['train_seconds']} s training, {summary['examples_per_second']} sequences/s; wrote {out}")
    return summary
