"""The ``lmforge`` command line: a thin layer, one subcommand calling one package function.

Each module listed in ``_COMMAND_MODULES`` defines ``register(subparsers)`` which adds its
subcommand(s) and sets ``func`` on the parser; ``func(args)`` does the work.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lmforge.errors import UserError

_COMMAND_MODULES = [
    "lmforge.cli.models",
    "lmforge.cli.tokenizer",
    "lmforge.cli.prepare",
    "lmforge.cli.pretrain",
    "lmforge.cli.finetune",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge",
        description="Pretrain, fine-tune, convert and use BERT-family language models.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
