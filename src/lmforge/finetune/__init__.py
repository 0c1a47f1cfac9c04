"""Fine-tuning a BERT-family checkpoint on classification, NER or span QA, and using the result.

    from lmforge.finetune import FinetuneConfig, run_finetune, evaluate_model, predict_file
    run_finetune(FinetuneConfig(model="ckpt", task="classification", train="train.tsv",
                                eval="dev.tsv", out="runs/sst2"))
    evaluate_model("runs/sst2/model", "classification", "dev.tsv")
    predict_file("runs/sst2/model", "classification", "texts.txt")

The tasks themselves (reading, encoding, loss, decoding, scoring, writing) are in
``lmforge.tasks``; here:

- ``run``: settings, the starting model, the ULMFiT toolbox wiring, per-epoch evaluation
  with early stopping, the run itself.
- ``inference``: batched model outputs, evaluate and predict with a fine-tuned model.
"""

from lmforge.finetune.inference import evaluate_model, predict_file
from lmforge.finetune.run import FinetuneConfig, run_finetune
from lmforge.tasks import TASKS, TaskOptions

__all__ = ["FinetuneConfig", "TASKS", "TaskOptions", "evaluate_model", "predict_file", "run_finetune"]
