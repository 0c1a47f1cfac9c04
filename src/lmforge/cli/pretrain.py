"""`lmforge pretrain RECIPE --out DIR [--resume] [--set key=value ...]`."""

from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a model from a YAML recipe",
        description="Pretrain per RECIPE (see recipes/pretrain/). Trains a tokenizer and prepares the corpus "
                    "when the recipe names raw text. Works under torchrun for several processes.")
    p.add_argument("recipe", help="YAML recipe file")
    p.add_argument("--out", required=True, help="run directory (metrics, checkpoints, final model)")
    p.add_argument("--resume", action="store_true", help="continue exactly from the latest checkpoint in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.max_steps=200 (repeatable)")
    p.set_defaults(func=run)


def run(args) -> int:
    from lmforge.pretraining import load_recipe, run_pretraining

    recipe = load_recipe(args.recipe, args.overrides)
    run_pretraining(recipe, args.out, resume=args.resume)
    return 0
