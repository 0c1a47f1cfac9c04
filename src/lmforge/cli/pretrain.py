"""`lmforge pretrain RECIPE --out DIR [--resume] [--set key=value ...]`.

Everything that can be checked before the long work is checked first (recipe values, preset,
device, the run directory, the checkpoint --resume needs), so a mistake costs a second and
leaves no tokenizer or prepared data behind."""

from __future__ import annotations

from pathlib import Path

from lmforge.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help="pretrain a model from a YAML recipe",
        description="Pretrain per RECIPE (see recipes/pretrain/). Trains a tokenizer and prepares the corpus "
                    "when the recipe names raw text. Works under torchrun for several processes. "
                    "--out must be new, empty, or an earlier attempt of a pretraining run.")
    p.add_argument("recipe", help="YAML recipe file")
    p.add_argument("--out", required=True, help="run directory (metrics, checkpoints, final model)")
    p.add_argument("--resume", action="store_true",
                   help="continue exactly from the newest complete checkpoint in --out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.max_steps=200 (repeatable)")
    p.set_defaults(func=run)


def check_recipe(recipe) -> None:
    """The recipe's values (``lmforge.pretraining.validate_recipe``) and its starting checkpoint."""
    from lmforge.pretraining import validate_recipe

    validate_recipe(recipe)
    if recipe.model.init_from:
        from lmforge.cli.checks import check_model_dir

        check_model_dir(recipe.model.init_from, "model.init_from")


def check_run_dir(out: Path, resume: bool) -> None:
    """--out holds nothing, or this kind of run: an earlier attempt (fresh) or checkpoints (--resume)."""
    from lmforge.training.checkpoint import latest_checkpoint
    from lmforge.training.rundir import check_out_dir, describe, kind_of

    check_out_dir(out, "--out", reusable=("a pretraining run",))
    if resume:
        if latest_checkpoint(out / "checkpoints") is None:
            raise UserError(f"--resume: no complete checkpoint in {out / 'checkpoints'}")
    elif (out / "checkpoints").exists():
        raise UserError(f"--out {out} already holds a run; pass --resume to continue it or choose another --out")
    elif kind_of(out) == "a pretraining run" and ((out / "model").exists() or (out / "metrics.json").exists()):
        raise UserError(f"--out {out} holds {describe(out)}; choose another --out")


def repair_metrics(path: Path) -> None:
    """Drop a torn last line (a kill in the middle of a write) so that resume can read the log."""
    import json

    from lmforge.files import write_text_atomic

    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            kept.append(line)
    if len(kept) != len([line for line in lines if line.strip()]):
        write_text_atomic(path, "".join(line + "\n" for line in kept))


def run(args) -> int:
    from lmforge.cli.checks import check_device
    from lmforge.pretraining import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    check_recipe(recipe)
    out = Path(args.out)
    check_run_dir(out, args.resume)
    check_device(recipe.train.device, "train.device")
    if args.resume:
        from lmforge.training.rundir import check_data_source, data_source

        if not recipe.data.prepared:
            d = recipe.data
            check_data_source(out, data_source(d.corpus, d.tokenizer, d.vocab_size, d.lowercase, d.heldout_fraction,
                                               d.heldout_docs, recipe.train.seed, d.tokenizer_kind), resuming=True)
        repair_metrics(out / "metrics.jsonl")

    from lmforge.pretraining import run_pretraining

    run_pretraining(recipe, out, resume=args.resume)
    return 0
