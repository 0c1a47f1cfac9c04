"""`lmforge ulmfit`: ULMFiT's three stages on an AWD-LSTM (``lmforge.finetune.ulmfit``).

Settings come from flags, or from a flat YAML recipe (``--recipe``, the same keys with
underscores) that flags override, validated against ``UlmfitConfig``.
"""

from __future__ import annotations

import argparse

from lmforge.cli.checks import check_device, check_input_file, non_negative_int, positive_int, reading


def register(subparsers) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent, so a recipe's value is kept
    p = subparsers.add_parser(
        "ulmfit", help="ULMFiT: pretrain an AWD-LSTM LM, fine-tune it on task text, then train a classifier",
        description="ULMFiT (Howard & Ruder 2018) in three stages: (1) an AWD-LSTM language model on a general "
                    "corpus (--general; or --pretrained to reuse one), (2) the LM fine-tuned on the task's "
                    "text with discriminative rates (/2.6 per layer) and slanted triangular rates, (3) a "
                    "concat-pooling classifier with gradual unfreezing. OUT gets stage1-language-model/, "
                    "stage2-language-model/, stage3-classifier/ (config.json + model.safetensors + tokenizer), "
                    "ulmfit.json (the settings) and metrics.json (held-out perplexity and dev accuracy per epoch).",
        epilog="example: lmforge ulmfit --general data/brown/brown.jsonl.xz --train sst2/train.tsv "
               "--dev sst2/dev.tsv --out runs/ulmfit")
    p.add_argument("--recipe", help="YAML file with any of the settings below (keys with underscores)")
    data = p.add_argument_group("data")
    data.add_argument("--general", nargs="+", default=S, metavar="CORPUS",
                      help="stage 1 corpus files (.txt or .jsonl, optionally .xz/.gz)")
    data.add_argument("--pretrained", default=S, metavar="DIR",
                      help="an AWD-LSTM language model directory (a stage1-language-model/): skips stage 1")
    data.add_argument("--task-text", nargs="+", default=S, metavar="FILE",
                      help="stage 2 text (.txt lines or .jsonl); default: the texts of --train, labels unused")
    data.add_argument("--train", default=S, help="labelled training file (.tsv/.csv/.jsonl, e.g. SST-2 train.tsv)")
    data.add_argument("--dev", default=S, help="labelled held-out file, scored after every stage-3 epoch")
    data.add_argument("--out", default=S, help="output directory (must not hold an earlier run)")
    data.add_argument("--text-column", default=S, help="text column (default: detected, GLUE layouts)")
    data.add_argument("--label-column", default=S, help="label column (default: detected)")
    data.add_argument("--limit", type=non_negative_int, default=S, help="use the first N labelled examples (0: all)")
    model = p.add_argument_group("model and training")
    model.add_argument("--preset", choices=["awd-lstm", "awd-lstm-tiny"], default=S,
                       help="awd-lstm: fastai's (3 x 1152, embedding 400); awd-lstm-tiny (default) for a CPU try")
    model.add_argument("--vocab-size", type=non_negative_int, default=S,
                       help="BPE vocabulary learned from the stage 1 corpus (default: the preset's)")
    model.add_argument("--general-tokens", type=non_negative_int, default=S,
                       help="stage 1 reads at most this many tokens of the corpus (default 0: all)")
    for flag, text in (("--lm-epochs", "stage 1 epochs (default 1)"), ("--finetune-epochs", "stage 2 epochs (default 2)"),
                       ("--classifier-epochs", "stage 3 epochs, one more layer group unfrozen each (default 5)")):
        model.add_argument(flag, type=non_negative_int, default=S, help=text)
    for flag, text in (("--lm-lr", "stage 1 peak lr (default 3e-3)"),
                       ("--finetune-lr", "stage 2 peak lr of the top group (default 1e-3)"),
                       ("--classifier-lr", "stage 3 peak lr of the top group (default 1e-2)"),
                       ("--discriminative-decay", "lr divisor per lower layer group (default 2.6)")):
        model.add_argument(flag, type=float, default=S, help=text)
    model.add_argument("--batch-size", type=positive_int, default=S, help="language-model rows (default 32)")
    model.add_argument("--bptt", type=positive_int, default=S, help="tokens per BPTT window (default 70)")
    model.add_argument("--classifier-batch-size", type=positive_int, default=S, help="texts per stage-3 step (32)")
    model.add_argument("--max-length", type=positive_int, default=S, help="stage-3 tokens per text (default 400)")
    model.add_argument("--seed", type=int, default=S)
    model.add_argument("--device", default=S, help="auto (default: a GPU when there is one), cpu, cuda or cuda:N")
    p.set_defaults(func=run_ulmfit_command)


def run_ulmfit_command(args: argparse.Namespace) -> int:
    from lmforge.finetune.ulmfit import UlmfitConfig, run_ulmfit
    from lmforge.recipes import build_dataclass, read_yaml

    settings = read_yaml(args.recipe) if args.recipe else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("recipe", "func", "command")}
    config = build_dataclass(UlmfitConfig, {**settings, **flags})
    config.validate()
    check_device(config.device)
    inputs = [*config.general, *config.task_text, config.train, config.dev]
    for path, flag in zip(inputs, ["--general"] * len(config.general) + ["--task-text"] * len(config.task_text)
                          + ["--train", "--dev"]):
        check_input_file(path, flag)
    with reading(inputs):
        metrics = run_ulmfit(config)
    if metrics["dev_accuracy"] is not None:
        print(f"dev accuracy {metrics['dev_accuracy']:.4f} on {metrics['dev_examples']} examples; wrote {config.out}")
    return 0
