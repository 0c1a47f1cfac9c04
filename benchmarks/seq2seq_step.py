"""Denoising training steps for encoder-decoders: lmforge's BART objective against transformers'
BartForConditionalGeneration, in one process.

    python benchmarks/seq2seq_step.py                          # issue 11's CPU target (fp32, 2 threads)
    python benchmarks/seq2seq_step.py --device cuda            # bart-base, bf16
    python benchmarks/seq2seq_step.py --device cuda --dry-run  # the GPU path, tiny, on CPU if no GPU

Both sides start from the same weights (lmforge builds the model, transformers loads its HF
export, attention "sdpa") and see the same examples: each batch holds ``--documents`` documents
of uniformly drawn lengths (64..512 tokens on CPU), random ids, word starts drawn with
probability 0.7 and a sentence end every 12-40 tokens, noised by lmforge's
``DenoisingNoiser`` with text infilling on 30% of the word starts (Poisson(3) spans, one
``<mask>`` per span). The target is the clean ``<s> document </s>``; the decoder reads it
shifted right behind ``</s>`` (BART's decoder start). One step is forward, backward, gradient
clipping at 1.0, AdamW and zeroing the gradients:

* lmforge: ``Seq2SeqLMObjective`` (its collation, its loss) with ``unpad=True`` (both stacks
  see real tokens only) and the optimizer its Trainer builds;
* transformers: the same examples right-padded to the batch's longest source and target,
  ``labels`` -100 on padding (the model shifts them right itself), the optimizer transformers'
  ``Trainer`` builds by default (``adamw_torch_fused``, same no-decay split).

Before timing, the first batch's loss is compared in eval mode and fp32 (within 1e-4). Then
warm-up steps and ``--repeats`` rounds, the side going first rotating. Throughput counts real
target tokens (the clean documents with ``<s>``/``</s>``), the same count for both sides.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine, median, print_json, print_table, select_device, seq2seq_model  # noqa: E402
from pretrain_step import lmforge_optimizer, on, transformers_optimizer  # noqa: E402

IGNORE = -100
CPU_TARGET = dict(models=["bart-4x256"], documents=16, lengths=(64, 512), repeats=5, warmup=1)
GPU_TARGET = dict(models=["bart-base"], documents=32, lengths=(128, 1022), repeats=5, warmup=3)
DRY_RUN = dict(models=["bart-tiny"], documents=4, lengths=(8, 48), repeats=1, warmup=1)


def make_examples(count: int, settings: dict, config, seed: int) -> list[list[dict]]:
    """``count`` batches of noised examples ({input_ids, labels})."""
    from lmforge.objectives.denoising import DenoisingNoiser, noise_preset

    bos, pad, eos = 0, config.pad_token_id, config.eos_token_id
    mask = config.vocab_size - 1  # BART's <mask> is the last row
    noiser = DenoisingNoiser(noise_preset("text-infilling", mask=0.3), mask, config.vocab_size)
    rng = np.random.default_rng(seed)
    low, high = settings["lengths"]
    batches = []
    for _ in range(count):
        examples = []
        for n in rng.integers(low, high + 1, settings["documents"]):
            body = rng.integers(4, mask, n)  # no special token inside a document
            tokens = np.concatenate(([bos], body, [eos]))
            starts = rng.random(len(tokens)) < 0.7
            starts[0] = starts[1] = True
            ends = np.cumsum(rng.integers(12, 41, len(tokens)))
            ends = np.append(ends[ends < len(tokens) - 1], len(tokens) - 1)
            examples.append({"input_ids": noiser(tokens, starts, ends, rng), "labels": tokens})
        batches.append(examples)
    assert pad not in (bos, eos)
    return batches


def padded_batch(examples: list[dict], pad: int) -> dict[str, torch.Tensor]:
    """transformers' batch: sources and targets right-padded, labels -100 on padding."""
    def pad_rows(rows, value):
        width = max(len(r) for r in rows)
        return torch.tensor(np.stack([np.pad(r, (0, width - len(r)), constant_values=value) for r in rows]))

    sources = [e["input_ids"] for e in examples]
    ids = pad_rows(sources, pad)
    mask = pad_rows([np.ones(len(s), dtype=np.int64) for s in sources], 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": pad_rows([e["labels"] for e in examples], IGNORE)}


def build_pair(config, reference_class, device: torch.device):
    import lmforge

    ours = lmforge.build(config, task="seq2seq_lm", seed=0)
    with tempfile.TemporaryDirectory() as directory:
        lmforge.save(ours, directory, format="hf")
        reference = reference_class.from_pretrained(directory, attn_implementation="sdpa")
    return ours.to(device), reference.to(device)


def benchmark(name: str, settings: dict, device: torch.device, bf16: bool) -> dict:
    from lmforge.objectives.seq2seq import Seq2SeqLMObjective

    config, reference_class = seq2seq_model(name)
    objective = Seq2SeqLMObjective(config.pad_token_id, config.eos_token_id)
    pool = settings["warmup"] + settings["repeats"]
    examples = make_examples(pool, settings, config, seed=0)
    inputs = {"lmforge": [on(objective.collate(e), device) for e in examples],
              "transformers": [on(padded_batch(e, config.pad_token_id), device) for e in examples]}
    ours, reference = build_pair(config, reference_class, device)

    def ours_loss(batch):
        return objective.loss_sums(ours, batch, unpad=True)["lm"] / objective.counts(batch)["lm"]

    ours.eval(), reference.eval()
    with torch.no_grad():
        first = float(ours_loss(inputs["lmforge"][0])), float(reference(**inputs["transformers"][0]).loss)
    if abs(first[0] - first[1]) > 1e-4:
        raise SystemExit(f"{name}: first-batch loss {first[0]:.6f} (lmforge) vs {first[1]:.6f} (transformers)")
    optimizers = {"lmforge": lmforge_optimizer(ours, device), "transformers": transformers_optimizer(reference)}

    def finish(model, optimizer, loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ours_step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = ours_loss(batch)
        finish(ours, optimizers["lmforge"], loss)

    def reference_step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = reference(**batch).loss
        finish(reference, optimizers["transformers"], loss)

    steps = {"lmforge": ours_step, "transformers": reference_step}
    ours.train(), reference.train()
    warmup = settings["warmup"]
    for index in range(warmup):
        for side, step in steps.items():
            step(inputs[side][index])
    sides = {side: (lambda r, side=side: steps[side](inputs[side][warmup + r])) for side in steps}
    times = interleaved(sides, settings["repeats"], device)
    tokens = [sum(len(e["labels"]) for e in batch) for batch in examples[warmup:]]
    sources = [sum(len(e["input_ids"]) for e in batch) for batch in examples[warmup:]]
    result = {"model": name, "documents": settings["documents"], "lengths": list(settings["lengths"]),
              "loss_lmforge": first[0], "loss_transformers": first[1], "target_tokens_per_step": median(tokens),
              "source_tokens_per_step": median(sources)}
    for side, ts in times.items():
        result[side] = median([n / t for n, t in zip(tokens, ts)])
        result[f"{side}_step_s"] = median(ts)
    result["ratio"] = result["lmforge"] / result["transformers"]
    result["paired_ratio"] = median([b / a for a, b in zip(times["lmforge"], times["transformers"])])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", nargs="+", help="bart-4x256 (cpu default), bart-base (cuda default)")
    parser.add_argument("--documents", type=int, help="documents per batch (default 16 cpu, 32 cuda)")
    parser.add_argument("--repeats", type=int, help="timed steps per side (default 5)")
    parser.add_argument("--warmup", type=int, help="untimed steps per side first (default 1 cpu, 3 cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny BART, short documents, one repeat: with --device cuda and no GPU it runs the "
                             "GPU path (bf16 autocast, fused AdamW) on CPU")
    args = parser.parse_args(argv)
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    bf16 = args.device == "cuda"
    for key in ("models", "documents", "repeats", "warmup"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    results = [benchmark(name, settings, device, bf16) for name in settings["models"]]
    rows = []
    for r in results:
        for side in ("lmforge", "transformers"):
            rows.append([f"{r['model']} {side}", r[side], r[f"{side}_step_s"]])
        rows.append([f"{r['model']} ratio", r["ratio"], f"paired {r['paired_ratio']:.2f}"])
    low, high = settings["lengths"]
    print_table(f"Denoising training step (text infilling 30%), {settings['documents']} documents of {low}-{high} "
                f"tokens ({'bf16' if bf16 else 'fp32'}; {device.type}); repeats {settings['repeats']}; "
                f"{machine(device)}", ["side", "real tokens/s", "s/step"], rows)
    for r in results:
        print(f"{r['model']}: first-batch loss (eval, fp32) lmforge {r['loss_lmforge']:.6f}, "
              f"transformers {r['loss_transformers']:.6f}")
    worst = min(results, key=lambda r: r["ratio"])
    print_json({"benchmark": "seq2seq_step", "device": device.type, "machine": machine(device),
                "dry_run": args.dry_run, "ours": worst["lmforge"], "reference": worst["transformers"],
                "ratio": worst["ratio"], "repeats": settings["repeats"], "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
