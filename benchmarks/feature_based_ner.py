"""The BERT paper's feature-based table (Devlin et al. 2019, §5.3, Table 7) on CoNLL-2003: dev F1
of a 2-layer BiLSTM tagger on the frozen features of each of the six layer strategies, against
fine-tuning the whole model, with a real pretrained BERT.

    bash benchmarks/get_minilm.sh runs/minilm
    OMP_NUM_THREADS=2 python benchmarks/feature_based_ner.py --model runs/minilm --data /work/shared/data/conll2003
    python benchmarks/feature_based_ner.py --model runs/minilm --data /work/shared/data/conll2003 --dry-run

The paper uses BERT-base (12 layers, hidden 768) on all of CoNLL-2003 with "a randomly
initialized two-layer 768-dimensional BiLSTM"; the defaults here fit a CPU budget of about 15-20
minutes on 2 otherwise idle cores: all-MiniLM-L6-v2 (6 layers, hidden 384, uncased), the first
1,000 training sentences and the first 1,000 CoNLL-2003 valid sentences, 3 epochs of batch 16,
and a BiLSTM of 384 units per direction (the backbone's width, as 768 is BERT-base's) at lr
3e-3. Measured under load on this machine: a BiLSTM step (384 units, batch 32) costs ~0.5
CPU-seconds, so a strategy's 186 steps and 3 dev passes take ~2 min on 2 idle cores, the six
~12 min, fine-tuning ~3 min and the one backbone pass ~1 min; ``--head-hidden 256`` about
halves the heads' share. In a pilot (hidden 256, 300 dev sentences, "last" features) lr 3e-3
with batch 16 reached dev F1 0.73 in 3 epochs where lr 1e-3 with batch 32 reached 0.47: at a
few hundred steps the head needs the larger rate. The backbone runs once over
the training and dev sentences, keeping every layer (``ALL_LAYERS``); each strategy's
features are derived from those, so the six heads never run the backbone. "weighted sum"
rows are the equal-weight sums (the paper does not say how it weighted them; ``scalar_mix``,
ELMo's learned weighting, can be added with --strategies). Fine-tuning uses the same
sentences, epochs and batch size with lr 1e-4 (BERT's 5e-5 is small for 186 steps).

Results go to the console, a final JSON line, and the feature_based_ner section of
benchmarks/RESULTS.md (not in --dry-run, nor with --no-results).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import offline  # also puts the checkout's src/ on the path

STRATEGIES = ("embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all")
# Table 7, dev F1 of BERT-base on CoNLL-2003 (the fine-tuning row: "BERT_BASE", 96.4).
PAPER = {"embeddings": 91.0, "second_to_last": 95.6, "last": 94.9, "sum_last_four": 95.9,
         "concat_last_four": 96.1, "sum_all": 95.5, "fine_tuning": 96.4}
LABELS = {"embeddings": "Embeddings", "second_to_last": "Second-to-last hidden", "last": "Last hidden",
          "sum_last_four": "Sum of last four hidden", "concat_last_four": "Concat last four hidden",
          "sum_all": "Sum of all layers", "scalar_mix": "Scalar mix of all layers (ELMo)",
          "fine_tuning": "Fine-tuning (all parameters)"}
START, END = "<!-- feature_based_ner:start -->", "<!-- feature_based_ner:end -->"
DRY_RUN = dict(limit=48, eval_limit=32, epochs=1, head_hidden=16)


def train_file(data: Path) -> Path:
    for name in ("train.txt", "train.txt.xz", "train.txt.gz"):
        if (data / name).is_file():
            return data / name
    raise SystemExit(f"{data}: no train.txt(.xz/.gz)")


def extract_all_layers(args, source, cache) -> float:
    """Every layer of the training and dev sentences, once, into the cache the runs share."""
    from lmforge.tasks.feature_sources import ALL_LAYERS, word_features
    from lmforge.tasks.ner import read_conll

    started = time.perf_counter()
    for path, limit in ((train_file(args.data), args.limit), (args.data / "valid.txt", args.eval_limit)):
        sentences = [s.words for s in read_conll(path)[: limit or None]]
        word_features(source, sentences, ALL_LAYERS, args.eval_batch_size, cache)
    return time.perf_counter() - started


def settings(args, name: str, **changes):
    from lmforge.finetune import FinetuneConfig

    values = dict(model=str(args.model), task="ner", train=str(train_file(args.data)), eval=str(args.data / "valid.txt"),
                  out=str(args.out / name), epochs=args.epochs, batch_size=args.batch_size,
                  eval_batch_size=args.eval_batch_size, lr=args.lr, max_length=128, seed=args.seed,
                  limit=args.limit, eval_limit=args.eval_limit, device="cpu")
    values.update(changes)
    return FinetuneConfig(**values)


def row(summary: dict, seconds: float) -> dict:
    return {"f1": summary["f1"], "precision": summary["precision"], "recall": summary["recall"],
            "best_epoch": summary["best_epoch"], "train_seconds": summary["train_seconds"], "seconds": round(seconds, 1)}


def table(results: dict) -> str:
    lines = ["| system | dev F1 | precision | recall | best epoch | train s | BERT-base dev F1 (paper) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        paper = f"{PAPER[name]:.1f}" if name in PAPER else "-"
        lines.append(f"| {LABELS[name]} | {100 * r['f1']:.1f} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | "
                     f"{r['best_epoch']} | {r['train_seconds']:.1f} | {paper} |")
    return "\n".join(lines)


def update_results(path: Path, args, results: dict, extract_seconds: float, total_seconds: float) -> None:
    section = "\n".join([
        START,
        "## The feature-based approach on CoNLL-2003 (BERT paper Table 7; benchmarks/feature_based_ner.py)",
        "",
        (f"Checkpoint `{args.model}`; CPU, {args.threads} thread(s); first {args.limit or 'all'} training sentences, "
         f"{'first ' + str(args.eval_limit) if args.eval_limit else 'all'} CoNLL-2003 valid sentences; "
         f"{args.epochs} epochs, batch {args.batch_size}, seed {args.seed}; {datetime.date.today().isoformat()}."),
        (f"Feature-based rows: a 2-layer BiLSTM ({args.head_hidden} units per direction, lr {args.lr}) on frozen "
         f"features (each word's first sub-token); fine-tuning: lr {args.finetune_lr}. The backbone ran once over "
         f"both files ({extract_seconds:.0f} s, every layer kept); the whole table took {total_seconds / 60:.1f} min."),
        "The paper's column is BERT-base (12 layers, 768 wide) on the full training set, for reference only.",
        "",
        f"Command: `python benchmarks/feature_based_ner.py {' '.join(sys.argv[1:])}`",
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
    parser.add_argument("--model", type=Path, required=True, help="HF-format BERT checkpoint with its tokenizer")
    parser.add_argument("--data", type=Path, required=True, help="the CoNLL-2003 directory (train.txt[.xz], valid.txt)")
    parser.add_argument("--limit", type=int, default=1000, help="first N training sentences (0: all; default 1000)")
    parser.add_argument("--eval-limit", type=int, default=1000, help="first N valid sentences (0: all; default 1000)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="the BiLSTM heads' peak learning rate")
    parser.add_argument("--finetune-lr", type=float, default=1e-4, help="fine-tuning's peak learning rate")
    parser.add_argument("--head-hidden", type=int, default=384, help="BiLSTM units per direction")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma list of the six Table 7 strategies and/or scalar_mix")
    parser.add_argument("--no-fine-tuning", action="store_true", help="leave out the fine-tuning row")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/feature-based-ner"), help="run directories go here")
    parser.add_argument("--dry-run", action="store_true", help=f"check the code path in seconds: {DRY_RUN}")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    if args.dry_run:
        for key, value in DRY_RUN.items():
            setattr(args, key, value)
    offline()
    torch.set_num_threads(args.threads)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.out = args.out / stamp  # a fresh directory per run: fine-tuning refuses to overwrite one

    from lmforge.finetune import run_finetune
    from lmforge.finetune.feature_based import run_feature_based
    from lmforge.tasks.feature_sources import FeatureCache, load_feature_source

    started = time.perf_counter()
    source = load_feature_source(args.model, max_length=128, device="cpu")
    cache = FeatureCache()
    extract_seconds = extract_all_layers(args, source, cache)
    print(f"== features: every layer of the training and dev sentences in {extract_seconds:.1f} s", flush=True)
    results: dict[str, dict] = {}
    for strategy in strategies:
        print(f"== {strategy}", flush=True)
        began = time.perf_counter()
        summary = run_feature_based(settings(args, strategy, features=strategy, head="bilstm",
                                             head_hidden=args.head_hidden), source, cache)
        results[strategy] = row(summary, time.perf_counter() - began)
        print(json.dumps({strategy: results[strategy]}), flush=True)
    if not args.no_fine_tuning:
        print("== fine-tuning", flush=True)
        began = time.perf_counter()
        summary = run_finetune(settings(args, "fine_tuning", lr=args.finetune_lr))
        results["fine_tuning"] = row(summary, time.perf_counter() - began)
        print(json.dumps({"fine_tuning": results["fine_tuning"]}), flush=True)
    total = time.perf_counter() - started
    print(table(results))
    print(f"total {total / 60:.1f} min (features {extract_seconds:.1f} s)")
    if not (args.dry_run or args.no_results):
        update_results(args.results, args, results, extract_seconds, total)
    print(json.dumps({"model": str(args.model), "limit": args.limit, "epochs": args.epochs, "dry_run": args.dry_run,
                      "total_seconds": round(total, 1), "results": results}))


if __name__ == "__main__":
    main()
