"""The shared transformer core: layers, positions, layouts, caches, backbones, heads and task
models, configured by ``lmforge.config.ModelConfig`` alone (no family names inside)."""

from lmforge.models.build import TASK_MODELS, TaskModel, build_model, task_model_class

__all__ = ["TASK_MODELS", "TaskModel", "build_model", "task_model_class"]
