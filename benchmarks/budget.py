"""Quality per compute for masked-LM pretraining (issue 14): lmforge's recipe against a plain
transformers baseline on the same corpus, the same tokenizer and the same wall-clock training
budget, held-out MLM loss and accuracy against training seconds for both.

    python benchmarks/budget.py                  # pretrain/cpu-5min on Brown, 5 min per side, 2 threads
    python benchmarks/budget.py --minutes 0.3 --eval-every-seconds 5 --threads 1 \\
        --set data.heldout_docs=10 --out /tmp/budget-smoke --plot /tmp/budget-smoke.png    # a smoke test

The two sides run one after the other (never at once: both are timed), each in its own process
with ``--threads`` torch threads (and OMP_NUM_THREADS), so both are set up alike.

* lmforge: ``lmforge pretrain RECIPE`` with ``train.time_budget_minutes`` (its learning-rate
  schedule is a function of training seconds and ends at the budget), into OUT/lmforge. Its
  tokenizer and prepared data (OUT/lmforge/data) are the ones the baseline uses.
* baseline: what a transformers user gets from the BERT paper's published settings and
  transformers' own classes, the standard that lmforge's recipe (its model options, mask rate,
  schedule and implementation together) has to beat. ``BertForMaskedLM`` from a ``BertConfig``
  of lmforge's model's size (layers, width, heads, feed-forward width, vocabulary, positions),
  transformers' defaults otherwise (post-norm, dropout 0.1, biases, its own initialisation);
  ``DataCollatorForLanguageModeling`` (dynamic masks, 15%, 80/10/10) over a
  ``PreTrainedTokenizerFast`` of lmforge's tokenizer.json, a constant batch of
  ``--baseline-batch-size``; BERT's pretraining optimiser (Devlin et al. 2019, appendix A.2;
  google-research/bert ``optimization.py``): AdamW at ``--baseline-lr`` (1e-4), betas
  (0.9, 0.999), eps 1e-6, weight decay 0.01 off biases and LayerNorm weights, gradients clipped
  at 1.0, a linear warm-up over the first 1% then a linear decay to 0 (the shape of
  ``get_linear_schedule_with_warmup``); torch's fused AdamW, the transformers Trainer's default
  ``adamw_torch_fused``. Its data are the training split's blocks of ``objective.max_seq_length``
  tokens as lmforge's MLM-only kind packs them (RoBERTa's FULL-SENTENCES, what run_mlm.py's
  ``group_texts`` gives), with lmforge's masks undone. Its schedule runs over the budget's
  seconds, as lmforge's does, so it too ends at 0 exactly when the time is up (a step count
  guessed in advance ends early, leaving the rest of the budget at rate 0, or late).

Only training time counts on both sides: the steps (batch assembly, masking, forward, backward,
update), not held-out evaluation or checkpoints. Both sides are evaluated every
``--eval-every-seconds`` of training time, at 0 and at the end, on exactly the examples
lmforge's Trainer evaluates: the first ``train.eval_batches * train.batch_size`` held-out
sequences, masked once at ``objective.eval_mlm_probability`` (fixed per index), mean
cross-entropy and argmax accuracy over the masked positions. As a check, lmforge's final model
is evaluated again with the baseline's evaluation code, which must give lmforge's own figure.

Output: OUT/budget.json (both curves, settings, machine), a table at 25/50/75/100% of the budget
(the last evaluation at or before each share), when lmforge reaches the baseline's final loss
(its first evaluation at or below it, so late by at most one evaluation interval; target: within
a third of the budget), whether it ends lower, and ``--plot`` (held-out loss and accuracy
against training seconds). ``--only lmforge|baseline`` reruns one side; a rerun keeps the
prepared data (and tokenizer) of OUT/lmforge while the recipe's data section is unchanged, and
the comparison refuses results of the two sides made on different data or held-out examples.
With a recipe that warms up by steps (``pretrain/bert-mini``), give the warm-up as a share of the
budget: ``--set train.warmup_steps=0 --set train.warmup_fraction=0.1``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, offline, print_json, print_table

IGNORE = -100
WARMUP_SHARE = 0.01  # BERT: 10,000 warm-up steps of 1,000,000
SHARES = (0.25, 0.5, 0.75, 1.0)
TARGET_SHARE = 1 / 3  # issue 14: lmforge reaches the baseline's final loss in at most a third of the time


# -- the data both sides share --------------------------------------------------------------
def data_identity(data_dir: Path, batches: list[dict]) -> dict:
    """What must match between the sides' results: the tokenizer's fingerprint, the split sizes
    and the held-out batches themselves (inputs, masks, labels)."""
    from lmforge.data.prepare import read_manifest

    manifest = read_manifest(data_dir)
    digest = hashlib.sha256()
    for batch in batches:
        for key in ("input_ids", "attention_mask", "token_type_ids", "labels"):
            digest.update(batch[key].numpy().tobytes())
    return {"tokenizer": manifest["tokenizer"]["fingerprint"], "splits": manifest["splits"],
            "heldout": digest.hexdigest()}


def recorded_recipe(run_dir: Path):
    """The recipe lmforge ran, as its run directory records it."""
    from lmforge.pretraining import PretrainRecipe
    from lmforge.recipes import build_dataclass

    path = run_dir / "recipe.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run the lmforge side first (without --only baseline)")
    return build_dataclass(PretrainRecipe, json.loads(path.read_text()))


def heldout_batches(recipe, data_dir: Path) -> list[dict]:
    """The held-out batches lmforge's Trainer evaluates: examples 0..n-1, n = min(len,
    eval_batches * batch_size), in micro-batches, collated by the MLM objective."""
    from lmforge.data.prepare import read_manifest
    from lmforge.objectives.mlm import MaskedLMObjective
    from lmforge.pretraining import masked_lm_datasets

    _, heldout = masked_lm_datasets(recipe, data_dir)
    objective = MaskedLMObjective(int(read_manifest(data_dir)["tokenizer"]["pad_id"]))
    t = recipe.train
    n, micro = min(len(heldout), t.eval_batches * t.batch_size), t.micro_batch_size or t.batch_size
    return [objective.collate([heldout[i] for i in range(start, min(start + micro, n))])
            for start in range(0, n, micro)]


@torch.no_grad()
def heldout_metrics(logits_at, batches: list[dict]) -> dict:
    """Mean cross-entropy and accuracy over the masked positions of ``batches``;
    ``logits_at(batch, chosen)`` gives the (M, V) logits at the True positions of ``chosen``."""
    loss_sum, correct, count = 0.0, 0, 0
    for batch in batches:
        chosen = batch["labels"] != IGNORE
        logits, targets = logits_at(batch, chosen).float(), batch["labels"][chosen]
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += int((logits.argmax(-1) == targets).sum())
        count += targets.numel()
    return {"eval_mlm_loss": loss_sum / count, "eval_mlm_accuracy": correct / count, "masked_positions": count}


def transformers_logits(model):
    return lambda batch, chosen: model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                       token_type_ids=batch["token_type_ids"]).logits[chosen]


def lmforge_logits(model, unpad: bool):
    # MaskedLMObjective._forward: the vocabulary head runs on the chosen positions only
    return lambda batch, chosen: model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                       predict_mask=chosen, unpad=unpad).mlm_logits


def training_blocks(recipe, data_dir: Path) -> list[list[int]]:
    """The training split as lmforge's MLM-only kind packs it (blocks of max_seq_length), with
    its masks undone: labels hold the original token wherever a position was chosen."""
    from lmforge.pretraining import masked_lm_datasets

    objective = dataclasses.replace(recipe.objective, kind="mlm", seq_length_curriculum=[])
    train, _ = masked_lm_datasets(dataclasses.replace(recipe, objective=objective), data_dir)
    blocks = []
    for index in range(len(train)):
        example = train.example(index, 0)
        blocks.append(np.where(example["labels"] != IGNORE, example["labels"], example["input_ids"]).tolist())
    if any(train.mask_id in block for block in blocks):
        raise SystemExit("a training block still holds [MASK] after undoing the masks")
    return blocks


def transformers_tokenizer(data_dir: Path):
    """lmforge's tokenizer as transformers' fast tokenizer, its special tokens checked against
    the ids the prepared data records (the collator masks with mask_token_id and leaves
    all_special_ids alone)."""
    from transformers import PreTrainedTokenizerFast

    from lmforge.data.prepare import read_manifest

    directory = data_dir / "tokenizer"
    specials = json.loads((directory / "special_tokens_map.json").read_text())
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), **specials)
    manifest = read_manifest(data_dir)
    info = manifest["tokenizer"]
    ours = {"mask": tokenizer.mask_token_id, "pad": tokenizer.pad_token_id, "cls": tokenizer.cls_token_id,
            "sep": tokenizer.sep_token_id}
    theirs = {role: info[f"{role}_id"] for role in ours}
    if ours != theirs or len(tokenizer) != int(manifest["vocab_size"]):
        raise SystemExit(f"transformers' tokenizer disagrees with lmforge's: {ours} vs {theirs}, "
                         f"{len(tokenizer)} vs {manifest['vocab_size']} tokens")
    if not set(info["special_ids"]) <= set(tokenizer.all_special_ids):
        raise SystemExit(f"special ids {info['special_ids']} are not all special for transformers "
                         f"({tokenizer.all_special_ids}): the collator could mask them")
    return tokenizer


def lmforge_model_config(recipe, tokenizer):
    """The ModelConfig run_pretraining builds for ``recipe``."""
    from lmforge.families import get_preset

    return (get_preset(recipe.model.preset).replace(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
            .replace(**recipe.model.config))


def baseline_config(recipe, tokenizer):
    """A BertConfig of lmforge's model's size, transformers' defaults otherwise."""
    from transformers import BertConfig

    c = lmforge_model_config(recipe, tokenizer)
    return BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_layers,
                      num_attention_heads=c.num_heads, intermediate_size=c.intermediate_size,
                      max_position_embeddings=c.max_positions, type_vocab_size=max(c.type_vocab_size, 1),
                      pad_token_id=tokenizer.pad_token_id)


# -- the baseline's run (a subprocess) ------------------------------------------------------
def run_baseline(args) -> None:
    from pretrain_step import transformers_optimizer
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling

    from lmforge.training.schedules import by_progress

    offline()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    run_dir = out / "lmforge"
    recipe = recorded_recipe(run_dir)
    data_dir = run_dir / "data"
    tokenizer = transformers_tokenizer(data_dir)
    blocks, heldout = training_blocks(recipe, data_dir), heldout_batches(recipe, data_dir)
    batch_size, seed, budget = args.baseline_batch_size or recipe.train.batch_size, recipe.train.seed, args.minutes * 60
    torch.manual_seed(seed)
    config = baseline_config(recipe, tokenizer)
    model = BertForMaskedLM(config)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    sample = collator([{"input_ids": block} for block in blocks[:batch_size]])
    chosen = sample["labels"] != IGNORE  # labels hold the original tokens there
    if (torch.isin(sample["labels"][chosen], torch.tensor(tokenizer.all_special_ids)).any()
            or chosen[sample["input_ids"] == tokenizer.mask_token_id].logical_not().any()):
        raise SystemExit("the collator masked a special token, or wrote a [MASK] it does not predict")

    def new_optimizer(module):
        optimizer = transformers_optimizer(module)  # BERT's AdamW values, fused, no decay on biases/LayerNorm
        for group in optimizer.param_groups:
            group["lr"] = args.baseline_lr
        return optimizer

    def batch_orders():
        epoch = 0
        while True:
            order = np.random.default_rng([seed, epoch]).permutation(len(blocks))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                yield order[start:start + batch_size]
            epoch += 1

    def train_step(module, optimizer, orders) -> float:
        batch = collator([{"input_ids": blocks[i]} for i in next(orders)])
        loss = module(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    # BERT's schedule shape (linear warm-up over the first 1%, then linear decay to 0) over the
    # budget's seconds rather than a step count guessed in advance, so it ends at 0 exactly when
    # the time is up, as lmforge's does: a guessed count ends early (lr 0 for the rest) or late.
    optimizer = new_optimizer(model)
    peak = [group["lr"] for group in optimizer.param_groups]

    shape = by_progress("linear", WARMUP_SHARE)  # a formula: the shape transformers' schedule has

    def set_rate(seconds: float) -> None:
        factor = shape(seconds / budget)
        for group, top in zip(optimizer.param_groups, peak):
            group["lr"] = top * factor

    torch.manual_seed(seed + 1)  # the collator's masks
    orders, logits_at = batch_orders(), transformers_logits(model)

    def point(seconds: float, steps: int) -> dict:
        model.eval()
        record = {"train_seconds": seconds, "step": steps, **heldout_metrics(logits_at, heldout)}
        model.train()
        print(f"baseline  step {steps}  {seconds:.0f}/{budget:.0f} s  held-out loss {record['eval_mlm_loss']:.4f}  "
              f"accuracy {record['eval_mlm_accuracy']:.4f}", flush=True)
        return record

    curve, losses, trained, steps = [point(0.0, 0)], [], 0.0, 0
    every = args.eval_every_seconds
    next_eval = every
    model.train()
    while trained < budget:
        began = time.perf_counter()
        set_rate(trained)
        losses.append(train_step(model, optimizer, orders))
        trained += time.perf_counter() - began
        steps += 1
        if trained < budget and trained >= next_eval:
            curve.append(point(trained, steps))
            next_eval = (trained // every + 1) * every
    curve.append(point(trained, steps))
    record = {"side": "baseline", "steps": steps, "final_lr": optimizer.param_groups[0]["lr"],
              "batch_size": batch_size, "lr": args.baseline_lr, "parameters": sum(p.numel() for p in model.parameters()),
              "training_blocks": len(blocks), "train_loss_last20": float(np.mean(losses[-20:])),
              "data": data_identity(data_dir, heldout),
              "config": config.to_diff_dict(), "curve": curve}
    (out / "baseline.json").write_text(json.dumps(record, indent=1) + "\n")


# -- the lmforge side -----------------------------------------------------------------------
def lmforge_overrides(args) -> list[str]:
    """The user's --set, then what makes the run this benchmark's (these win)."""
    corpus = json.dumps([str(Path(args.corpus).resolve())])
    return [*args.set, f"data.corpus={corpus}", "data.prepared=", f"train.time_budget_minutes={args.minutes}",
            "train.max_steps=0", f"train.eval_every_seconds={args.eval_every_seconds}", "train.eval_every=0",
            "train.save_every=0", "export_hf=false"]


def side_env(threads: int) -> dict:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "RAYON_RS_NUM_CPUS": str(threads)}  # the last: the tokenizers library's threads (data preparation)


# What a rerun keeps of an earlier lmforge run: lmforge reuses prepared data whose recorded
# source (corpus, tokenizer settings, held-out choice) is the recipe's and rebuilds it otherwise;
# keeping it keeps the baseline's results valid (WordPiece training is not reproducible).
KEPT = ("data", "tokenizer", "data_source.json", "recipe.json")  # the last marks a pretraining run for lmforge


def run_lmforge(args) -> None:
    run_dir = Path(args.out) / "lmforge"
    if run_dir.exists():
        print(f"replacing the earlier lmforge run in {run_dir} (its prepared data stays if the recipe's is the same)")
        for path in run_dir.iterdir():
            if path.name not in KEPT:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    command = [sys.executable, "-m", "lmforge", "pretrain", args.recipe, "--out", str(run_dir)]
    for item in lmforge_overrides(args):
        command += ["--set", item]
    if subprocess.run(command, env=side_env(args.threads), check=False).returncode != 0:
        raise SystemExit("the lmforge side failed (see above)")


def lmforge_record(args, recipe, batches: list[dict]) -> dict:
    """lmforge's curve from its metrics.jsonl, and its final model evaluated again by the
    baseline's evaluation code (the check that both sides see the same held-out examples)."""
    from lmforge.api import load_model
    from lmforge.training.loop import read_metrics

    run_dir = Path(args.out) / "lmforge"
    records = read_metrics(run_dir / "metrics.jsonl")
    curve = [{"train_seconds": r.get("train_seconds", 0.0), "step": r["step"], "eval_mlm_loss": r["eval_mlm_loss"],
              "eval_mlm_accuracy": r["eval_mlm_accuracy"]} for r in records if "eval_mlm_loss" in r]
    model = load_model(run_dir / "model", task="masked_lm").eval()
    bf16 = recipe.train.precision == "bf16"  # as the Trainer evaluated (auto is fp32 on CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
        check = heldout_metrics(lmforge_logits(model, recipe.train.unpad), batches)
    return {"side": "lmforge", "steps": curve[-1]["step"], "batch_size": recipe.train.batch_size,
            "lr": recipe.train.lr, "parameters": sum(p.numel() for p in model.parameters()),
            "model_config": {k: v for k, v in model.config.to_dict().items() if k != "labels"},
            "recheck": {**check, "own_eval_mlm_loss": curve[-1]["eval_mlm_loss"],
                        "own_eval_mlm_accuracy": curve[-1]["eval_mlm_accuracy"]},
            "curve": curve}


# -- the comparison -------------------------------------------------------------------------
def at_share(curve: list[dict], seconds: float, last: bool) -> dict:
    """The last evaluation at or before ``seconds`` (the final one for the whole budget)."""
    return curve[-1] if last else [p for p in curve if p["train_seconds"] <= seconds][-1]


def crossing(curve: list[dict], target: float) -> dict | None:
    """Where ``curve`` first gets to ``target`` loss: the first evaluation at or below it (what
    the verdict uses: measured, and late by at most one evaluation interval), and where the
    line drawn between evaluations crosses it (the plot's marker)."""
    for before, point in zip([None] + curve[:-1], curve):
        if point["eval_mlm_loss"] <= target:
            drawn = point["train_seconds"]
            if before is not None and before["eval_mlm_loss"] > target:
                share = (before["eval_mlm_loss"] - target) / (before["eval_mlm_loss"] - point["eval_mlm_loss"])
                drawn = before["train_seconds"] + share * (point["train_seconds"] - before["train_seconds"])
            return {"seconds": point["train_seconds"], "step": point["step"], "interpolated_seconds": drawn}
    return None


def compare(args, records: dict, budget: float) -> dict:
    ours, theirs = records["lmforge"]["curve"], records["baseline"]["curve"]
    rows = []
    for share in SHARES:
        a, b = at_share(ours, share * budget, share == 1.0), at_share(theirs, share * budget, share == 1.0)
        rows.append([f"{share:.0%}", f"{share * budget:.0f}", f"{a['train_seconds']:.0f}", a["step"],
                     f"{a['eval_mlm_loss']:.4f}", f"{a['eval_mlm_accuracy']:.2%}", f"{b['train_seconds']:.0f}",
                     b["step"], f"{b['eval_mlm_loss']:.4f}", f"{b['eval_mlm_accuracy']:.2%}"])
    print_table(f"held-out MLM at equal training time ({args.minutes:g} min per side, {args.threads} thread(s); "
                "the last evaluation at or before each share)",
                ["share", "budget s", "lmforge s", "steps", "loss", "accuracy", "baseline s", "steps", "loss",
                 "accuracy"], rows)
    target, final = theirs[-1]["eval_mlm_loss"], ours[-1]["eval_mlm_loss"]
    reached = crossing(ours, target)
    if reached:
        share = reached["seconds"] / budget
        met = share <= TARGET_SHARE
        print(f"lmforge reached the baseline's final held-out loss {target:.4f} at {reached['seconds']:.0f} s "
              f"({share:.2f} of the budget; target <= 1/3: {'met' if met else 'not met'}) "
              f"[its first evaluation at or below it; the curve drawn crosses at {reached['interpolated_seconds']:.0f} s]")
    else:
        met = False
        print(f"lmforge did not reach the baseline's final held-out loss {target:.4f} (its best "
              f"{min(p['eval_mlm_loss'] for p in ours):.4f}; target <= 1/3: not met)")
    print(f"final held-out loss lmforge {final:.4f} vs baseline {target:.4f} (ends lower: "
          f"{'yes' if final < target else 'no'}); accuracy {ours[-1]['eval_mlm_accuracy']:.2%} vs "
          f"{theirs[-1]['eval_mlm_accuracy']:.2%}")
    return {"baseline_final_loss": target, "lmforge_final_loss": final, "lmforge_reached_baseline_final": reached,
            "reached_share": reached["seconds"] / budget if reached else None, "target_met": met,
            "ends_lower": final < target}


def plot(records: dict, verdict: dict, title: str, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for side, record in records.items():
        curve, label = record["curve"], f"{side} ({record['steps']} steps)"
        seconds = [p["train_seconds"] for p in curve]
        loss_axis.plot(seconds, [p["eval_mlm_loss"] for p in curve], marker=".", label=label)
        accuracy_axis.plot(seconds, [100 * p["eval_mlm_accuracy"] for p in curve], marker=".", label=label)
    target = verdict["baseline_final_loss"]
    loss_axis.axhline(target, color="gray", linestyle=":", label=f"baseline's final loss {target:.3f}")
    reached = verdict["lmforge_reached_baseline_final"]
    if reached:
        loss_axis.plot([reached["interpolated_seconds"]], [target], marker="*", markersize=13, color="black",
                       linestyle="none", label=f"lmforge reaches it (evaluated at {reached['seconds']:.0f} s)")
    loss_axis.set_ylabel("held-out MLM loss")
    accuracy_axis.set_ylabel("held-out MLM accuracy (%)")
    for axis in (loss_axis, accuracy_axis):
        axis.set_xlabel("training seconds")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(REPO / "data/brown/brown.jsonl.xz"), help="raw text (default: Brown)")
    parser.add_argument("--recipe", default="pretrain/cpu-5min", help="lmforge's recipe (default pretrain/cpu-5min)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key of the recipe (repeatable); the baseline follows its data and size")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per side (default 5)")
    parser.add_argument("--eval-every-seconds", type=float, default=15.0, help="held-out evaluation every N "
                        "training seconds (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per side (default 2)")
    parser.add_argument("--out", default="runs/budget", help="directory of both runs and budget.json")
    parser.add_argument("--plot", default=str(REPO / "benchmarks/budget-brown.png"), help="the curves PNG")
    parser.add_argument("--baseline-lr", type=float, default=1e-4, help="peak rate (default 1e-4, BERT's)")
    parser.add_argument("--baseline-batch-size", type=int, default=0, help="sequences per step (default: the "
                        "recipe's train.batch_size)")
    parser.add_argument("--only", choices=["lmforge", "baseline"], help="rerun one side, keep the other's results")
    parser.add_argument("--side", choices=["baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        run_baseline(args)
        return 0
    from lmforge.errors import UserError
    from lmforge.pretraining import load_recipe, validate_recipe

    offline()
    torch.set_num_threads(args.threads)
    try:  # the recipe's mistakes before anything runs
        recipe = load_recipe(args.recipe, lmforge_overrides(args))
        validate_recipe(recipe)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    if recipe.objective.kind not in ("mlm", "mlm+nsp", "mlm+sop"):
        raise SystemExit(f"error: the recipe trains {recipe.objective.kind}; this benchmark compares masked LMs")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = {}
    if args.only != "baseline":
        began = time.perf_counter()
        run_lmforge(args)
        seconds["lmforge"] = time.perf_counter() - began
    if args.only != "lmforge":
        began = time.perf_counter()
        command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--side", "baseline"]
        if subprocess.run(command, env=side_env(args.threads), check=False).returncode != 0:
            raise SystemExit("the baseline side failed (see above)")
        seconds["baseline"] = time.perf_counter() - began
    if not (out / "baseline.json").is_file():
        raise SystemExit(f"{out / 'baseline.json'} is missing: run the baseline side too")

    recipe = recorded_recipe(out / "lmforge")
    batches = heldout_batches(recipe, out / "lmforge" / "data")
    records = {"lmforge": lmforge_record(args, recipe, batches),
               "baseline": json.loads((out / "baseline.json").read_text())}
    if records["baseline"].get("data") != data_identity(out / "lmforge" / "data", batches):
        raise SystemExit(f"{out / 'baseline.json'} was made on other data or held-out examples than lmforge's "
                         "run: rerun the baseline (--only baseline)")
    budget = args.minutes * 60
    for side, record in records.items():
        if abs(record["curve"][-1]["train_seconds"] - budget) > max(0.1 * budget, 10.0):
            print(f"warning: the {side} side's results are of another budget "
                  f"({record['curve'][-1]['train_seconds']:.0f} s of training); rerun it")
    recheck = records["lmforge"]["recheck"]
    print(f"\nlmforge's final model evaluated by the baseline's code: loss {recheck['eval_mlm_loss']:.6f} vs its own "
          f"{recheck['own_eval_mlm_loss']:.6f} ({recheck['masked_positions']} masked positions in "
          f"{sum(len(b['input_ids']) for b in batches)} held-out sequences)")
    verdict = compare(args, records, budget)
    c = records["lmforge"]["model_config"]
    size = f"{c['num_layers']} layers, hidden {c['hidden_size']}, vocab {c['vocab_size']}"
    title = (f"lmforge {args.recipe} vs transformers BertForMaskedLM, {size}\n"
             f"{Path(args.corpus).name}, {args.minutes:g} min of training each, {args.threads} thread(s)")
    if args.plot:
        plot(records, verdict, title, Path(args.plot))
        print(f"wrote {args.plot}")
    summary = {"benchmark": "budget", "recipe": args.recipe, "overrides": args.set, "corpus": args.corpus,
               "minutes": args.minutes, "eval_every_seconds": args.eval_every_seconds, "threads": args.threads,
               "baseline_lr": args.baseline_lr, "machine": machine(torch.device("cpu")),
               "wall_seconds": seconds, **verdict,
               "lmforge": {k: v for k, v in records["lmforge"].items() if k != "curve"},
               "baseline": {k: v for k, v in records["baseline"].items() if k != "curve"}}
    (out / "budget.json").write_text(json.dumps({**summary, "curves": {side: r["curve"] for side, r in records.items()}},
                                                indent=1) + "\n")
    print(f"wrote {out / 'budget.json'}")
    print_json(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
