"""Using a fine-tuned model: score it on a labelled file, or predict on raw input.

The model directory is what ``lmforge finetune`` writes to OUT/model (or any checkpoint with
a classification, tagging or span head and its label names); its head must match the task.
Inputs are encoded and run in batches sorted by length on the unpadded path, as in
fine-tuning's own evaluation, so the numbers agree with the ones it reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmforge.errors import UserError
from lmforge.finetune.run import check_length, evaluate_features, load_checkpoint_and_tokenizer
from lmforge.finetune.tasks import Task, TaskOptions, batched_outputs, make_task, task_for_model
from lmforge.tasks.classification import LabelMap


def load_task_model(model_dir: str | Path, task_name: str | None, options: TaskOptions, device: str = "auto"):
    """(task, model on its device, tokenizer, device) for a fine-tuned checkpoint;
    ``task_name`` None takes the task of the checkpoint's head."""
    from lmforge.training.distributed import setup

    model, tokenizer = load_checkpoint_and_tokenizer(str(model_dir))
    task = make_task(task_name or task_for_model(model.task), options)
    if model.task != task.model_task:
        raise UserError(f"{model_dir} holds a {model.task} model; --task {task.name} needs a {task.model_task} model")
    if task.name != "qa":
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
    task, model, tokenizer, device_ = load_task_model(model_dir, task_name, options, device)
    examples = task.read(data)[: limit or None]
    features = task.encode(examples, tokenizer)
    metrics, predictions = evaluate_features(task, model, tokenizer, examples, features, batch_size, device_)
    result = {"task": task.name, "model": str(model_dir), "data": str(data), "examples": len(examples), **metrics}
    target = Path(out) if out is not None else Path(model_dir)
    target.mkdir(parents=True, exist_ok=True)
    (target / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if out is not None:
        task.write_predictions(target / task.predictions_file, examples, predictions)
    return result


def predict_file(model_dir: str | Path, task_name: str | None, input_path: str | Path, pair: bool = False,
                 options: TaskOptions = TaskOptions(), batch_size: int = 64, device: str = "auto") -> list[str]:
    """One output line per input: classification ``label<TAB>probability``; ner
    ``word/TAG ...``; qa ``id<TAB>answer``."""
    task, model, tokenizer, device_ = load_task_model(model_dir, task_name, options, device)
    return predict_lines(task, model, tokenizer, task.read_inputs(input_path, pair), batch_size, device_)


def predict_lines(task: Task, model, tokenizer, examples, batch_size: int, device) -> list[str]:
    if not examples:
        return []
    features = task.encode_inputs(examples, tokenizer)
    rows, _ = batched_outputs(task, model, features, tokenizer.pad_id, batch_size, device)
    return task.format_predictions(examples, task.decode(examples, features, rows))
