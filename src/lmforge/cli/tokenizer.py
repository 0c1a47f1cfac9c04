"""``lmforge tokenizer``: train a sub-word vocabulary, or show how a tokenizer splits a text."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmforge.cli.checks import check_input_file, non_negative_int, positive_int, reading
from lmforge.errors import UserError

# lmforge.tokenization.KIND_SPECS' names and references, spelled out so that --help needs no
# import (tests/faults/test_recovery.py keeps them equal)
KINDS = {"wordpiece": "BERT", "bpe": "GPT", "byte_bpe": "RoBERTa", "gpt2_byte_bpe": "GPT-2", "unigram": "ALBERT",
         "llama_bpe": "LLaMA", "t5_unigram": "T5"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer",
        help="train or try a sub-word tokenizer (WordPiece, BPE, byte-level BPE, unigram)",
        description="Train a sub-word tokenizer on text files, or encode a text with a saved one.",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    actions = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")

    train = actions.add_parser(
        "train",
        help="learn a vocabulary from text files and save it in the HF layout",
        description=(
            "Learn a vocabulary from .txt or .jsonl (\"text\" field) files, optionally .gz/.xz/.bz2, "
            "streamed. The output directory loads with Tokenizer.from_dir and with "
            "transformers' AutoTokenizer."
        ),
    )
    train.add_argument("--files", nargs="+", required=True, metavar="FILE", help="training text files")
    train.add_argument(
        "--kind",
        choices=KINDS,
        default="wordpiece",
        help=", ".join(f"{name} ({reference})" for name, reference in KINDS.items()) + "; default wordpiece",
    )
    train.add_argument("--vocab-size", type=positive_int, default=30522, metavar="N", help="target vocabulary size")
    train.add_argument("--cased", action="store_true", help="keep case and accents (default: lowercase)")
    train.add_argument(
        "--min-frequency", type=non_negative_int, default=2, metavar="N", help="minimum pair count for a merge (not unigram)"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the trainer's progress bars")
    train.add_argument("--out", required=True, metavar="DIR",
                       help="directory to write the tokenizer to (new or empty)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace an earlier tokenizer directory once the new one is trained")
    train.set_defaults(func=run_train)

    encode = actions.add_parser(
        "encode",
        help="print the tokens and ids of a text (or text pair)",
        description="Encode a text with a saved tokenizer and print its tokens and ids.",
    )
    encode.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory")
    encode.add_argument("text", help="text to encode")
    encode.add_argument("--pair", metavar="TEXT", help="optional second text (sentence-pair input)")
    encode.add_argument("--max-length", type=positive_int, metavar="N", help="truncate to N tokens (longest first)")
    encode.set_defaults(func=run_encode)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def has_text(path: Path) -> bool:
    """Whether a (possibly .gz/.xz) text file holds anything but whitespace; reads only
    up to the first such line."""
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    with reading([path]), opener(path, "rt", encoding="utf-8") as handle:
        return any(line.strip() for line in handle)


def run_train(args: argparse.Namespace) -> int:
    from lmforge.tokenization import Tokenizer
    from lmforge.training.rundir import check_out_dir, kind_of
    from lmforge.files import staged_dir

    files = [check_input_file(path, "--files") for path in args.files]
    for path in files:
        if not has_text(path):
            raise UserError(f"--files {path} holds no text; a vocabulary needs training text")
    out = Path(args.out)
    existing = kind_of(out)
    if args.overwrite and existing not in (None, "a tokenizer"):
        raise UserError(f"--out {out} holds {existing}, not a tokenizer; --overwrite replaces only a tokenizer "
                        "directory (write the tokenizer elsewhere)")
    check_out_dir(out, "--out", overwrite=args.overwrite)
    tokenizer = Tokenizer.train(
        [str(path) for path in files],
        kind=args.kind,
        vocab_size=args.vocab_size,
        lowercase=not args.cased,
        min_frequency=args.min_frequency,
        show_progress=not args.no_progress,
    )
    with staged_dir(out) as staging:
        tokenizer.save(staging)
    print(f"trained {args.kind} tokenizer: vocab size {tokenizer.vocab_size}, saved to {args.out}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    from lmforge.tokenization import Tokenizer

    tokenizer = Tokenizer.from_dir(args.tokenizer)
    encoded = tokenizer.encode(args.text, args.pair, max_length=args.max_length)
    print("tokens:", " ".join(tokenizer.convert_ids_to_tokens(encoded["input_ids"])))
    print("ids:   ", " ".join(map(str, encoded["input_ids"])))
    if args.pair:
        print("types: ", " ".join(map(str, encoded["token_type_ids"])))
    return 0
