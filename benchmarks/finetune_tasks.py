"""Fine-tune one checkpoint on SST-2, MRPC, CoNLL-2003 and SQuAD v1.1 with lmforge and with a
plain transformers training loop, on the same data and settings; record wall time and metrics.

    python benchmarks/finetune_tasks.py --model runs/minilm --data-root ../shared/data
    python benchmarks/finetune_tasks.py --model CKPT --data-root ../shared/data --tasks sst2 --limit 2000 --epochs 1

The transformers side loads BertFor{SequenceClassification,TokenClassification,QuestionAnswering}
from the same HF-format directory and trains it with torch AdamW (same betas, eps, weight decay
and no-decay rule), the same linear warm-up/decay schedule (transformers'
get_linear_schedule_with_warmup), batch size, epochs, gradient clipping and bf16 autocast on
GPU, on padded batches. Both read the very same encoded features (lmforge's readers and
encoders), drop the last partial batch of each shuffled epoch, evaluate after every epoch
and report the best epoch, decoded and scored by the same lmforge code, so the comparison
isolates the training loop and model. Training time excludes evaluation.
Results go to the console, a final JSON line, and the finetune_tasks section of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import torch

# name: (task, train file, eval file, lr, epochs, max_length)
TASKS = {
    "sst2": ("classification", "sst2/train.tsv.xz", "sst2/dev.tsv", 2e-5, 3, 128),
    "mrpc": ("classification", "mrpc/train.tsv", "mrpc/dev.tsv", 2e-5, 3, 128),
    "rte": ("classification", "rte/train.tsv", "rte/dev.tsv", 3e-5, 3, 128),
    "conll": ("ner", "conll2003/train.txt.xz", "conll2003/valid.txt", 5e-5, 3, 128),
    "squad": ("qa", "squad/train-v1.1.json.xz", "squad/dev-v1.1.json.xz", 3e-5, 2, 384),
}
HEADLINE = {"classification": "accuracy", "ner": "f1", "qa": "f1"}
START, END = "<!-- finetune_tasks:start -->", "<!-- finetune_tasks:end -->"


def settings_for(args: argparse.Namespace, name: str):
    from lmforge.finetune import FinetuneConfig

    task, train, dev, lr, epochs, max_length = TASKS[name]
    root = Path(args.data_root)
    return FinetuneConfig(model=args.model, task=task, train=str(root / train), eval=str(root / dev),
                          out=str(Path(args.out) / name / "lmforge"), epochs=args.epochs or epochs,
                          batch_size=args.batch_size, lr=args.lr or lr, max_length=args.max_length or max_length,
                          seed=args.seed,
                          limit=args.limit, eval_limit=args.eval_limit, device=args.device)


# ---------------------------------------------------------------------------------------
# lmforge


def run_lmforge(cfg) -> dict:
    from lmforge.finetune import run_finetune

    shutil.rmtree(cfg.out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_finetune(cfg)
    return {"metrics": {k: summary[k] for k in _metric_names(summary)}, "best_epoch": summary["best_epoch"],
            "train_seconds": summary["train_seconds"], "examples_per_second": summary["examples_per_second"],
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _metric_names(result: dict) -> list[str]:
    names = ("accuracy", "f1", "f1_macro", "matthews_correlation", "precision", "recall", "exact_match")
    return [n for n in names if n in result]


# ---------------------------------------------------------------------------------------
# A plain transformers loop on the same features


def run_transformers(cfg) -> dict:
    import transformers

    import lmforge
    from lmforge.finetune.run import choose_labels
    from lmforge.objectives.base import collate
    from lmforge.tasks import make_task

    transformers.logging.set_verbosity_error()  # the head-initialisation report is expected
    started_all = time.perf_counter()
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.device != "cpu" else "cpu")
    task = make_task(cfg.task, cfg.task_options())
    train_examples = task.read(cfg.train)[: cfg.limit or None]
    eval_examples = task.read(cfg.eval)[: cfg.eval_limit or None]
    tokenizer = lmforge.load_tokenizer(cfg.model)
    source = lmforge.load_model(cfg.model)
    task.labels = choose_labels(task, source, train_examples, eval_examples)
    del source
    train_features = task.encode(train_examples, tokenizer)
    eval_features = task.encode(eval_examples, tokenizer)
    if task.labels is not None:
        labels = task.labels.labels
        extra = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                 "label2id": {label: i for i, label in enumerate(labels)}, "ignore_mismatched_sizes": True}
    else:
        extra = {}
    cls = {"classification": transformers.BertForSequenceClassification,
           "ner": transformers.BertForTokenClassification,
           "qa": transformers.BertForQuestionAnswering}[cfg.task]
    model = cls.from_pretrained(cfg.model, **extra).to(device)

    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999),
                                  eps=1e-6)
    batch_size = min(cfg.batch_size, len(train_features))
    steps_per_epoch = len(train_features) // batch_size
    total = steps_per_epoch * cfg.epochs
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_fraction * total), total)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device.type == "cuda" else _nothing

    def inputs(batch: dict) -> dict:
        names = {"input_ids", "attention_mask", "token_type_ids"}
        out = {k: v for k, v in batch.items() if k in names}
        if "label" in batch:
            out["labels"] = batch["label"]
        elif "labels" in batch:
            out["labels"] = batch["labels"]
        elif "start_position" in batch:
            out["start_positions"], out["end_positions"] = batch["start_position"], batch["end_position"]
        return out

    train_seconds, best, best_epoch = 0.0, None, 0
    generator = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        _sync(device)
        started = time.perf_counter()
        order = torch.randperm(len(train_features), generator=generator).tolist()
        for step in range(steps_per_epoch):
            chunk = [train_features[i] for i in order[step * batch_size:(step + 1) * batch_size]]
            batch = {k: v.to(device, non_blocking=True) for k, v in collate(chunk, tokenizer.pad_id).items()}
            with autocast():
                loss = model(**inputs(batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        _sync(device)
        train_seconds += time.perf_counter() - started
        metrics = _evaluate_transformers(task, model, eval_examples, eval_features, tokenizer.pad_id,
                                         cfg.eval_batch_size, device, autocast)
        print(f"transformers epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), flush=True)
        if best is None or metrics[task.metric] > best[task.metric]:
            best, best_epoch = metrics, epoch
    return {"metrics": {k: best[k] for k in _metric_names(best)}, "best_epoch": best_epoch,
            "train_seconds": round(train_seconds, 3),
            "examples_per_second": round(total * batch_size / max(train_seconds, 1e-9), 2),
            "wall_seconds": round(time.perf_counter() - started_all, 1)}


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def _evaluate_transformers(task, model, examples, features, pad_id, batch_size, device, autocast) -> dict:
    """Padded batches in file order (no length sorting: the plain way); lmforge's decoding."""
    from lmforge.objectives.base import collate

    model.eval()
    rows = []
    for start in range(0, len(features), batch_size):
        batch = collate(features[start:start + batch_size], pad_id)
        lengths = batch["attention_mask"].sum(1).tolist()
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with autocast():
            out = model(**batch)
        if task.name == "classification":
            rows += list(out.logits.float().softmax(-1).cpu().numpy())
        elif task.name == "ner":
            predicted = out.logits.argmax(-1).cpu().numpy()
            rows += [predicted[i, :n] for i, n in enumerate(lengths)]
        else:
            starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
            rows += [(starts[i, :n], ends[i, :n]) for i, n in enumerate(lengths)]
    return task.score(examples, task.decode(examples, features, rows))


# ---------------------------------------------------------------------------------------
# Report


def table(results: dict) -> str:
    lines = ["| task | system | best epoch | metrics | train s | train sequences/s |",
             "|---|---|---:|---|---:|---:|"]
    for name, by_system in results.items():
        for system, r in by_system.items():
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
            lines.append(f"| {name} | {system} | {r['best_epoch']} | {metrics} | {r['train_seconds']:.1f} | "
                         f"{r['examples_per_second']:.1f} |")
    return "\n".join(lines)


def update_results(path: Path, args: argparse.Namespace, results: dict) -> None:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    limits = f"first {args.limit} training examples" if args.limit else "full training sets"
    section = "\n".join([
        START,
        "## Fine-tuning: lmforge vs a plain transformers loop (benchmarks/finetune_tasks.py)",
        "",
        f"Checkpoint `{args.model}`; {device}; {limits}"
        + (f", first {args.eval_limit} eval examples" if args.eval_limit else "")
        + f"; batch {args.batch_size}, seed {args.seed}; {datetime.date.today().isoformat()}.",
        "Both runs read the same encoded features and use the same optimiser, schedule and precision;",
        "metrics are those of the best epoch on the dev file (SST-2/MRPC dev, CoNLL-2003 valid, SQuAD v1.1 dev).",
        "",
        f"Command: `python benchmarks/finetune_tasks.py {' '.join(sys.argv[1:])}`",
        "",
        table(results),
        END,
    ])
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="HF-format checkpoint directory with its tokenizer")
    parser.add_argument("--data-root", required=True, help="directory holding sst2/, mrpc/, conll2003/, squad/")
    parser.add_argument("--tasks", default="sst2,mrpc,conll,squad", help=f"comma list of {', '.join(TASKS)}")
    parser.add_argument("--limit", type=int, default=0, help="first N training examples (default all)")
    parser.add_argument("--eval-limit", type=int, default=0, help="first N eval examples (default all)")
    parser.add_argument("--epochs", type=int, default=0, help="override every task's epochs")
    parser.add_argument("--lr", type=float, default=0.0, help="override every task's learning rate")
    parser.add_argument("--max-length", type=int, default=0, help="override every task's max length")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="runs/finetune-tasks", help="lmforge run directories go here")
    parser.add_argument("--systems", default="lmforge,transformers", help="which to run")
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()

    names = [n.strip() for n in args.tasks.split(",") if n.strip()]
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    systems = {"lmforge": run_lmforge, "transformers": run_transformers}
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    results: dict[str, dict] = {}
    for name in names:
        cfg = settings_for(args, name)
        results[name] = {}
        for system in chosen:
            print(f"== {name}: {system}", flush=True)
            results[name][system] = systems[system](cfg)
            print(json.dumps({name: {system: results[name][system]}}), flush=True)
    print(table(results))
    if not args.no_results:
        update_results(Path(args.results), args, results)
    print(json.dumps({"model": args.model, "limit": args.limit, "results": results}))


if __name__ == "__main__":
    main()
