"""Using a fine-tuned model: score it on a labelled file, or predict on raw input.

The model directory is what ``lmforge finetune`` writes to OUT/model (or any checkpoint with
a classification, tagging or span head and its label names); its head must match the task.
Inputs are encoded and run in batches sorted by length on the unpadded path, as in
fine-tuning's own evaluation, so the numbers agree with the ones it reported. Encoding and
evaluation show progress bars with rates at a terminal (``lmforge.tasks.base.progress``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmforge.errors import UserError
from lmforge.files import write_text_atomic
from lmforge.finetune.common import check_known_labels
from lmforge.progress import progress
from lmforge.tasks import LabelMap, Task, TaskOptions, make_task, task_for_model
from lmforge.tasks.base import Rows


def load_checkpoint_and_tokenizer(path: str):
    import lmforge

    tokenizer = lmforge.load_tokenizer(path)
    if tokenizer is None:
        raise UserError(f"{path} has no tokenizer files (tokenizer.json or vocab.txt)")
    from lmforge.tasks.source_encoder import (
        has_source_encoder,
        load_with_source_encoder,
    )

    if has_source_encoder(path):  # BART's MT: a new source encoder before BART's encoder
        return load_with_source_encoder(path), tokenizer
    return lmforge.load_model(path), tokenizer


def check_length(task: Task, model: nn.Module) -> None:
    if task.max_length > model.config.max_positions:
        raise UserError(f"max_length {task.max_length} exceeds the model's {model.config.max_positions} positions")


def batched_outputs(task: Task, model, features: Sequence[dict], batch_size: int,
                    device: torch.device) -> tuple[Rows, float | None]:
    """Model outputs for every feature (in input order) and the mean loss when the features
    carry targets. Batches are cut from the features sorted by length, longest first, so
    padding stays small and a memory peak shows at once; ``unpad`` skips what is left."""
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable")
    rows: Rows = [None] * len(features)
    loss, count = 0.0, 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast, progress(len(features), "evaluating", "seq") as bar:
        for start in range(0, len(features), batch_size):
            index = order[start:start + batch_size]
            batch = task.collate([features[i] for i in index])
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            values, batch_loss, batch_count = task.infer_batch(model, batch, unpad=True)
            for i, value in zip(index, values):
                rows[i] = value
            loss, count = loss + batch_loss, count + batch_count
            bar.update(len(index))
    model.train(was_training)
    return rows, (loss / count if count else None)


def evaluate_features(task: Task, model: nn.Module, tokenizer, examples, features, batch_size: int,
                      device: torch.device) -> tuple[dict[str, float], Any]:
    """Metrics (with ``loss``) and predictions of ``model`` on encoded eval data."""
    rows, loss = batched_outputs(task, model, features, batch_size, device)
    predictions = task.decode(examples, features, rows)
    metrics = task.score(examples, predictions)
    if loss is not None:
        metrics["loss"] = loss
    return metrics, predictions


def load_task_model(model_dir: str | Path, task_name: str | None, options: TaskOptions, device: str = "auto"):
    """(task, model on its device, tokenizer, device) for a fine-tuned checkpoint;
    ``task_name`` None takes the task of the checkpoint's head."""
    from lmforge.training.distributed import setup

    model, tokenizer = load_checkpoint_and_tokenizer(str(model_dir))
    task_name = task_name or task_for_model(model.task)
    if task_name == "seq2seq":  # the prefix, label words and metric it was fine-tuned with
        from lmforge.tasks.seq2seq import with_saved_settings

        options = with_saved_settings(options, model_dir)
    task = make_task(task_name, options)
    if model.task != task.model_task:
        raise UserError(f"{model_dir} holds a {model.task} model; --task {task.name} needs a {task.model_task} model")
    task.pad_id = tokenizer.pad_id
    task.configure_for(model, tokenizer)
    if task.has_labels:
        if not model.config.labels:
            raise UserError(f"{model_dir} has no label names (id2label in config.json)")
        task.labels = LabelMap(list(model.config.labels))
    check_length(task, model)
    device_ = setup(device).device
    return task, model.float().to(device_).eval(), tokenizer, device_


def evaluate_model(model_dir: str | Path, task_name: str | None, data: str | Path, out: str | Path | None = None,
                   options: TaskOptions = TaskOptions(), batch_size: int = 64, device: str = "auto",
                   limit: int = 0) -> dict[str, Any]:
    """Metrics of a fine-tuned model on a labelled file, written to OUT/metrics.json (OUT
    defaults to the model directory). With ``out`` the predictions are written there too."""
    from lmforge.finetune import feature_based

    if feature_based.is_feature_head(model_dir):  # a head on frozen features (lmforge.finetune.feature_based)
        task, examples, metrics, predictions = feature_based.evaluate_feature_model(
            model_dir, task_name, data, options, batch_size, device, limit)
    else:
        task, model, tokenizer, device_ = load_task_model(model_dir, task_name, options, device)
        examples = task.read(data)[: limit or None]
        check_known_labels(task, examples, data)
        features = task.encode(examples, tokenizer)
        metrics, predictions = evaluate_features(task, model, tokenizer, examples, features, batch_size, device_)
    result = {"task": task.name, "model": str(model_dir), "data": str(data), "examples": len(examples), **metrics}
    target = Path(out) if out is not None else Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target / "metrics.json", json.dumps(result, indent=2) + "\n")
    if out is not None:
        task.write_predictions(target / task.predictions_file, examples, predictions)
    return result


def predict_file(model_dir: str | Path, task_name: str | None, input_path: str | Path, pair: bool = False,
                 options: TaskOptions = TaskOptions(), batch_size: int = 64, device: str = "auto") -> list[str]:
    """One output line per input: classification ``label<TAB>probability``; ner
    ``word/TAG ...``; qa ``id<TAB>answer``."""
    from lmforge.finetune import feature_based

    if feature_based.is_feature_head(model_dir):
        return feature_based.predict_feature_lines(model_dir, task_name, input_path, pair, options, batch_size, device)
    task, model, tokenizer, device_ = load_task_model(model_dir, task_name, options, device)
    return predict_lines(task, model, tokenizer, task.read_inputs(input_path, pair), batch_size, device_)


def predict_lines(task: Task, model, tokenizer, examples, batch_size: int, device) -> list[str]:
    if not examples:
        return []
    features = task.encode_inputs(examples, tokenizer)
    rows, _ = batched_outputs(task, model, features, batch_size, device)
    return task.format_predictions(examples, task.decode(examples, features, rows))
