"""Fine-tuning tasks (BERT paper, section 4 and figure 4; Devlin et al. 2019; google-research/bert
``run_classifier.py`` and ``run_squad.py``; transformers' ``run_glue.py``, ``run_ner.py``,
``run_qa.py``). Each task module holds its reader, encoding, metrics and ``Task`` class:

- ``classification``: GLUE-style TSV/CSV/JSONL; the pooled [CLS] vector -> softmax over
  labels; cross-entropy per example; accuracy, F1 (binary tasks), macro F1, Matthews
  correlation.
- ``ner``: CoNLL-2003; a label per word on its first sub-token; cross-entropy per labelled
  token; entity-level precision, recall and F1 (conlleval rules).
- ``qa``: SQuAD v1.1 JSON; start and end logits over sliding windows; (CE(start) + CE(end)) / 2
  per window; n-best span search; SQuAD exact match and F1.
- ``multiple_choice``: JSONL (context, choices, label); one sequence and score per answer,
  softmax over the answers (GPT section 3.3, BERT's SWAG); accuracy.
- ``seq2seq``: JSONL/TSV (source, target) on an encoder-decoder (BART, T5); teacher forcing,
  label smoothing; beam-search generation scored by ROUGE, sacreBLEU or exact match (T5's
  classification as text).

On decoder checkpoints classification and multiple choice use GPT's input transformations
(``gpt_inputs``: start/delimiter/extract tokens, the last token's state, similarity over both
orders, the auxiliary LM loss).

What they share: ``base`` (the ``Task`` base class, a training-loop ``Objective``; its options;
the label map; tokenizer handling), ``io`` (compressed text, JSON) and ``metrics`` (F1 from
counts). This module is the registry: ``TASKS``, ``make_task``, ``task_for_model``.
"""

from __future__ import annotations

from lmforge.errors import UserError
from lmforge.tasks.base import LabelMap, Task, TaskOptions
from lmforge.tasks.classification import ClassificationTask
from lmforge.tasks.multiple_choice import MultipleChoiceTask
from lmforge.tasks.ner import NerTask
from lmforge.tasks.qa import QaTask
from lmforge.tasks.seq2seq import Seq2SeqTask

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (ClassificationTask, NerTask, QaTask, MultipleChoiceTask,
                                                           Seq2SeqTask)}


def make_task(name: str, options: TaskOptions, labels: LabelMap | None = None) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return TASKS[name](options, labels)


def task_for_model(model_task: str) -> str:
    """The fine-tuning task name of a model's head ('sequence_classification' -> 'classification')."""
    for name, cls in TASKS.items():
        if cls.model_task == model_task:
            return name
    raise UserError(f"a {model_task} model is not fine-tuned for a task; known: {', '.join(TASKS)}")


__all__ = ["TASKS", "ClassificationTask", "LabelMap", "MultipleChoiceTask", "NerTask", "QaTask", "Seq2SeqTask", "Task",
           "TaskOptions",
           "make_task",
           "task_for_model"]
