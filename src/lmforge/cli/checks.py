"""Checks every command runs before its long work, so a mistake costs a second and leaves no
files behind: argument ranges, devices, readable inputs and loadable model directories.

Nothing here imports torch at module level: ``lmforge --help`` and argument errors must
answer without it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from lmforge.errors import UserError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so --batch-size 0 is refused while parsing)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def check_device(device: str, flag: str = "--device") -> None:
    """auto, cpu, cuda or cuda:N, and CUDA only where torch can use it."""
    if not _DEVICE.match(device or ""):
        raise UserError(f"{flag} must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"{flag} {device}: CUDA is not available on this machine (use cpu or auto)")


def check_input_file(path: str | Path, flag: str, noun: str = "file") -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag}: no such {noun} {path}")
    if not path.is_file():
        raise UserError(f"{flag} {path} is a directory; give a file")
    return path


def reading(paths: Iterable[str | Path | None]):
    """Turn decoding and decompression failures of the named inputs into one line."""
    from lmforge.files import read_errors

    return read_errors(*paths)


def model_config_of(directory: Path) -> dict:
    """The raw config of a checkpoint directory (lmforge.json's "config" or HF config.json),
    read without building anything; damaged JSON is a UserError naming the file."""
    for name in ("lmforge.json", "config.json"):
        path = directory / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise UserError(f"{path} is not valid JSON ({str(error).splitlines()[0][:120]})") from None
            if not isinstance(data, dict):
                raise UserError(f"{path} must hold a JSON object")
            config = data.get("config", data) if name == "lmforge.json" else data
            if not isinstance(config, dict):
                raise UserError(f"{path}: \"config\" must be a JSON object")
            return config
    raise UserError(f"{directory} has neither lmforge.json nor config.json: not a model directory")


def _check_weights(directory: Path) -> None:
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        if (directory / "pytorch_model.bin").is_file():
            return
        raise UserError(f"{directory} has no model.safetensors")
    for path in files:
        if path.stat().st_size == 0:
            raise UserError(f"{path} is empty")
        try:
            with safe_open(str(path), framework="pt") as handle:
                names = list(handle.keys())
                if names:
                    handle.get_slice(names[-1])  # the last tensor's bytes must lie inside the file
        except Exception as error:  # SafetensorError and friends: header or size damaged
            raise UserError(f"{path} is damaged or truncated ({str(error).splitlines()[0][:120]})") from None
        expected = _safetensors_length(path)
        if expected is not None and path.stat().st_size < expected:
            raise UserError(f"{path} is truncated ({path.stat().st_size:,} of {expected:,} bytes)")


def _safetensors_length(path: Path) -> int | None:
    """Header size + the end of the last tensor's data, from the file's own header."""
    import struct

    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return None
        (size,) = struct.unpack("<Q", head)
        try:
            header = json.loads(handle.read(size))
        except ValueError:
            return None
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return 8 + size + max(ends, default=0)


def check_model_dir(path: str | Path, flag: str = "--model") -> Path:
    """A local checkpoint directory whose config parses, whose weights are whole and whose
    tokenizer fits its embeddings; hub ids pass through (they are resolved on load)."""
    directory = Path(path)
    if not directory.exists():
        from lmforge.files import restore_interrupted

        if restore_interrupted(directory):
            print(f"note: restored {directory} from the copy an interrupted save left beside it", file=sys.stderr)
    if not directory.exists():
        name = str(path)
        if name.startswith((".", "/", "~")) or name.count("/") != 1:
            raise UserError(f"{flag}: no such checkpoint directory {path}")
        return directory  # a hub id such as google/bert_uncased_L-2_H-128_A-2
    if not directory.is_dir():
        raise UserError(f"{flag} {path} is a file; give the checkpoint directory")
    config = model_config_of(directory)
    _check_weights(directory)
    vocab = config.get("vocab_size")
    tokenizer_size = _tokenizer_size(directory)
    if isinstance(vocab, int) and tokenizer_size is not None and tokenizer_size > vocab:
        raise UserError(f"{directory}: the tokenizer has {tokenizer_size:,} tokens but the model embeds only "
                        f"{vocab:,}; they do not belong together")
    return directory


def _tokenizer_size(directory: Path) -> int | None:
    from lmforge.tokenization.hf_files import has_tokenizer

    if not has_tokenizer(directory):
        return None
    from lmforge.tokenization import Tokenizer

    return Tokenizer.from_dir(directory).vocab_size


def load_checked(path: str | Path, flag: str = "--model"):
    """``lmforge.load`` after ``check_model_dir``; a config the loader cannot use is one line too."""
    import lmforge

    check_model_dir(path, flag)
    try:
        return lmforge.load(path)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{flag} {path}: cannot build a model from its config ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:120] if str(error) else 'bad value'})") from None
