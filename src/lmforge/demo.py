"""The README's first command: pretrain a small BERT from raw text on this machine's CPU in about
five minutes, with the recipe tuned for that budget (recipes/pretrain/cpu-5min.yaml).

Trains a WordPiece tokenizer on the bundled Brown corpus, prepares memory-mapped shards,
pretrains with masked-LM for a fixed training-time budget (pre-norm, no biases, gated GELU, no
dropout, mask rate 0.25, learning rate scheduled by time: the Cramming recipe of Geiping &
Goldstein 2022 scaled down), shows held-out MLM accuracy rising, and ends with fill-mask
predictions on sentences the model never saw.

    python -m lmforge.demo [--out runs/demo] [--minutes M] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

RECIPE = "pretrain/cpu-5min"  # bundled with the package (lmforge.bundled)
# The Brown corpus ships in a source checkout's data/ (see data/README.md for its licence).
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "brown" / "brown.jsonl.xz"
DEMO_MARKER = ".lmforge-demo"
# Brown-style sentences written for the demo (not in the corpus); one content word hidden.
PROBES = [
    "the united [MASK] of america .",
    "he shook his [MASK] and smiled .",
    "she did not know what to [MASK] .",
    "for the first [MASK] in years , he was happy .",
    "he walked into the [MASK] and sat down .",
    "the jury said it did not find any [MASK] of the law .",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="run directory (replaced if it holds an earlier demo)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training-time budget in minutes (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps instead (a quick check)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                        help="raw text to pretrain on (default: the Brown corpus in a source checkout's data/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a key of recipes/{RECIPE}.yaml (repeatable)")
    args = parser.parse_args(argv)

    import torch

    from lmforge.errors import UserError
    from lmforge.pretraining import load_recipe, run_pretraining
    from lmforge.training.loop import read_metrics

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    if not Path(args.corpus).is_file():
        print(f"error: no corpus at {args.corpus}; pass --corpus FILE (.txt or .jsonl, optionally .gz/.xz)",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        # Only a directory this demo made (its marker file) is replaced, never another run.
        if not (out / DEMO_MARKER).is_file():
            print(f"error: --out {out} exists and is not an earlier demo run; choose another --out", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("written by python -m lmforge.demo; the next demo run may replace this directory\n")
    overrides = [f"data.corpus=[{args.corpus}]"]
    if args.minutes:
        overrides.append(f"train.time_budget_minutes={args.minutes}")
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    overrides += args.overrides
    started = time.perf_counter()
    try:
        recipe = load_recipe(RECIPE, overrides)
        budget = recipe.train.time_budget_minutes
        length = f"{budget:g} minutes of training" if budget else f"{recipe.train.max_steps} steps"
        if budget and args.steps:
            length += f" (at most {args.steps} steps)"
        print(f"== lmforge demo: pretraining {recipe.model.preset} (masked LM) on the Brown corpus, "
              f"{length} on CPU ==")
        run_pretraining(recipe, out)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    evals = [r for r in read_metrics(out / "metrics.jsonl") if "eval_mlm_accuracy" in r]
    print("\n== held-out masked-LM accuracy (15% of tokens masked, sentences never trained on) ==")
    print(f"{'train s':>8} {'step':>6} {'accuracy':>9} {'loss':>7}")
    for record in evals:
        bar = "#" * int(round(record["eval_mlm_accuracy"] * 100))
        print(f"{record.get('train_seconds', 0.0):8.0f} {record['step']:6d} {record['eval_mlm_accuracy']:9.1%} "
              f"{record['eval_mlm_loss']:7.3f}  {bar}")

    print("\n== fill-mask: the top 5 guesses for [MASK] ==")
    import lmforge
    from lmforge.fill_mask import fill_mask

    model, tokenizer = lmforge.load(out / "model")
    for text in PROBES:
        (candidates,) = fill_mask(model, tokenizer, text, top_k=5)
        print(f"{text}\n    -> {'  '.join(token for token, _ in candidates)}")
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Curves: {out / 'curves.png'}; "
          f"metrics: {out / 'metrics.jsonl'}; model: {out / 'model'} (lmforge.load, lmforge fill-mask --model).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
