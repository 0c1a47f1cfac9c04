"""Held-out MLM accuracy curve of a pretraining run, as a table and a PNG.

    lmforge pretrain recipes/pretrain/bert-mini-books.yaml --out runs/mini-books \
        --set 'data.corpus=[../shared/data/corpus/gutenberg-00-of-06.jsonl.xz, ...]'
    python benchmarks/pretrain_curve.py runs/mini-books --png benchmarks/bert-mini-books-curve.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a pretraining run directory (holds metrics.jsonl)")
    parser.add_argument("--png", help="where to write the curve")
    args = parser.parse_args()

    from lmforge.training.loop import read_metrics
    from lmforge.training.report import plot_curves

    records = read_metrics(Path(args.run) / "metrics.jsonl")
    evals = [r for r in records if "eval_mlm_accuracy" in r]
    rates = sorted(r["tokens_per_second"] for r in records if "tokens_per_second" in r)
    print("| step | held-out MLM loss | held-out MLM accuracy | held-out NSP accuracy |")
    print("|---:|---:|---:|---:|")
    for r in evals:
        print(f"| {r['step']} | {r['eval_mlm_loss']:.3f} | {r['eval_mlm_accuracy']:.1%} | "
              f"{r.get('eval_nsp_accuracy', float('nan')):.1%} |")
    if args.png:
        plot_curves(Path(args.run) / "metrics.jsonl", args.png, title=f"pretraining: {Path(args.run).name}")
    print(json.dumps({"steps": records[-1]["step"], "final_eval_mlm_accuracy": evals[-1]["eval_mlm_accuracy"],
                      "median_tokens_per_second": rates[len(rates) // 2] if rates else None}))


if __name__ == "__main__":
    main()
