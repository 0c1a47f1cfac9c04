"""Beam-search decoding for encoder-decoders: ``lmforge.generation.generate_ids`` against
transformers' ``generate``, in one process.

    python benchmarks/seq2seq_decode.py                       # issue 11's CPU target (fp32, 2 threads)
    python benchmarks/seq2seq_decode.py --device cuda         # bart-base and t5-small, bf16
    python benchmarks/seq2seq_decode.py --device cuda --dry-run   # tiny BART and T5, on CPU if no GPU

Both sides decode with the same weights (lmforge builds a random model, transformers'
``BartForConditionalGeneration`` / ``T5ForConditionalGeneration`` loads its HF export, attention
"sdpa"), the same right-padded sources (lengths uniform in 16..200 tokens, ids uniform over the
vocabulary), and the same settings: beam search with 4 beams, length penalty 1.0,
``max_new_tokens`` 64, no end-of-sequence id (so every beam runs all 64 steps), KV cache on; the
encoder runs once, the decoder's cross-attention keys and values are computed once. Before timing,
the generated ids must be identical in fp32 (bf16 reports the share of equal tokens). Then
``--repeats`` rounds, the side going first alternating, medians of new tokens per second
(sources x 64 / wall time of the whole ``generate`` call, encoder included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved, machine, median, print_json, print_table, select_device, seq2seq_model  # noqa: E402

CPU_TARGET = dict(models=["bart-4x256"], sources=64, new_tokens=64, beams=4, repeats=3, warmup=1)
GPU_TARGET = dict(models=["bart-base", "t5-small"], sources=64, new_tokens=64, beams=4, repeats=3, warmup=1)
DRY_RUN = dict(models=["bart-tiny", "t5-tiny"], sources=4, new_tokens=6, beams=4, repeats=1, warmup=0)
SOURCE_LENGTHS = (16, 200)


def build_pair(config, reference_class, device: torch.device, dtype: torch.dtype):
    """(lmforge seq2seq_lm model, transformers model) with identical weights, in eval mode."""
    import lmforge

    ours = lmforge.build(config, task="seq2seq_lm", seed=0)
    with tempfile.TemporaryDirectory() as directory:
        lmforge.save(ours, directory, format="hf")
        reference = reference_class.from_pretrained(directory, attn_implementation="sdpa")
    generation = reference.generation_config
    generation.eos_token_id = generation.bos_token_id = generation.forced_bos_token_id = None
    generation.forced_eos_token_id = None
    return ours.to(device, dtype).eval(), reference.to(device, dtype).eval()


def make_sources(count: int, vocab: int, reserved: set[int], seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(SOURCE_LENGTHS[0], SOURCE_LENGTHS[1] + 1, (count,), generator=g)
    sources = []
    for n in lengths:
        ids = torch.randint(0, vocab, (int(n),), generator=g).tolist()
        sources.append([i if i not in reserved else vocab - 1 for i in ids])
    return sources


def ours_generate(model, sources, settings: dict, start: int, pad: int) -> list[list[int]]:
    from lmforge.generation import GenerationSettings, generate_ids

    search = GenerationSettings(max_new_tokens=settings["new_tokens"], num_beams=settings["beams"])
    return generate_ids(model, sources, search, pad_id=pad, decoder_start_token_id=start).sequences


def reference_generate(model, sources, settings: dict, start: int, pad: int, device: torch.device) -> list[list[int]]:
    width = max(len(s) for s in sources)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=settings["new_tokens"],
                             min_new_tokens=0, do_sample=False, num_beams=settings["beams"], length_penalty=1.0,
                             early_stopping=False, pad_token_id=pad, eos_token_id=None,
                             decoder_start_token_id=start, use_cache=True)
    return out[:, 1:].tolist()  # drop the decoder start token


def agreement(ours: list[list[int]], reference: list[list[int]]) -> float:
    same = sum(a == b for x, y in zip(ours, reference) for a, b in zip(x, y))
    return same / sum(len(y) for y in reference)


def benchmark(name: str, settings: dict, device: torch.device, dtype: torch.dtype) -> dict:
    config, reference_class = seq2seq_model(name)
    ours, reference = build_pair(config, reference_class, device, dtype)
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    start = config.decoder_start_token_id if getattr(config, "decoder_start_token_id", None) is not None else pad
    reserved = {pad, start} | ({config.eos_token_id} if config.eos_token_id is not None else set())
    sources = make_sources(settings["sources"], config.vocab_size, reserved, seed=0)
    ours_ids = ours_generate(ours, sources, settings, start, pad)
    reference_ids = reference_generate(reference, sources, settings, start, pad, device)
    same = agreement(ours_ids, reference_ids)
    if dtype == torch.float32 and ours_ids != reference_ids:
        raise SystemExit(f"{name}: generated ids differ ({100 * same:.1f}% equal)")
    sides = {"lmforge": lambda r: ours_generate(ours, sources, settings, start, pad),
             "transformers": lambda r: reference_generate(reference, sources, settings, start, pad, device)}
    for _ in range(settings["warmup"]):
        for side in sides.values():
            side(0)
    times = interleaved(sides, settings["repeats"], device)
    new_tokens = len(sources) * settings["new_tokens"]
    result = {"model": name, "sources": len(sources), "source_lengths": [len(s) for s in sources],
              "new_tokens": settings["new_tokens"], "beams": settings["beams"], "equal_tokens": same}
    for side, ts in times.items():
        result[side] = median([new_tokens / t for t in ts])
        result[f"{side}_s"] = median(ts)
    result["ratio"] = result["lmforge"] / result["transformers"]
    result["paired_ratio"] = median([b / a for a, b in zip(times["lmforge"], times["transformers"])])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--sources", type=int, help="inputs per generate call (default 64)")
    parser.add_argument("--new-tokens", type=int, help="max_new_tokens (default 64)")
    parser.add_argument("--beams", type=int, help="num_beams (default 4)")
    parser.add_argument("--repeats", type=int, help="timed rounds per side (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny BART and T5, few tokens, one repeat: with --device cuda and no GPU it runs "
                             "the GPU path (bf16) on CPU")
    args = parser.parse_args(argv)
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    for key, value in (("sources", args.sources), ("new_tokens", args.new_tokens), ("beams", args.beams),
                       ("repeats", args.repeats)):
        if value is not None:
            settings[key] = value
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    results = [benchmark(name, settings, device, dtype) for name in settings["models"]]
    rows = []
    for r in results:
        for side in ("lmforge", "transformers"):
            rows.append([f"{r['model']} {side}", r[side], r[f"{side}_s"]])
        rows.append([f"{r['model']} ratio", r["ratio"], f"paired {r['paired_ratio']:.2f}"])
    print_table(f"Beam search ({settings['beams']} beams), {settings['sources']} sources of {SOURCE_LENGTHS[0]}-"
                f"{SOURCE_LENGTHS[1]} tokens, {settings['new_tokens']} new tokens ({str(dtype).split('.')[-1]}; "
                f"{device.type}); repeats {settings['repeats']}; {machine(device)}",
                ["side", "new tokens/s", "s/generate"], rows)
    for r in results:
        print(f"{r['model']}: {100 * r['equal_tokens']:.1f}% of generated tokens equal")
    worst = min(results, key=lambda r: r["ratio"])
    print_json({"benchmark": "seq2seq_decode", "device": device.type, "machine": machine(device),
                "dry_run": args.dry_run, "dtype": str(dtype).split(".")[-1], "ours": worst["lmforge"],
                "reference": worst["transformers"], "ratio": worst["ratio"], "repeats": settings["repeats"],
                "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
