"""Causal-LM training steps: lmforge's ``clm`` objective against transformers' GPT2LMHeadModel /
LlamaForCausalLM, in one process.

    python benchmarks/clm_step.py                          # issue 10's CPU target (GPT-2 shape, fp32)
    python benchmarks/clm_step.py --device cuda            # GPT-2-small and Llama-3.2-1B's shape, bf16
    python benchmarks/clm_step.py --device cuda --dry-run  # the GPU path, tiny, on CPU if no GPU

Both sides start from the same weights (lmforge builds the model, transformers loads its HF
export, attention "sdpa") and see the same documents: each batch holds ``--documents``
documents of uniformly drawn lengths (64..512 tokens on CPU), random ids. One step is forward,
backward, gradient clipping at 1.0, AdamW and zeroing the gradients:

* lmforge, ``CausalLMObjective`` with ``unpad=True`` and the optimizer its Trainer builds
  (AdamW, no decay on biases and norm weights, fused on GPU only), two ways, as the ``clm``
  objective prepares data (``lmforge.objectives.clm.shifted_targets``):

  - ``packed``: the documents, each followed by the end-of-text separator, concatenated and
    cut into blocks of ``--block`` tokens (GPT-2 style; attention crosses document joins; the
    last block is cut short and padded, so no document token is dropped);
  - ``documents``: the same blocks with ``document_ids``: attention and positions stay inside
    each document (the unpadded layout's varlen packing).

* transformers: each document its own row, padded to the batch's longest, labels -100 on
  padding; the optimizer transformers' ``Trainer`` builds by default (``adamw_torch_fused``,
  the same no-decay split).

Before timing, the first batch's loss is compared in eval mode and fp32: lmforge's objective on
the very batch transformers gets (padded documents) must agree within 1e-4. Then warm-up steps
and ``--repeats`` rounds, the side going first rotating. Throughput counts document tokens only
(not separators, not padding), the same count for every side. GPU runs use bf16 autocast.

Model FLOPs per step (for MFU on GPU), counted on the N document tokens, the same for every
side (attention counted per document and without halving for the causal mask, as PaLM's
appendix B does):

    6 * P * N                      P: parameters of the transformer layers (not embeddings)
  + 12 * L * H * sum_i T_i^2       attention scores and weighted values of each document of
                                      length T_i (forward 4*T*H per token and layer, x3)
  + 6 * H * V * N                  the vocabulary projection on every token

MFU = FLOPs / seconds / peak, with the dense bf16 peak of the detected GPU (989 TFLOP/s for
H100 SXM and H200).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import decoder_model, interleaved, machine, median, peak_flops, print_json, print_table, select_device  # noqa: E402
from pretrain_step import lmforge_optimizer, on, transformers_optimizer  # noqa: E402

IGNORE = -100
CPU_TARGET = dict(models=["gpt2-4x256"], documents=16, lengths=(64, 512), block=512, repeats=5, warmup=1)
GPU_TARGET = dict(models=["gpt2", "llama-1b"], documents=32, lengths=(128, 1024), block=1024, repeats=5, warmup=3)
DRY_RUN = dict(models=["gpt2-tiny", "llama-tiny"], documents=4, lengths=(8, 48), block=32, repeats=1, warmup=1)


def separator_id(config) -> int:
    return config.eos_token_id if config.eos_token_id is not None else config.vocab_size - 1


def make_documents(count: int, settings: dict, vocab: int, separator: int, seed: int) -> list[list[np.ndarray]]:
    """``count`` batches of documents (random ids other than the separator)."""
    rng = np.random.default_rng(seed)
    low, high = settings["lengths"]
    batches = []
    for _ in range(count):
        lengths = rng.integers(low, high + 1, settings["documents"])
        docs = [rng.integers(0, vocab, n) for n in lengths]
        batches.append([np.where(d == separator, (separator + 1) % vocab, d) for d in docs])
    return batches


def padded_batch(docs: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """transformers' batch: one document per row, right-padded, labels -100 on padding."""
    width = max(len(d) for d in docs)
    ids = torch.zeros(len(docs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)] = torch.from_numpy(doc)
        mask[row, : len(doc)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, IGNORE)}


def shifted(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The padded batch with lmforge's per-position targets (token t scored against t + 1)."""
    labels = torch.full_like(batch["labels"], IGNORE)
    labels[:, :-1] = batch["labels"][:, 1:]
    return {**batch, "labels": labels}


def packed_batch(docs: list[np.ndarray], block: int, separator: int, document_attention: bool) -> dict:
    """The clm objective's blocks: ``doc <sep> doc <sep> ...`` cut every ``block`` tokens,
    targets (and document pieces) from ``shifted_targets``; the last block padded."""
    from lmforge.objectives.clm import shifted_targets

    stream = np.concatenate([np.append(d, separator) for d in docs])
    rows = -(-len(stream) // block)
    ids = np.full((rows, block), separator, dtype=np.int64)
    mask = np.zeros((rows, block), dtype=np.int64)
    labels = np.full((rows, block), IGNORE, dtype=np.int64)
    pieces = np.zeros((rows, block), dtype=np.int64)
    for row in range(rows):
        chunk = stream[row * block:(row + 1) * block]
        ids[row, : len(chunk)], mask[row, : len(chunk)] = chunk, 1
        targets, document_ids = shifted_targets(chunk, separator, document_attention)
        labels[row, : len(chunk)] = targets
        if document_ids is not None:
            pieces[row, : len(chunk)] = document_ids
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
             "labels": torch.from_numpy(labels)}
    if document_attention:
        batch["document_ids"] = torch.from_numpy(pieces)
    return batch


def build_pair(config, reference_class, device: torch.device):
    """(lmforge ForCausalLM, transformers model) with identical weights."""
    import lmforge

    ours = lmforge.build(config, task="causal_lm", seed=0)
    with tempfile.TemporaryDirectory() as directory:
        lmforge.save(ours, directory, format="hf")
        reference = reference_class.from_pretrained(directory, attn_implementation="sdpa")
    return ours.to(device), reference.to(device)


def check_losses(ours, reference, batch: dict) -> tuple[float, float]:
    """First-batch loss of both models on the same padded documents, eval mode, fp32."""
    from lmforge.objectives.clm import CausalLMObjective

    objective = CausalLMObjective()
    ours.eval(), reference.eval()
    ours_batch = shifted(batch)
    with torch.no_grad():
        ours_loss = objective.loss_sums(ours, ours_batch, unpad=True)["lm"] / objective.counts(ours_batch)["lm"]
        reference_loss = reference(**batch).loss
    return float(ours_loss), float(reference_loss)


def model_flops(lengths: list[int], config, layer_params: int) -> float:
    """Useful FLOPs of one training step on documents of ``lengths`` (see the module docstring)."""
    n = float(sum(lengths))
    hidden = config.hidden_size
    return (6 * layer_params * n + 12 * config.num_layers * hidden * float(sum(t * t for t in lengths))
            + 6 * hidden * config.vocab_size * n)


def benchmark(name: str, settings: dict, device: torch.device, bf16: bool) -> dict:
    from lmforge.objectives.clm import CausalLMObjective

    config, reference_class = decoder_model(name, tiny_positions=128)
    separator = separator_id(config)
    pool = settings["warmup"] + settings["repeats"]
    documents = make_documents(pool, settings, config.vocab_size, separator, seed=0)
    inputs = {
        "transformers": [on(padded_batch(d), device) for d in documents],
        "lmforge packed": [on(packed_batch(d, settings["block"], separator, False), device) for d in documents],
        "lmforge documents": [on(packed_batch(d, settings["block"], separator, True), device) for d in documents],
    }
    ours, reference = build_pair(config, reference_class, device)
    ours_loss, reference_loss = check_losses(ours, reference, inputs["transformers"][0])
    if abs(ours_loss - reference_loss) > 1e-4:
        raise SystemExit(f"{name}: first-batch loss {ours_loss:.6f} (lmforge) vs {reference_loss:.6f} (transformers)")
    objective = CausalLMObjective()
    optimizers = {"lmforge": lmforge_optimizer(ours, device), "transformers": transformers_optimizer(reference)}

    def finish(model, optimizer, loss):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def ours_step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = objective.loss_sums(ours, batch, unpad=True)["lm"] / objective.counts(batch)["lm"]
        finish(ours, optimizers["lmforge"], loss)

    def reference_step(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = reference(**batch).loss
        finish(reference, optimizers["transformers"], loss)

    steps = {"lmforge packed": ours_step, "lmforge documents": ours_step, "transformers": reference_step}
    ours.train(), reference.train()
    warmup = settings["warmup"]
    for index in range(warmup):
        for side, step in steps.items():
            step(inputs[side][index])
    sides = {side: (lambda r, side=side: steps[side](inputs[side][warmup + r])) for side in steps}
    times = interleaved(sides, settings["repeats"], device)

    lengths = [[len(d) for d in docs] for docs in documents[warmup:]]
    tokens = [sum(ls) for ls in lengths]
    layer_params = sum(p.numel() for p in ours.backbone.stack.layers.parameters())
    flops = [model_flops(ls, config, layer_params) for ls in lengths]
    peak = peak_flops(device)
    result = {"model": name, "documents": settings["documents"], "lengths": list(settings["lengths"]),
              "block": settings["block"], "loss_lmforge": ours_loss, "loss_transformers": reference_loss,
              "tokens_per_step": median(tokens)}
    for side, ts in times.items():
        result[side] = median([n / t for n, t in zip(tokens, ts)])
        result[f"{side}_step_s"] = median(ts)
        if peak:
            result[f"{side}_mfu"] = median([f / t / peak for f, t in zip(flops, ts)])
    for side in ("lmforge packed", "lmforge documents"):
        key = side.split()[1]
        result[f"ratio_{key}"] = result[side] / result["transformers"]
        result[f"paired_ratio_{key}"] = median([b / a for a, b in zip(times[side], times["transformers"])])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--models", nargs="+", help="gpt2-4x256 (cpu default), gpt2, llama-1b (cuda default)")
    parser.add_argument("--documents", type=int, help="documents per batch (default 16 cpu, 32 cuda)")
    parser.add_argument("--block", type=int, help="lmforge's block length (default 512 cpu, 1024 cuda)")
    parser.add_argument("--repeats", type=int, help="timed steps per side (default 5)")
    parser.add_argument("--warmup", type=int, help="untimed steps per side first (default 1 cpu, 3 cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny GPT-2 and LLaMA, short documents, one repeat: with --device cuda and no GPU it "
                             "runs the GPU path (bf16 autocast, fused AdamW) on CPU")
    args = parser.parse_args(argv)
    settings, device = select_device(args, CPU_TARGET, GPU_TARGET, DRY_RUN)
    bf16 = args.device == "cuda"
    for key in ("models", "documents", "block", "repeats", "warmup"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    results = [benchmark(name, settings, device, bf16) for name in settings["models"]]
    rows = []
    for r in results:
        for side in ("lmforge packed", "lmforge documents", "transformers"):
            rows.append([f"{r['model']} {side}", r[side], r[f"{side}_step_s"],
                         f"{100 * r[f'{side}_mfu']:.1f}%" if f"{side}_mfu" in r else "-"])
        for key in ("packed", "documents"):
            rows.append([f"{r['model']} ratio {key}", r[f"ratio_{key}"], f"paired {r[f'paired_ratio_{key}']:.2f}", ""])
    low, high = settings["lengths"]
    print_table(f"Causal-LM training step, {settings['documents']} documents of {low}-{high} tokens "
                f"({'bf16' if bf16 else 'fp32'}; {device.type}); repeats {settings['repeats']}; {machine(device)}",
                ["side", "real tokens/s", "s/step", "MFU"], rows)
    for r in results:
        print(f"{r['model']}: first-batch loss (eval, fp32) lmforge {r['loss_lmforge']:.6f}, "
              f"transformers {r['loss_transformers']:.6f}")
    worst = min(results, key=lambda r: max(r["ratio_packed"], r["ratio_documents"]))
    best_side = "lmforge packed" if worst["ratio_packed"] >= worst["ratio_documents"] else "lmforge documents"
    print_json({"benchmark": "clm_step", "device": device.type, "machine": machine(device), "dry_run": args.dry_run,
                "ours": worst[best_side], "reference": worst["transformers"],
                "ratio": worst[best_side] / worst["transformers"], "repeats": settings["repeats"], "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
