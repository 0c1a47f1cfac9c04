"""Quality per compute for encoder-decoders: a tiny BART (or T5) trained from scratch on
Multi30k de -> en for the same wall-clock budget by lmforge and by a plain transformers loop,
then test BLEU (sacreBLEU) of each side's own beam search.

    python benchmarks/seq2seq_budget.py ../shared/data/multi30k --minutes 10 --out runs/m30k-budget \
        --png benchmarks/seq2seq-budget-multi30k.png
    python benchmarks/seq2seq_budget.py ../shared/data/multi30k --dry-run --out /tmp/m30k-dry

One byte-level BPE vocabulary (``--vocab-size``, trained by lmforge on the German and English
training text together) serves both sides; each pair is ``<s> text </s>`` on both sides. Both
models start from the same weights (``--model`` preset with the vocabulary's size; transformers
loads lmforge's HF export) and see the same batches in the same order (``--batch-size`` pairs,
shuffled per epoch with one seed). Both follow one schedule of elapsed training time: AdamW at
``--lr`` after a linear warm-up over the first 4% of the budget, then a linear decay that reaches
zero exactly at the budget. Gradients are clipped at 1.0. The differences are only the
implementations:

* lmforge: ``Seq2SeqLMObjective`` (collation, loss) with ``unpad=True``, the optimizer its
  Trainer builds;
* transformers: ``BartForConditionalGeneration`` / ``T5ForConditionalGeneration`` on the batch
  right-padded, ``labels`` -100 on padding, its Trainer's default optimizer (fused AdamW).

The two sides run at the same time as two processes with ``--threads`` CPU threads each (1 by
default: on a 2-core machine each side has one core). Every ``--eval-every`` seconds the clock
stops for a held-out loss on the first 500 validation pairs; at the budget the test set
(test_2016_flickr, 1,000 pairs) is translated with beam 4 (``max_new_tokens`` 64) and scored with
sacreBLEU against the references. The table gives steps, final losses and BLEU; ``--png`` plots
held-out loss against training seconds for both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import offline, print_json, print_table  # noqa: E402

IGNORE = -100
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
WARMUP_SHARE = 0.04


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [" ".join(line.split()) for line in handle.read().splitlines()]


def read_split(data: Path, split: str, limit: int = 0) -> tuple[list[str], list[str]]:
    source, target = read_lines(data / f"{SPLITS[split]}.de.gz"), read_lines(data / f"{SPLITS[split]}.en.gz")
    if len(source) != len(target):
        raise SystemExit(f"{data}: {split} has {len(source)} German and {len(target)} English lines")
    return (source[:limit], target[:limit]) if limit else (source, target)


def train_tokenizer(data: Path, out: Path, vocab_size: int, limit: int) -> Path:
    from lmforge.tokenization import Tokenizer

    directory = out / "tokenizer"
    if (directory / "tokenizer.json").exists():
        return directory
    source, target = read_split(data, "train", limit)
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "train.txt"
        text.write_text("\n".join(source + target) + "\n")
        tokenizer = Tokenizer.train([text], kind="byte_bpe", vocab_size=vocab_size, lowercase=False,
                                    show_progress=False)
    tokenizer.save(directory)
    return directory


def model_config(name: str, tokenizer):
    from lmforge.families import get_preset

    config = get_preset(name).replace(vocab_size=tokenizer.backend.get_vocab_size(), pad_token_id=tokenizer.pad_id,
                                      eos_token_id=tokenizer.eos_id)
    if config.positions == "learned":
        config = config.replace(max_positions=130)  # Multi30k pairs are short; longer ones are cut
    return config


def encode(tokenizer, texts: list[str], limit: int = 128) -> list[np.ndarray]:
    rows = [tokenizer.encode(t)["input_ids"] for t in texts]
    return [np.asarray(r[: limit - 1] + r[-1:] if len(r) > limit else r, dtype=np.int64) for r in rows]


def padded(rows: list[np.ndarray], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor(np.stack([np.pad(r, (0, width - len(r)), constant_values=value) for r in rows]))


def run_side(args) -> dict:
    """One side's whole run (a subprocess of the benchmark): train for the budget, then evaluate."""
    import sacrebleu

    import lmforge
    from lmforge.generation import GenerationSettings, generate_ids
    from lmforge.objectives.seq2seq import Seq2SeqLMObjective
    from lmforge.tokenization import Tokenizer
    from pretrain_step import lmforge_optimizer, transformers_optimizer

    offline()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    tokenizer = Tokenizer.from_dir(out / "tokenizer")
    config = model_config(args.model, tokenizer)
    pad, eos = config.pad_token_id, config.eos_token_id
    start = eos if args.model.startswith("bart") else pad  # each family's decoder start token
    limit = 8 if args.dry_run else 0
    train_src, train_tgt = (encode(tokenizer, side) for side in read_split(Path(args.data), "train",
                                                                            args.batch_size * 6 if limit else 0))
    val_src, val_tgt = (encode(tokenizer, side) for side in read_split(Path(args.data), "val", limit or 500))
    test_de, test_en = read_split(Path(args.data), "test", limit)
    ours = lmforge.build(config, task="seq2seq_lm", seed=0)
    objective = Seq2SeqLMObjective(pad, start)
    if args.side == "lmforge":
        model, optimizer = ours, lmforge_optimizer(ours, torch.device("cpu"))
    else:
        import transformers

        reference_class = (transformers.BartForConditionalGeneration if args.model.startswith("bart")
                           else transformers.T5ForConditionalGeneration)
        with tempfile.TemporaryDirectory() as directory:
            lmforge.save(ours, directory, format="hf")
            model = reference_class.from_pretrained(directory, attn_implementation="sdpa")
        model.config.decoder_start_token_id = start
        optimizer = transformers_optimizer(model)
    for group in optimizer.param_groups:
        group["lr"] = 0.0

    def batch_of(indices, sources, targets) -> dict:
        examples = [{"input_ids": sources[i], "labels": targets[i]} for i in indices]
        if args.side == "lmforge":
            return objective.collate(examples)
        src = [e["input_ids"] for e in examples]
        return {"input_ids": padded(src, pad), "attention_mask": padded([np.ones(len(s), np.int64) for s in src], 0),
                "labels": padded([e["labels"] for e in examples], IGNORE)}

    def loss_of(batch) -> torch.Tensor:
        if args.side == "lmforge":
            return objective.loss_sums(model, batch, unpad=True)["lm"] / objective.counts(batch)["lm"]
        return model(**batch).loss

    def heldout_loss() -> float:
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for first in range(0, len(val_src), 100):
                indices = range(first, min(first + 100, len(val_src)))
                batch = batch_of(indices, val_src, val_tgt)
                tokens = int((batch["labels"] != IGNORE).sum())
                total, count = total + float(loss_of(batch)) * tokens, count + tokens
        model.train()
        return total / count

    budget = args.minutes * 60.0
    rng = np.random.default_rng(0)
    order, position, epoch = rng.permutation(len(train_src)), 0, 0
    curve, losses, steps, trained = [], [], 0, 0.0
    next_eval = 0.0
    model.train()
    while trained < budget:
        if trained >= next_eval:
            curve.append({"seconds": trained, "step": steps, "heldout_loss": heldout_loss()})
            next_eval += args.eval_every
        if position + args.batch_size > len(order):
            epoch += 1
            order, position = np.random.default_rng([0, epoch]).permutation(len(train_src)), 0
        batch = batch_of(order[position:position + args.batch_size], train_src, train_tgt)
        position += args.batch_size
        began = time.perf_counter()
        share = trained / budget
        lr = args.lr * (share / WARMUP_SHARE if share < WARMUP_SHARE else (1 - share) / (1 - WARMUP_SHARE))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        trained += time.perf_counter() - began
        steps += 1
    curve.append({"seconds": trained, "step": steps, "heldout_loss": heldout_loss()})

    model.eval()
    sources = [list(r) for r in encode(tokenizer, test_de)]
    hypotheses, began = [], time.perf_counter()
    for first in range(0, len(sources), args.eval_batch):
        chunk = sources[first:first + args.eval_batch]
        if args.side == "lmforge":
            settings = GenerationSettings(max_new_tokens=64, num_beams=4, eos_token_ids=(eos,))
            ids = generate_ids(model, chunk, settings, pad_id=pad, decoder_start_token_id=start).sequences
        else:
            src = [np.asarray(s) for s in chunk]
            with torch.inference_mode():
                generated = model.generate(input_ids=padded(src, pad),
                                           attention_mask=padded([np.ones(len(s), np.int64) for s in src], 0),
                                           max_new_tokens=64, num_beams=4, do_sample=False, eos_token_id=eos,
                                           pad_token_id=pad, decoder_start_token_id=start, forced_bos_token_id=None,
                                           forced_eos_token_id=None, length_penalty=1.0, early_stopping=False)
            ids = generated[:, 1:].tolist()
        hypotheses += [tokenizer.decode(i, skip_special_tokens=True).strip() for i in ids]
    bleu = sacrebleu.corpus_bleu(hypotheses, [test_en]).score
    record = {"side": args.side, "model": args.model, "minutes": args.minutes, "threads": args.threads,
              "steps": steps, "epochs": steps * args.batch_size / len(train_src),
              "train_loss_last100": float(np.mean(losses[-100:])), "heldout_loss": curve[-1]["heldout_loss"],
              "test_bleu": bleu, "translate_s": time.perf_counter() - began, "curve": curve,
              "examples": list(zip(test_de[:3], hypotheses[:3], test_en[:3]))}
    (out / f"{args.side}.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return record


def plot(records: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for record in records:
        points = record["curve"]
        axis.plot([p["seconds"] for p in points], [p["heldout_loss"] for p in points], marker=".",
                  label=f"{record['side']} ({record['steps']} steps, test BLEU {record['test_bleu']:.1f})")
    axis.set_xlabel("training seconds (1 CPU thread each)")
    axis.set_ylabel("held-out loss (Multi30k val, 500 pairs)")
    axis.set_title(f"{records[0]['model']} from scratch on Multi30k de-en, {records[0]['minutes']:g} min each")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the Multi30k directory (train/val/test_2016_flickr .de.gz/.en.gz)")
    parser.add_argument("--out", required=True, help="directory for the tokenizer and each side's results")
    parser.add_argument("--model", default="bart-tiny", choices=["bart-tiny", "t5-tiny"])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per side (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per side (default 1; both run at once)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    parser.add_argument("--vocab-size", type=int, default=8000, help="joint BPE vocabulary (default 8000)")
    parser.add_argument("--eval-every", type=float, default=60.0, help="held-out loss every N training seconds")
    parser.add_argument("--eval-batch", type=int, default=50, help="test sources per generate call")
    parser.add_argument("--png", help="write the held-out loss curves here")
    parser.add_argument("--side", choices=["lmforge", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="a few seconds on a few pairs: checks the code path")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.minutes, args.eval_every, args.vocab_size = min(args.minutes, 0.1), 3.0, min(args.vocab_size, 1000)
    if args.side:
        run_side(args)
        return 0
    out = Path(args.out)
    if out.exists() and any(out.glob("*.json")):
        raise SystemExit(f"{out} already holds results; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer(Path(args.data), out, args.vocab_size, 2000 if args.dry_run else 0)
    command = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:])]
    sides = [subprocess.Popen([*command, "--side", side]) for side in ("lmforge", "transformers")]
    if any(side.wait() != 0 for side in sides):
        raise SystemExit("a side failed (see above)")
    records = [json.loads((out / f"{side}.json").read_text()) for side in ("lmforge", "transformers")]
    rows = [[r["side"], r["steps"], f"{r['epochs']:.2f}", f"{r['train_loss_last100']:.3f}", f"{r['heldout_loss']:.3f}",
             f"{r['test_bleu']:.2f}"] for r in records]
    print_table(f"{args.model} from scratch on Multi30k de->en, {args.minutes:g} min of training per side, "
                f"{args.threads} thread(s) each, batch {args.batch_size}, lr {args.lr:g}",
                ["side", "steps", "epochs", "train loss", "held-out loss", "test BLEU"], rows)
    for r in records:
        print(f"{r['side']}: {r['examples'][0][1]!r} (reference {r['examples'][0][2]!r})")
    if args.png:
        plot(records, Path(args.png))
        print(f"wrote {args.png}")
    print_json({"benchmark": "seq2seq_budget", "dry_run": args.dry_run, "model": args.model, "minutes": args.minutes,
                "lmforge": {k: v for k, v in records[0].items() if k != "curve"},
                "transformers": {k: v for k, v in records[1].items() if k != "curve"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
