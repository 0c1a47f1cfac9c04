"""Shared pieces of the benchmark scripts: machine description, interleaved timing, output.

Every comparison runs both sides in one process, alternating which goes first in each
repeat, so that load from other processes lands on both alike; figures are medians.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing lmforge

# Dense bf16 peak FLOP/s (no sparsity) by device-name fragment, most specific first.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("GH200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
]


def offline() -> None:
    """Benchmarks never download: everything is built locally."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def select_device(args, cpu_target: dict, gpu_target: dict, dry_run: dict) -> tuple[dict, torch.device]:
    """(settings, device) from a benchmark's --device / --threads / --dry-run: the CPU or GPU
    target's settings, or the dry run's tiny ones, which run the GPU path on CPU when no GPU is
    here. Also sets the CPU thread count and the offline mode."""
    offline()
    if args.device == "cpu" or args.dry_run:
        torch.set_num_threads(args.threads)
    settings = dict(gpu_target if args.device == "cuda" else cpu_target)
    device = torch.device(args.device)
    if args.dry_run:
        settings.update(dry_run)
        if not torch.cuda.is_available():
            device = torch.device("cpu")
    elif args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU here (use --dry-run to check the code path on CPU)")
    return settings, device


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    """One line: the device, thread count, torch version."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{what}; torch {torch.__version__}"


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU, None otherwise (then no MFU is reported)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in PEAK_BF16 if fragment in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(sides: dict[str, Callable[[int], float]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds per repeat for each side. ``sides[name](r)`` runs repeat r and returns the work
    it did (e.g. real tokens); here it is timed. The order of the sides alternates."""
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            synchronize(device)
            start = time.perf_counter()
            sides[name](r)
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [header] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return str(value)


def print_json(record: dict) -> None:
    """The last line of every benchmark: machine-readable results."""
    print(json.dumps(record, sort_keys=False))


def decoder_model(name: str, tiny_positions: int):
    """(lmforge config, transformers class that loads its export) of the decoder benchmarks'
    models: issue 10's CPU shape, GPT-2-small and Llama-3.2-1B's config for GPUs, and tiny
    ones (``tiny_positions`` positions) for dry runs."""
    import transformers

    from lmforge.families import get_preset
    from lmforge.families.gpt2 import gpt2_config

    if name == "gpt2-4x256":  # issue 10's CPU shape
        return gpt2_config(4, 256, 4), transformers.GPT2LMHeadModel
    if name == "gpt2-tiny":
        return (gpt2_config(2, 64, 2, vocab_size=1024, max_positions=tiny_positions, eos_token_id=None,
                            bos_token_id=None), transformers.GPT2LMHeadModel)
    if name == "gpt2":
        return get_preset("gpt2"), transformers.GPT2LMHeadModel
    if name == "llama-1b":  # Llama-3.2-1B's config in full: 16 layers, GQA 32/8, tied 128,256 vocab
        return get_preset("meta-llama/Llama-3.2-1B"), transformers.LlamaForCausalLM
    if name == "llama-tiny":
        return get_preset("llama-tiny").replace(max_positions=tiny_positions), transformers.LlamaForCausalLM
    raise SystemExit(f"unknown model {name}")


def seq2seq_model(name: str):
    """(lmforge config, transformers class that loads its export) of the encoder-decoder
    benchmarks: issue 11's CPU shape (BART-base's layout cut to 4+4 layers of hidden 256, full
    50,265 vocabulary), the real bart-base and t5-small for GPUs, and tiny ones for dry runs."""
    import transformers

    from lmforge.families import get_preset

    if name == "bart-4x256":  # issue 11's CPU shape
        config = get_preset("facebook/bart-base").replace(num_layers=4, num_decoder_layers=4, hidden_size=256,
                                                          num_heads=4, intermediate_size=1024)
        return config, transformers.BartForConditionalGeneration
    if name in ("bart-base", "bart-tiny"):
        return get_preset("facebook/bart-base" if name == "bart-base" else name), transformers.BartForConditionalGeneration
    if name in ("t5-small", "t5-tiny"):
        return get_preset(name), transformers.T5ForConditionalGeneration
    raise SystemExit(f"unknown model {name}")
