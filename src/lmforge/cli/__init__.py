"""The ``lmforge`` command line: a thin layer, one subcommand calling one package function.

Each module listed in ``_COMMAND_MODULES`` defines ``register(subparsers)`` which adds its
subcommand(s) and sets ``func`` on the parser; ``func(args)`` does the work. Command modules
import torch and the heavy parts of lmforge inside their functions, so ``--help``, ``presets``
and argument errors answer at once.

Failures are one line on standard error, never a traceback: a UserError (a mistake in what
was asked) exits with 2, a file-system failure (no space left, permission denied) with 1.
``LMFORGE_DEBUG=1`` re-raises them with the traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pickle
import sys

from lmforge.errors import UserError

_COMMAND_MODULES = [
    "lmforge.cli.models",
    "lmforge.cli.tokenizer",
    "lmforge.cli.prepare",
    "lmforge.cli.pretrain",
    "lmforge.cli.finetune",
    "lmforge.cli.generate",
    "lmforge.cli.ulmfit",
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


def describe_os_error(error: OSError) -> str:
    """One line for a file-system failure, naming the path."""
    where = f" writing {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return (f"no space left on device{where}; free some space and run again "
                "(a pretraining run resumes from its last complete checkpoint with --resume)")
    reason = error.strerror or str(error) or type(error).__name__
    return f"{reason}: {error.filename}" if error.filename else reason


def describe_unpickling_error(error: Exception) -> str:
    """torch's restricted unpickler explains itself in a page; keep the line that says what it refused."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0] if lines else "")
    return (f"refusing to load a pickle that holds more than tensors and plain data "
            f"(a .bin or .pt file can run code when loaded): {refused[:200]}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = os.environ.get("LMFORGE_DEBUG", "") not in ("", "0")
    try:
        result = args.func(args)
    except UserError as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except pickle.UnpicklingError as error:
        if debug:
            raise
        print(f"error: {describe_unpickling_error(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        if debug:
            raise
        print(f"error: {describe_os_error(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
