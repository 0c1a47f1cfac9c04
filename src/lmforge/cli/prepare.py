"""``lmforge prepare``: raw text corpus -> tokenized, memory-mapped pretraining shards."""

from __future__ import annotations

import argparse
import os

from lmforge.cli.checks import non_negative_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="split a raw corpus into sentences, tokenize it and write memory-mapped shards",
        description=(
            "Read documents from .txt (a blank line between documents) or .jsonl (a \"text\" field) "
            "files, optionally .gz/.xz compressed, split them into sentences, tokenize them and write "
            "OUT/train and OUT/heldout shards plus OUT/manifest.json and a copy of the tokenizer. "
            "The corpus is streamed, so it may be larger than memory."
        ),
    )
    parser.add_argument("--corpus", nargs="+", required=True, metavar="PATH", help="corpus files, in order")
    parser.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory (lmforge or HF)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (new or empty)")
    heldout = parser.add_mutually_exclusive_group()
    heldout.add_argument("--heldout-docs", type=non_negative_int, metavar="N", help="hold out exactly N whole documents")
    heldout.add_argument(
        "--heldout-fraction",
        type=float,
        default=0.01,
        metavar="F",
        help="hold out this fraction of the documents (at least one when > 0; default 0.01)",
    )
    parser.add_argument("--seed", type=int, default=12345, help="seed of the held-out choice (default 12345)")
    parser.add_argument(
        "--line-breaks",
        choices=("auto", "sentence", "wrapped"),
        default="auto",
        help=(
            "single newlines end sentences (sentence: one sentence per line) or are spaces "
            "(wrapped: hard-wrapped prose); auto decides per document (default)"
        ),
    )
    parser.add_argument(
        "--num-workers",
        type=non_negative_int,
        default=min(4, (os.cpu_count() or 2) - 1),
        metavar="N",
        help="processes splitting sentences while the main one tokenizes; 0 = in-process (default: cores-1, at most 4)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier prepared directory (only once the new one is complete)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lmforge.data.prepare import prepare_corpus

    manifest = prepare_corpus(
        args.corpus,
        args.tokenizer,
        args.out,
        heldout_fraction=args.heldout_fraction,
        heldout_docs=args.heldout_docs,
        seed=args.seed,
        line_breaks=args.line_breaks,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    for name, counts in manifest["splits"].items():
        print(
            f"{name}: {counts['documents']:,} documents, {counts['sentences']:,} sentences, "
            f"{counts['tokens']:,} tokens"
        )
    print(f"wrote {args.out} ({manifest['dtype']} tokens, vocab size {manifest['vocab_size']:,})")
    return 0
