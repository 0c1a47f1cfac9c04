"""The README's first command: pretrain BERT-Mini from raw text on this machine's CPU.

Trains a WordPiece tokenizer on the bundled Brown corpus, prepares memory-mapped shards,
pretrains bert-mini with MLM + NSP (recipes/pretrain/bert-mini.yaml), shows the held-out MLM
accuracy rising, exports a Hugging Face checkpoint and ends with fill-mask predictions from it.

    python -m lmforge.demo [--out runs/demo] [--steps N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

RECIPE = "pretrain/bert-mini"  # bundled with the package (lmforge.bundled)
# The Brown corpus ships in a source checkout's data/ (see data/README.md for its licence).
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "brown" / "brown.jsonl.xz"
DEMO_MARKER = ".lmforge-demo"
PROBES = [
    "the jury said it did not find any [MASK] of the law .",
    "he walked into the [MASK] and sat down .",
    "it was one of the most important [MASK] of the year .",
    "she did not know what to [MASK] .",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/demo", help="run directory (replaced if it holds an earlier demo)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS),
                        help="raw text to pretrain on (default: the Brown corpus in a source checkout's data/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of recipes/pretrain/bert-mini.yaml (repeatable)")
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
    if args.steps:
        overrides.append(f"train.max_steps={args.steps}")
    overrides += args.overrides
    started = time.perf_counter()
    try:
        recipe = load_recipe(RECIPE, overrides)
        print(f"== lmforge demo: pretraining {recipe.model.preset} with MLM + NSP on the Brown corpus (CPU) ==")
        run_pretraining(recipe, out)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    print("\n== held-out masked-LM accuracy while training ==")
    for record in read_metrics(out / "metrics.jsonl"):
        if "eval_mlm_accuracy" in record:
            bar = "#" * int(round(record["eval_mlm_accuracy"] * 100))
            nsp = record.get("eval_nsp_accuracy", float("nan"))
            print(f"step {record['step']:>5}  MLM acc {record['eval_mlm_accuracy']:6.1%}  NSP acc {nsp:6.1%}  {bar}")

    print(f"\n== fill-mask with the exported Hugging Face checkpoint ({out / 'model-hf'}) ==")
    from lmforge.cli import main as cli

    for text in PROBES:
        print(f"> {text}")
        cli(["fill-mask", "--model", str(out / "model-hf"), "--top-k", "3", text])
    print(f"\ndone in {time.perf_counter() - started:.0f} s. Curves: {out / 'curves.png'}; "
          f"metrics: {out / 'metrics.jsonl'}; transformers loads {out / 'model-hf'} as BertForPreTraining.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
