"""Fine-tuning speed on SST-2: lmforge against a plain transformers training loop, same
checkpoint, same encoded data, same optimiser, schedule and epochs (issue target: >= 2x the
wall time at equal accuracy, +- 0.5 point).

    bash benchmarks/get_minilm.sh runs/minilm         # a real BERT checkpoint (all-MiniLM-L6-v2)
    python benchmarks/finetune.py --model runs/minilm --data-root ../shared/data [--limit N]

Both sides run through benchmarks/finetune_tasks.py's runners (lmforge: `run_finetune`, the
code behind `lmforge finetune`; transformers: BertForSequenceClassification on padded batches).
Training time excludes evaluation. Prints a table and a last line of JSON with ours,
reference (training seconds), ratio and both accuracies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import machine, offline, print_json, print_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="HF-format checkpoint directory with its tokenizer")
    parser.add_argument("--data-root", required=True, help="directory holding sst2/train.tsv.xz and sst2/dev.tsv")
    parser.add_argument("--limit", type=int, default=0, help="first N training examples (default all 67,349)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/bench-finetune")
    args = parser.parse_args()
    offline()

    import finetune_tasks as tasks

    settings = argparse.Namespace(model=args.model, data_root=args.data_root, out=args.out, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr, max_length=128, seed=args.seed,
                                  limit=args.limit, eval_limit=0, device=args.device)
    cfg = tasks.settings_for(settings, "sst2")
    ours = tasks.run_lmforge(cfg)
    reference = tasks.run_transformers(cfg)
    ratio = reference["train_seconds"] / ours["train_seconds"]
    device = torch.device("cuda" if torch.cuda.is_available() and args.device != "cpu" else "cpu")
    print_table(f"SST-2 fine-tuning, {machine(device)}", ["side", "train s", "sequences/s", "dev accuracy"], [
        ["lmforge", ours["train_seconds"], ours["examples_per_second"], ours["metrics"]["accuracy"]],
        ["transformers", reference["train_seconds"], reference["examples_per_second"], reference["metrics"]["accuracy"]],
        ["ratio", ratio, "", ""],
    ])
    print_json({"ours": ours["train_seconds"], "reference": reference["train_seconds"], "ratio": round(ratio, 3),
                "accuracy_ours": ours["metrics"]["accuracy"], "accuracy_reference": reference["metrics"]["accuracy"],
                "limit": args.limit, "epochs": args.epochs})


if __name__ == "__main__":
    main()
