"""ELMo biLM training throughput (issue 12): tokens per second of lmforge's ``bilm`` objective on
the ``elmo-small`` preset (AllenNLP's 2x1024_128_2048cnn_1xhighway), full training steps.

    python benchmarks/elmo_throughput.py                  # the CPU measurement
    python benchmarks/elmo_throughput.py --dry-run        # tiny, seconds: checks the code path
    python benchmarks/elmo_throughput.py --device cuda    # the same step on a GPU (fp32)

The setting is bilm-tf's (Peters et al. 2018 trained on the 1B Word Benchmark): a vocabulary of
793,471 words, sampled softmax with 8,192 log-uniform candidates per batch, blocks of 20
tokens (its unroll length), dropout 0.1, cell and projection clipping 3. Inputs are random
blocks of ids drawn from the same log-uniform distribution (a frequency-sorted vocabulary's
shape), framed as the ``bilm`` objective frames sentences (lengths 5..30); the character table
spells each id as a random 3..12-byte word. One step is the objective's forward and backward
over both LMs, gradient clipping at 1.0, AdamW (fused, as lmforge's Trainer builds it) and
zeroing the gradients. Tokens per second counts every block position (each is read by both
LMs). Warm-up steps are untimed; the median of ``--repeats`` rounds is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, median, print_json, print_table, select_device, synchronize

CPU_TARGET = dict(preset="elmo-small", vocab=793_471, samples=8192, batch=32, block=20, repeats=5, steps=2, warmup=1)
GPU_TARGET = dict(preset="elmo-small", vocab=793_471, samples=8192, batch=128, block=20, repeats=5, steps=5, warmup=2)
DRY_RUN = dict(preset="elmo-tiny", vocab=2000, samples=256, batch=4, block=8, repeats=2, steps=1, warmup=1)
BOS, EOS, PAD = 1, 2, 0


def random_blocks(rng: np.random.Generator, batch: int, block: int, vocab: int) -> torch.Tensor:
    """<S> w ... </S> sentences of 5..30 log-uniform ids, concatenated and cut into blocks."""
    need, stream = batch * block, []
    while len(stream) < need:
        words = np.floor(np.exp(rng.random(rng.integers(5, 31)) * np.log(vocab + 1))).astype(np.int64) - 1
        stream += [BOS, *np.clip(words, 3, vocab - 1).tolist(), EOS]
    return torch.tensor(stream[:need]).reshape(batch, block)


def build(settings: dict, device: torch.device, seed: int = 0):
    from lmforge.lstm.elmo import (
        BOS_CHAR,
        EOS_CHAR,
        ElmoBiLM,
        boundary_char_ids,
        get_elmo_preset,
    )
    from lmforge.lstm.elmo_training import BiLMObjective
    from lmforge.training.loop import param_groups

    config = get_elmo_preset(settings["preset"]).replace(vocab_size=settings["vocab"], bos_id=BOS, eos_id=EOS,
                                                         pad_id=PAD, sampled_softmax=settings["samples"])
    torch.manual_seed(seed)
    model = ElmoBiLM(config)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 13, settings["vocab"])
    table = np.full((settings["vocab"], config.max_characters_per_token), 261, dtype=np.int64)
    table[:, 0] = 259
    for i, n in enumerate(lengths):
        table[i, 1:n + 1] = rng.integers(98, 124, n)
        table[i, n + 1] = 260
    table[BOS], table[EOS], table[PAD] = boundary_char_ids(BOS_CHAR), boundary_char_ids(EOS_CHAR), 0
    model.vocab_char_ids.copy_(torch.from_numpy(table))
    model.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, fused=True)
    return model, BiLMObjective(PAD, BOS, EOS), optimizer


def train_step(model, objective, optimizer, batch: dict) -> float:
    terms = objective.loss_sums(model, batch, False)
    loss = terms["bilm"] / objective.counts(batch)["bilm"]
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--batch-size", type=int, help="blocks per step (default 32 cpu, 128 cuda)")
    parser.add_argument("--vocab", type=int, help="softmax vocabulary (default 793,471, the 1B Word Benchmark's)")
    parser.add_argument("--samples", type=int, help="sampled-softmax candidates (default 8192; 0: full softmax)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5)")
    parser.add_argument("--dry-run", action="store_true", help="elmo-tiny, a few tiny steps: checks the code path")
    args = parser.parse_args()
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    for key, value in (("batch", args.batch_size), ("vocab", args.vocab), ("samples", args.samples),
                       ("repeats", args.repeats)):
        if value is not None:
            settings[key] = value
    model, objective, optimizer = build(settings, device)
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(1)

    def batch() -> dict:
        ids = random_blocks(rng, settings["batch"], settings["block"], settings["vocab"])
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}

    for _ in range(settings["warmup"]):
        train_step(model, objective, optimizer, batch())
    rounds, losses = [], []
    tokens = settings["batch"] * settings["block"] * settings["steps"]
    for _ in range(settings["repeats"]):
        batches = [batch() for _ in range(settings["steps"])]
        synchronize(device)
        start = time.perf_counter()
        for b in batches:
            losses.append(train_step(model, objective, optimizer, b))
        synchronize(device)
        rounds.append(tokens / (time.perf_counter() - start))
    tokens_per_second = median(rounds)
    print(f"{machine(device)}")
    print_table(f"ELMo biLM training ({settings['preset']}, {params:,} parameters with a {settings['vocab']:,}-word "
                f"softmax, {settings['samples']} samples)",
                ["model", "batch x block", "steps/round", "tokens/s (median)", "min", "max"],
                [[settings["preset"], f"{settings['batch']} x {settings['block']}", settings["steps"],
                  tokens_per_second, min(rounds), max(rounds)]])
    print_json({"benchmark": "elmo_throughput", "device": str(device), "dry_run": args.dry_run,
                "machine": machine(device), **settings, "parameters": params,
                "tokens_per_second": tokens_per_second, "rounds": rounds, "last_loss": losses[-1]})


if __name__ == "__main__":
    main()
