"""`lmforge finetune`, `lmforge evaluate` and `lmforge predict`: thin wrappers over
``lmforge.finetune``.

Fine-tuning settings come from flags, or from a flat YAML recipe (``--recipe``, the same
keys with underscores) that flags override; both are validated against ``FinetuneConfig``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmforge.cli.checks import check_device, check_input_file, check_model_dir, non_negative_int, positive_int, reading
from lmforge.errors import UserError

# What an interrupted `lmforge finetune` leaves before its first epoch ends: the same --out may be reused
# (a kill while saving the first model may leave save_model's staging directory, .model.new-PID).
_INTERRUPTED_FINETUNE = {"metrics.jsonl", "train_config.json", ".model.tmp"}  # .model.tmp: older versions
_STAGING = (".model.new-", ".model.old-")
# The keys of the metrics.json that `lmforge evaluate` writes (a fine-tuning run's has "settings").
_EVALUATE_KEYS = {"task", "model", "data", "examples"}

_TASK_HELP = ("classification (single sentences or pairs), ner (CoNLL tagging), qa (SQuAD v1.1 spans) or "
              "multiple_choice (JSONL: context, choices, label) or seq2seq (JSONL/TSV source, target; BART, T5)")
_TASKS = ["classification", "ner", "qa", "multiple_choice", "seq2seq"]
_FEATURE_LR = 1e-3  # lmforge.finetune.feature_based.FEATURE_LR (not imported: the CLI loads torch lazily)


def _task_options(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    """Reading and decoding flags shared by the three commands."""
    group = parser.add_argument_group("data and decoding")
    group.add_argument("--max-length", type=int, default=default, help="tokens per sequence (default 128; qa 384)")
    group.add_argument("--text-column", default=default, help="classification: text column (default: detected)")
    group.add_argument("--pair-column", default=default, help="classification: second-text column of pair tasks")
    group.add_argument("--label-column", default=default, help="classification: label column (default: detected)")
    group.add_argument("--doc-stride", type=int, default=default, help="qa: tokens between window starts (128)")
    group.add_argument("--max-query-length", type=int, default=default, help="qa: question tokens kept (64)")
    group.add_argument("--max-answer-length", type=int, default=default, help="qa: longest answer in tokens (30)")
    group.add_argument("--symmetric-pairs", action=argparse.BooleanOptionalAction, default=default,
                       help="decoder pair classification: both orders, final states added (GPT similarity)")
    _seq2seq_options(parser, default)


def _seq2seq_options(parser: argparse.ArgumentParser, default, training: bool = False) -> None:
    """--task seq2seq (lmforge.tasks.seq2seq): reading, decoding, metrics; with ``training`` also
    label smoothing and BART's two-stage machine translation with a new source encoder."""
    group = parser.add_argument_group("seq2seq" + (" training" if training else ""))
    if training:
        group.add_argument("--label-smoothing", type=float, default=default,
                           help="label smoothing (BART: 0.1; default 0)")
        group.add_argument("--new-source-encoder", type=int, default=default, metavar="LAYERS",
                           help="BART MT: a new random source encoder of LAYERS layers feeding BART's encoder")
        group.add_argument("--source-tokenizer", default=default, help="BART MT: the new encoder's tokenizer directory")
        group.add_argument("--stage1-epochs", type=int, default=default,
                           help="BART MT: first epochs train only the new encoder, encoder positions and layer-0 "
                                "q/k/v; later epochs train everything (default 0)")
        return
    group.add_argument("--source-column", default=default, help="seq2seq: JSONL source field (default 'source')")
    group.add_argument("--target-column", default=default, help="seq2seq: JSONL target field (default 'target')")
    group.add_argument("--max-target-length", type=int, default=default, help="seq2seq: target tokens kept (128)")
    group.add_argument("--metric", choices=["rouge", "bleu", "accuracy"], default=default,
                       help="seq2seq: ROUGE-1/2/L/Lsum, sacreBLEU or exact-match accuracy (default: accuracy with "
                            "--label-words, else rouge)")
    group.add_argument("--num-beams", type=int, default=default, help="seq2seq: beam width for evaluation (4)")
    group.add_argument("--source-prefix", default=default,
                       help="seq2seq: text before every source (T5: 'sst2 sentence: ')")
    group.add_argument("--label-words", default=default,
                       help="seq2seq on a classification file: labels as words, 'negative,positive' or '0=neg,1=pos'")


def _feature_options(parser: argparse.ArgumentParser) -> None:
    """The feature-based approach (BERT paper §5.3; lmforge.finetune.feature_based)."""
    S = argparse.SUPPRESS
    group = parser.add_argument_group("feature-based (a head on frozen features, BERT paper section 5.3)")
    group.add_argument("--features", metavar="STRATEGY", default=S,
                       help="train a head on the frozen backbone's features: embeddings, second_to_last, last, "
                            "sum_last_four, concat_last_four, sum_all, or scalar_mix (ELMo's learned mix); "
                            f"--lr then defaults to {_FEATURE_LR}")
    group.add_argument("--head", choices=["bilstm", "linear"], default=S,
                       help="ner: bilstm (2-layer BiLSTM tagger, default) or linear; classification: linear")
    group.add_argument("--head-hidden", type=int, default=S, help="BiLSTM units per direction (default 768)")


def register(subparsers) -> None:
    S = argparse.SUPPRESS  # unset flags stay absent, so a recipe's value is kept
    ft = subparsers.add_parser(
        "finetune", help="fine-tune a checkpoint on classification, NER, span QA, multiple choice or seq2seq",
        description="Fine-tune any lmforge or HF-format checkpoint (any head), all parameters updated by default. "
                    "OUT gets model/ (HF layout, tokenizer, label names), metrics.json, metrics.jsonl, "
                    "the eval predictions and curves.png. The best epoch on the eval file is kept.")
    ft.add_argument("--recipe", help="YAML file with any of the settings below (keys with underscores)")
    ft.add_argument("--model", default=S, help="checkpoint directory (lmforge or HF layout) with its tokenizer")
    ft.add_argument("--task", choices=_TASKS, default=S, help=_TASK_HELP)
    ft.add_argument("--train", default=S, help="training file: .tsv/.csv/.jsonl, CoNLL columns, or SQuAD .json")
    ft.add_argument("--eval", default=S, help="held-out file of the same kind, scored every epoch")
    ft.add_argument("--out", default=S, help="output directory")
    train = ft.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=S, help="passes over the training data (default 3)")
    train.add_argument("--batch-size", type=int, default=S, help="sequences per step (default 32)")
    train.add_argument("--eval-batch-size", type=int, default=S, help="sequences per evaluation batch (default 64)")
    train.add_argument("--lr", type=float, default=S, help="peak learning rate (default 5e-5)")
    train.add_argument("--seed", type=int, default=S, help="seed for the head, dropout and data order (default 42)")
    train.add_argument("--limit", type=int, default=S, help="use the first N training examples (default: all)")
    train.add_argument("--eval-limit", type=int, default=S, help="score the first N eval examples (default: all)")
    train.add_argument("--warmup-fraction", type=float, default=S, help="warm-up share of the steps (default 0.1)")
    train.add_argument("--weight-decay", type=float, default=S, help="AdamW weight decay (default 0.01)")
    train.add_argument("--schedule", choices=["linear", "slanted_triangular", "constant"], default=S,
                       help="lr after warm-up: linear decay to 0 (BERT), ULMFiT's slanted triangular "
                            "(cut_frac = warm-up fraction, ratio 32), or constant")
    train.add_argument("--patience", type=int, default=S,
                       help="stop after N epochs without improvement on the eval metric (default 0: never)")
    train.add_argument("--device", default=S, help="auto, cpu or cuda (default auto)")
    toolbox = ft.add_argument_group("ULMFiT toolbox")
    toolbox.add_argument("--discriminative-decay", type=float, default=S,
                         help="divide each lower layer group's lr by this (ULMFiT: 2.6; default 0: off)")
    toolbox.add_argument("--gradual-unfreezing", action=argparse.BooleanOptionalAction, default=S,
                         help="train the top layer group only, then one more group per epoch")
    toolbox.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=S,
                         help="train the task head only (a linear probe on frozen features)")
    toolbox.add_argument("--lm-loss-weight", type=float, default=S,
                         help="decoder checkpoints: GPT's auxiliary LM loss weight (the paper: 0.5; default 0: off)")
    _feature_options(ft)
    _task_options(ft)
    _seq2seq_options(ft, S, training=True)
    ft.set_defaults(func=run_finetune)

    ev = subparsers.add_parser(
        "evaluate", help="score a fine-tuned model on a labelled file",
        description="Print the task metrics of a fine-tuned model on DATA and write metrics.json to --out "
                    "(default: the model directory); with --out the predictions are written there too.")
    ev.add_argument("--model", required=True, help="fine-tuned checkpoint directory (e.g. OUT/model)")
    ev.add_argument("--task", choices=_TASKS, help=_TASK_HELP + "; default: the model's")
    ev.add_argument("--data", required=True, help="labelled file in the task's format")
    ev.add_argument("--out", help="directory for metrics.json and the predictions")
    ev.add_argument("--overwrite", action="store_true",
                    help="replace metrics and predictions that another command wrote (once the new ones are complete)")
    ev.add_argument("--batch-size", type=positive_int, default=64)
    ev.add_argument("--limit", type=non_negative_int, default=0, help="score the first N examples (default: all)")
    ev.add_argument("--device", default="auto")
    _task_options(ev, default=None)
    ev.set_defaults(func=run_evaluate)

    pr = subparsers.add_parser(
        "predict", help="label raw input with a fine-tuned model",
        description="classification: one text per line (or 'text<TAB>pair' with --pair) -> 'label<TAB>probability'; "
                    "ner: one sentence per line (words split on spaces) -> 'word/TAG ...'; "
                    "qa: SQuAD-format JSON (answers optional) -> 'id<TAB>answer'; "
                    "seq2seq: one source per line -> the generated text.")
    pr.add_argument("--model", required=True, help="fine-tuned checkpoint directory (e.g. OUT/model)")
    pr.add_argument("--task", choices=_TASKS, help=_TASK_HELP + "; default: the model's")
    pr.add_argument("--input", required=True, help="input file")
    pr.add_argument("--pair", action="store_true", help="classification: lines are 'text<TAB>second text'")
    pr.add_argument("--out", help="write the lines to this file instead of standard output")
    pr.add_argument("--batch-size", type=positive_int, default=64)
    pr.add_argument("--device", default="auto")
    _task_options(pr, default=None)
    pr.set_defaults(func=run_predict)


def finetune_config(args: argparse.Namespace):
    """The recipe's settings (if any) with the given flags on top, validated."""
    from lmforge.finetune import FinetuneConfig
    from lmforge.recipes import build_dataclass, read_yaml

    settings = read_yaml(args.recipe) if args.recipe else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("recipe", "func", "command")}
    merged = {**settings, **flags}
    if merged.get("features") and "lr" not in merged:
        merged["lr"] = _FEATURE_LR  # a head trained from scratch, not BERT's 5e-5
    return build_dataclass(FinetuneConfig, merged)


def _check_finetune_out(out: Path) -> None:
    from lmforge.training.rundir import describe

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if out.is_dir():
        names = {entry.name for entry in out.iterdir() if not entry.name.startswith(_STAGING)}
        if names and not names <= _INTERRUPTED_FINETUNE:
            raise UserError(f"--out {out} already holds {describe(out)}; choose another --out")


def run_finetune(args: argparse.Namespace) -> int:
    from lmforge.finetune import run_finetune as finetune

    cfg = finetune_config(args)
    cfg.validate()
    _check_finetune_out(Path(cfg.out))
    check_device(cfg.device)
    check_input_file(cfg.train, "--train")
    check_input_file(cfg.eval, "--eval")
    check_model_dir(cfg.model)
    with reading([cfg.train, cfg.eval]):
        finetune(cfg)
    return 0


def _options(args: argparse.Namespace):
    from lmforge.finetune import TaskOptions

    names = ("max_length", "text_column", "pair_column", "label_column", "doc_stride", "max_query_length",
             "max_answer_length", "source_column", "target_column", "max_target_length", "metric", "num_beams",
             "source_prefix", "label_words")
    return TaskOptions(**{name: getattr(args, name) for name in names if getattr(args, name) is not None})


def _written_by_evaluate(metrics: Path) -> bool:
    try:
        data = json.loads(metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and _EVALUATE_KEYS <= set(data) and "settings" not in data


def _check_evaluate_target(target: Path, flag: str, overwrite: bool) -> None:
    """evaluate may replace its own earlier metrics.json and predictions; anything else
    (a fine-tuning run's metrics.json, its model) only with --overwrite."""
    from lmforge.training.rundir import describe

    if target.exists() and not target.is_dir():
        raise UserError(f"{flag} {target} is a file; give a directory")
    if overwrite or not target.is_dir():
        return
    metrics = target / "metrics.json"
    if metrics.exists() and not _written_by_evaluate(metrics):
        raise UserError(f"{flag} {target} holds {describe(target)} whose metrics.json evaluate did not write; "
                        f"choose another {flag} or pass --overwrite")
    if flag == "--out" and (target / "model").exists():
        raise UserError(f"--out {target} holds {describe(target)}; choose another --out or pass --overwrite")


def run_evaluate(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from lmforge.finetune import evaluate_model
    from lmforge.files import fsync_dir, fsync_tree

    check_model_dir(args.model)
    check_input_file(args.data, "--data")
    check_device(args.device)
    target = Path(args.out) if args.out else Path(args.model)
    _check_evaluate_target(target, "--out" if args.out else "--model", args.overwrite)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        # Written beside the target first, then renamed over it file by file: an error or a
        # full disk midway leaves the earlier outputs as they were.
        with tempfile.TemporaryDirectory(dir=target, prefix=".evaluate-") as staging:
            with reading([args.data]):
                result = evaluate_model(args.model, args.task, args.data, staging, _options(args),
                                        args.batch_size, args.device, args.limit)
            fsync_tree(staging)
            for entry in sorted(Path(staging).iterdir()):
                if args.out or entry.name == "metrics.json":
                    os.replace(entry, target / entry.name)
            fsync_dir(target)
    except BaseException:
        if created and not any(target.iterdir()):
            target.rmdir()  # a failed evaluation leaves nothing behind
        raise
    for key, value in result.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from lmforge.finetune import predict_file
    from lmforge.files import write_text_atomic
    from lmforge.training.rundir import check_out_file

    if args.pair and args.task not in (None, "classification"):
        raise UserError("--pair is for classification inputs")
    check_model_dir(args.model)
    check_input_file(args.input, "--input")
    check_device(args.device)
    if args.out:
        check_out_file(args.out, "--out")
    with reading([args.input]):
        lines = predict_file(args.model, args.task, args.input, args.pair, _options(args), args.batch_size,
                             args.device)
    text = "".join(line + "\n" for line in lines)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, text)
    else:
        print(text, end="")
    return 0
