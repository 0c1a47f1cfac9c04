"""ULMFiT's low-resource claim (Howard & Ruder 2018, section 5, Figure 3) measured on SST-2:
dev accuracy of the AWD-LSTM classifier with ULMFiT's three stages against the same classifier
trained from scratch on the same 100 or 1,000 labelled sentences.

    python benchmarks/ulmfit_sst2.py --corpus ../shared/data/corpus --sst2 ../shared/data/sst2 \\
        --out runs/ulmfit-sst2 --preset awd-lstm-tiny --vocab-size 8000 --stage1-minutes 60 --threads 2
    python benchmarks/ulmfit_sst2.py --dry-run --out /tmp/ulmfit-dry   # bundled samples, seconds

Stage 1 trains on the corpus (every .jsonl/.txt file of a directory, or one file) for at most
--stage1-minutes of wall time on --threads CPU threads: a few probe steps measure the training
rate, and the token budget is set so that one epoch fits (held-out evaluation is extra).
Stage 2 fine-tunes the LM on all SST-2 training sentences without their labels. Stage 3 trains
the classifier on the first N sentences of a seeded shuffle of the training set (N = 100 and
1,000; the same sentences for both sides), gradually unfrozen; the scratch side is the same
architecture, tokenizer and settings, randomly initialised and fully trained from epoch one at
one learning rate (no discriminative rates: there is no pretrained knowledge to protect).
Dev accuracy is on all 872 SST-2 dev sentences after the last epoch. Results: console, a JSON
file in --out and a markdown table for benchmarks/RESULTS.md.

The default is the tiny preset (embedding 64, hidden 128, fastai's dropouts) with an 8,000-piece
vocabulary: on 2 busy CPU threads the probe measured about 550 training tokens/s for it and
about 80 tokens/s for the full ``awd-lstm`` (400/1152, 30,000 pieces), which would see only
~0.3M tokens in an hour. ``--preset awd-lstm`` is there for a GPU or a longer budget.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, offline

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "data"


def corpus_files(path: Path) -> list[str]:
    if path.is_file():
        return [str(path)]
    files = sorted(str(p) for p in path.iterdir() if p.name.endswith((".jsonl", ".jsonl.xz", ".txt", ".txt.xz")))
    if not files:
        raise SystemExit(f"no .jsonl/.txt corpus files in {path}")
    return files


def sst2_files(path: Path) -> tuple[str, str]:
    train = next((path / name for name in ("train.tsv", "train.tsv.xz") if (path / name).is_file()), None)
    if train is None or not (path / "dev.tsv").is_file():
        raise SystemExit(f"{path} needs train.tsv (or .xz) and dev.tsv")
    return str(train), str(path / "dev.tsv")


def stage1_token_budget(config, vocab_size: int, minutes: float, device) -> tuple[int, float]:
    """(tokens one stage-1 epoch may read in ``minutes``, measured tokens/s) from a few
    training steps of a throwaway model of the same size."""
    from lmforge.lstm.awd_lstm import AWDLSTMLanguageModel, detach_state
    from lmforge.lstm.awd_lstm_config import preset
    from lmforge.finetune.ulmfit import optimizer_for

    model = AWDLSTMLanguageModel(preset(config.preset, vocab_size=vocab_size)).to(device).train()
    optimizer = optimizer_for(model, config.lm_lr, 1.0, config.weight_decay)
    ids = torch.randint(5, vocab_size, (config.batch_size, config.bptt + 1), device=device)
    state, timed, steps = None, 0.0, 6
    for step in range(steps + 2):  # two warm-up steps
        started = time.perf_counter()
        output = model(ids[:, :-1], state)
        state = detach_state(output.encoded.state)
        loss, _ = model.loss(output, ids[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optimizer.step()
        if step >= 2:
            timed += time.perf_counter() - started
    rate = steps * config.batch_size * config.bptt / timed
    return int(rate * minutes * 60), rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="../shared/data/corpus", help="stage 1 corpus: a directory or a file")
    parser.add_argument("--sst2", default="../shared/data/sst2", help="directory with train.tsv(.xz) and dev.tsv")
    parser.add_argument("--out", required=True, help="output directory (stage checkpoints, results.json)")
    parser.add_argument("--preset", default="awd-lstm-tiny", choices=["awd-lstm", "awd-lstm-tiny"])
    parser.add_argument("--vocab-size", type=int, default=8000, help="BPE vocabulary (default 8,000)")
    parser.add_argument("--stage1-minutes", type=float, default=60.0, help="wall-time budget of stage 1's training")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="stage 2 epochs over SST-2's training text")
    parser.add_argument("--classifier-epochs", type=int, default=10, help="stage 3 epochs (5 to unfreeze all groups)")
    parser.add_argument("--sizes", default="100,1000", help="labelled training sentences, comma-separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dry-run", action="store_true",
                        help="bundled samples and the tiny preset, a few seconds: checks the code path only")
    args = parser.parse_args()
    offline()
    torch.set_num_threads(args.threads)
    from lmforge.finetune.ulmfit import (UlmfitConfig, read_labelled, resolve_device, save_stage,
                                     stage1_pretrain, stage2_finetune, stage3_classifier)
    from lmforge.tasks import LabelMap

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty; choose another")
    if args.dry_run:
        general = [str(SAMPLES / "brown" / "brown-sample.jsonl")]
        train_file, dev_file = (str(SAMPLES / "glue-sample" / "sst2-train.tsv"), str(SAMPLES / "glue-sample" / "sst2-dev.tsv"))
        sizes = [10, 30]
        config = UlmfitConfig(preset="awd-lstm-tiny", vocab_size=300, batch_size=8, bptt=20, lm_epochs=1,
                              finetune_epochs=1, classifier_epochs=2, classifier_batch_size=8)
    else:
        general = corpus_files(Path(args.corpus))
        train_file, dev_file = sst2_files(Path(args.sst2))
        sizes = [int(n) for n in args.sizes.split(",")]
        config = UlmfitConfig(preset=args.preset, vocab_size=args.vocab_size, finetune_epochs=args.finetune_epochs,
                              classifier_epochs=args.classifier_epochs)
    config = replace(config, general=general, train=train_file, dev=dev_file, out=str(out), seed=args.seed,
                     device=args.device)
    device = resolve_device(config.device)
    budget_minutes = 0.05 if args.dry_run else args.stage1_minutes
    tokens, rate = stage1_token_budget(config, config.vocab_size, budget_minutes, device)
    config = replace(config, general_tokens=max(tokens, 2000))
    print(f"{machine(device)}\nstage 1 budget: {budget_minutes} min at {rate:,.0f} tok/s -> {config.general_tokens:,} tokens")

    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    language_model, tokenizer, history = stage1_pretrain(config, device)
    stage1 = {"wall_minutes": (time.perf_counter() - started) / 60, "cpu_minutes": (time.process_time() - cpu_started) / 60,
              "tokens": config.general_tokens, "corpus": general, "held_out_perplexity": history[-1]["held_out_perplexity"]}
    save_stage(language_model, tokenizer, out / "stage1-language-model", print)

    train_texts, train_names = read_labelled(train_file, None, None)
    dev_texts, dev_names = read_labelled(dev_file, None, None)
    labels = LabelMap.from_labels(train_names)
    dev = (dev_texts, [labels.id_of(x) for x in dev_names])
    history += stage2_finetune(language_model, tokenizer, train_texts, config)
    save_stage(language_model, tokenizer, out / "stage2-language-model", print)

    order = list(range(len(train_texts)))
    random.Random(args.seed).shuffle(order)
    results = []
    for size in sizes:
        chosen = order[:size]
        train = ([train_texts[i] for i in chosen], [labels.id_of(train_names[i]) for i in chosen])
        for side, source in (("ULMFiT", language_model), ("from scratch", None)):
            _, side_history = stage3_classifier(source, tokenizer, labels.labels, train, dev, config,
                                                name=f"{side}, {size} labels")
            results.append({"labelled": size, "side": side, "dev_accuracy": side_history[-1]["dev_accuracy"],
                            "epochs": side_history})
    summary = {"machine": machine(device), "command": " ".join(sys.argv), "stage1": stage1,
               "total_wall_minutes": (time.perf_counter() - started) / 60,
               "stage2_held_out_perplexity": history[-1]["held_out_perplexity"], "dev_examples": len(dev_texts),
               "config": {k: v for k, v in vars(config).items() if k not in ("general",)},
               "results": [{k: v for k, v in r.items() if k != "epochs"} for r in results], "history": history,
               "stage3": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nstage 1: {config.general_tokens:,} tokens in {stage1['wall_minutes']:.1f} wall min "
          f"({stage1['cpu_minutes']:.2f} CPU min), held-out perplexity {summary['stage1']['held_out_perplexity']:.1f}; "
          f"stage 2 held-out perplexity {summary['stage2_held_out_perplexity']:.1f}; "
          f"all stages {summary['total_wall_minutes']:.1f} wall min\n")
    print("| labelled sentences | ULMFiT dev accuracy | from scratch dev accuracy |\n|---|---|---|")
    for size in sizes:
        pair = {r["side"]: r["dev_accuracy"] for r in results if r["labelled"] == size}
        print(f"| {size:,} | {pair['ULMFiT']:.4f} | {pair['from scratch']:.4f} |")
    print(json.dumps(summary["results"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
