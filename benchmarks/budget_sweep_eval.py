"""Every final model of a budget sweep (benchmarks/budget_sweep.sh) on one held-out set: the first
640 held-out blocks of 128 tokens of the sweep's prepared data, 15% masked (BERT's 80/10/10,
fixed per index), mean cross-entropy and accuracy over the masked positions. Runs trained on
shorter sequences are evaluated at 128 tokens too, so every row compares.

    python benchmarks/budget_sweep_eval.py OUT
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import lmforge
from lmforge.objectives.dataset import PretrainingDataset
from lmforge.objectives.mlm import MaskedLMObjective

EXAMPLES, LENGTH = 640, 128


def evaluate(model, heldout, objective) -> tuple[float, float]:
    sums = {}
    model.eval()
    with torch.no_grad():
        for start in range(0, min(EXAMPLES, len(heldout)), 32):
            batch = objective.collate([heldout[i] for i in range(start, min(EXAMPLES, len(heldout), start + 32))])
            for key, (total, count) in objective.eval_sums(model, batch, True).items():
                pair = sums.setdefault(key, [0.0, 0.0])
                pair[0] += total
                pair[1] += count
    return sums["mlm_loss"][0] / sums["mlm_loss"][1], sums["mlm_accuracy"][0] / sums["mlm_accuracy"][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the sweep's directory")
    args = parser.parse_args()
    out = Path(args.out)
    heldout = PretrainingDataset(out / "prepared", "heldout", max_seq_length=LENGTH, objective="mlm",
                                 mlm_probability=0.15, max_predictions=20)
    objective = MaskedLMObjective(heldout.pad_id)
    print(f"{'run':24s} {'loss':>6s} {'accuracy':>9s}")
    for run in sorted(p.parents[1] for p in out.glob("*/model/model.safetensors")):
        model, _ = lmforge.load(run / "model", task="masked_lm")
        loss, accuracy = evaluate(model, heldout, objective)
        print(f"{run.name:24s} {loss:6.3f} {accuracy:9.1%}")


if __name__ == "__main__":
    main()
