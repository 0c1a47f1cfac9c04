"""Greedy decoding: ``lmforge.generation.generate_ids`` against transformers' ``generate``, in one process.

    python benchmarks/decode.py                       # issue 10's CPU target (fp32, 2 threads)
    python benchmarks/decode.py --device cuda         # GPT-2-small and Llama-3.2-1B's shape, bf16
    python benchmarks/decode.py --device cuda --dry-run   # the GPU path, tiny, on CPU if no GPU

Both sides decode with the same weights (lmforge builds a random model, transformers'
``GPT2LMHeadModel`` / ``LlamaForCausalLM`` loads its HF export, attention "sdpa"), the same
left-padded prompts (lengths uniform in 16..200 tokens, ids uniform over the vocabulary) and
the same settings: greedy, ``max_new_tokens`` 128, no end-of-sequence id (so every row runs all
128 steps), KV cache on. Before timing, each side's generated ids are compared: on CPU in fp32
they must be identical; in bf16 rounding differs between the two implementations and an argmax
may flip, after which greedy paths part, so the share of equal tokens is reported instead.
Then ``--repeats`` rounds per batch size, the side going first alternating, medians of new
tokens per second (batch x 128 / wall time of the whole ``generate`` call, prefill included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import decoder_model, interleaved, machine, median, print_json, print_table, select_device  # noqa: E402

CPU_TARGET = dict(models=["gpt2-4x256"], batches=[1, 8], new_tokens=128, repeats=5, warmup=1)
GPU_TARGET = dict(models=["gpt2", "llama-1b"], batches=[1, 8, 64], new_tokens=128, repeats=3, warmup=1)
DRY_RUN = dict(models=["gpt2-tiny", "llama-tiny"], batches=[1, 4], new_tokens=8, repeats=1, warmup=0)
PROMPT_LENGTHS = (16, 200)


def build_pair(config, reference_class, device: torch.device, dtype: torch.dtype):
    """(lmforge ForCausalLM, transformers model) with identical weights, in eval mode."""
    import lmforge

    ours = lmforge.build(config, task="causal_lm", seed=0)
    with tempfile.TemporaryDirectory() as directory:
        lmforge.save(ours, directory, format="hf")
        reference = reference_class.from_pretrained(directory, attn_implementation="sdpa")
    reference.generation_config.eos_token_id = None  # run every row to max_new_tokens
    reference.generation_config.bos_token_id = None
    return ours.to(device, dtype).eval(), reference.to(device, dtype).eval()


def make_prompts(batch: int, vocab: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(PROMPT_LENGTHS[0], PROMPT_LENGTHS[1] + 1, (batch,), generator=g)
    return [torch.randint(0, vocab, (int(n),), generator=g).tolist() for n in lengths]


def ours_generate(model, prompts, new_tokens: int, pad: int) -> list[list[int]]:
    from lmforge.generation import GenerationSettings, generate_ids

    settings = GenerationSettings(max_new_tokens=new_tokens)  # greedy, no end id
    return generate_ids(model, prompts, settings, pad_id=pad).sequences


def reference_generate(model, prompts, new_tokens: int, pad: int, device: torch.device) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=0,
                             do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=None, use_cache=True)
    return out[:, width:].tolist()


def agreement(ours: list[list[int]], reference: list[list[int]]) -> float:
    """Share of positions where both sides generated the same token."""
    same = sum(a == b for x, y in zip(ours, reference) for a, b in zip(x, y))
    return same / sum(len(y) for y in reference)


def benchmark(name: str, batches: list[int], settings: dict, device: torch.device, dtype: torch.dtype) -> list[dict]:
    config, reference_class = decoder_model(name, tiny_positions=512)
    ours, reference = build_pair(config, reference_class, device, dtype)
    pad = 0
    new_tokens = settings["new_tokens"]
    results = []
    for batch in batches:
        prompts = make_prompts(batch, config.vocab_size, seed=batch)
        ours_ids = ours_generate(ours, prompts, new_tokens, pad)
        reference_ids = reference_generate(reference, prompts, new_tokens, pad, device)
        same = agreement(ours_ids, reference_ids)
        if dtype == torch.float32 and ours_ids != reference_ids:
            raise SystemExit(f"{name} batch {batch}: generated ids differ ({100 * same:.1f}% equal)")
        sides = {"lmforge": lambda r, prompts=prompts: ours_generate(ours, prompts, new_tokens, pad),
                 "transformers": lambda r, prompts=prompts: reference_generate(reference, prompts, new_tokens,
                                                                               pad, device)}
        for _ in range(settings["warmup"]):
            for side in sides.values():
                side(0)
        times = interleaved(sides, settings["repeats"], device)
        result = {"model": name, "batch_size": batch, "prompt_lengths": [len(p) for p in prompts],
                  "new_tokens": new_tokens, "equal_tokens": same}
        for side, ts in times.items():
            result[side] = median([batch * new_tokens / t for t in ts])
            result[f"{side}_s"] = median(ts)
        result["ratio"] = result["lmforge"] / result["transformers"]
        result["paired_ratio"] = median([b / a for a, b in zip(times["lmforge"], times["transformers"])])
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, nargs="+", help="prompts per generate call (default 1 8 cpu)")
    parser.add_argument("--new-tokens", type=int, help="max_new_tokens (default 128)")
    parser.add_argument("--repeats", type=int, help="timed rounds per side and batch size (default 5 cpu, 3 cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny GPT-2 and LLaMA, few tokens, one repeat: with --device cuda and no GPU it runs "
                             "the GPU path (bf16) on CPU")
    args = parser.parse_args(argv)
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    for key, value in (("batches", args.batch_size), ("new_tokens", args.new_tokens), ("repeats", args.repeats)):
        if value is not None:
            settings[key] = value
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    results = [r for name in settings["models"] for r in benchmark(name, settings["batches"], settings, device, dtype)]
    rows = []
    for r in results:
        for side in ("lmforge", "transformers"):
            rows.append([f"{r['model']} {side} batch {r['batch_size']}", r[side], r[f"{side}_s"]])
        rows.append([f"{r['model']} ratio batch {r['batch_size']}", r["ratio"], f"paired {r['paired_ratio']:.2f}"])
    print_table(f"Greedy decoding, {settings['new_tokens']} new tokens, prompts {PROMPT_LENGTHS[0]}-"
                f"{PROMPT_LENGTHS[1]} ({str(dtype).split('.')[-1]}; {device.type}); repeats {settings['repeats']}; "
                f"{machine(device)}", ["side", "new tokens/s", "s/generate"], rows)
    for r in results:
        print(f"{r['model']} batch {r['batch_size']}: {100 * r['equal_tokens']:.1f}% of generated tokens equal")
    worst = min(results, key=lambda r: r["ratio"])
    print_json({"benchmark": "decode", "device": device.type, "machine": machine(device), "dry_run": args.dry_run,
                "dtype": str(dtype).split(".")[-1], "ours": worst["lmforge"], "reference": worst["transformers"],
                "ratio": worst["ratio"], "repeats": settings["repeats"], "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
