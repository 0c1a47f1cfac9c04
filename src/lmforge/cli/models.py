"""Model subcommands: presets, convert, fill-mask, features."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmforge.errors import UserError


def register(subparsers) -> None:
    presets = subparsers.add_parser("presets", help="list model presets with their sizes")
    presets.set_defaults(func=run_presets)

    convert = subparsers.add_parser("convert", help="convert checkpoints to and from Hugging Face layout")
    convert_sub = convert.add_subparsers(dest="direction", metavar="DIRECTION", required=True)
    for direction, text in (("from-hf", "Hugging Face directory or hub id -> lmforge checkpoint"),
                            ("to-hf", "lmforge checkpoint -> Hugging Face directory (config.json + model.safetensors)")):
        p = convert_sub.add_parser(direction, help=text, description=text)
        p.add_argument("src", help="source checkpoint directory (or hub id for from-hf)")
        p.add_argument("out", help="output directory (created)")
        p.set_defaults(func=run_convert)

    fill = subparsers.add_parser("fill-mask", help="predict the tokens hidden behind [MASK]",
                                 description="Print the top-k tokens with probabilities for each [MASK] in TEXT.")
    fill.add_argument("text", help='a sentence with [MASK] in it, e.g. "the capital of france is [MASK]."')
    fill.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF) with an MLM head")
    fill.add_argument("--top-k", type=int, default=5, help="how many candidates to show (default 5)")
    fill.set_defaults(func=run_fill_mask)

    features = subparsers.add_parser(
        "features", help="extract contextual vectors for lines of text",
        description="One vector per input line (pooled), or per token with a word map, in input order.")
    features.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF)")
    features.add_argument("--input", required=True, help="text file, one text per line")
    features.add_argument("--out", required=True, help="output .npy (pooled) or .safetensors")
    features.add_argument("--pooling", choices=["cls", "mean", "none"], default="mean",
                          help="cls: first token; mean: average of non-padding tokens; none: per token")
    features.add_argument("--strategy", default="last",
                          choices=["embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all"],
                          help="which layers make the vector (BERT paper Table 7); default last")
    features.add_argument("--layer-weights", type=float, nargs="+", help="weights for the sum strategies")
    features.add_argument("--batch-size", type=int, default=64)
    features.add_argument("--max-length", type=int, default=512)
    features.set_defaults(func=run_features)


def run_presets(args: argparse.Namespace) -> int:
    import torch

    from lmforge.families import registered_families
    from lmforge.models.build import build_model

    rows = []
    for family in registered_families().values():
        for name, config in family.presets.items():
            with torch.device("meta"):
                params = sum(p.numel() for p in build_model(config, "pretraining").parameters())
            rows.append((name, family.name, config.num_layers, config.hidden_size, config.num_heads,
                         f"{params:,}", family.notes.get(name, "")))
    header = ("preset", "family", "layers", "hidden", "heads", "parameters", "")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(w) if isinstance(cell, int) or i == 5 else str(cell).ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    print("parameters: with the pretraining heads (MLM + NSP)")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    import lmforge

    model, tokenizer = lmforge.load(args.src)
    out = lmforge.save(model, args.out, tokenizer, format="lmforge" if args.direction == "from-hf" else "hf")
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {model.config.family} {model.task} model ({params:,} parameters) to {out}")
    return 0


def run_fill_mask(args: argparse.Namespace) -> int:
    import torch

    import lmforge

    model, tokenizer = lmforge.load(args.model)
    if not hasattr(model, "mlm_head"):
        raise UserError(f"{args.model} holds a {model.task} model, which has no MLM head")
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files (tokenizer.json or vocab.txt)")
    batch = tokenizer([args.text], return_tensors="pt")
    ids = batch["input_ids"]
    positions = (ids[0] == tokenizer.mask_id).nonzero().flatten().tolist()
    if not positions:
        raise UserError("the text has no [MASK] token")
    with torch.inference_mode():
        logits = model.eval()(ids, batch["attention_mask"], batch["token_type_ids"]).mlm_logits[0]
    for position in positions:
        probs = logits[position].float().softmax(-1)
        top = probs.topk(min(args.top_k, probs.numel()))
        if len(positions) > 1:
            print(f"[MASK] at token {position}:")
        for p, token_id in zip(top.values.tolist(), top.indices.tolist()):
            print(f"  {tokenizer.convert_ids_to_tokens([token_id])[0]:<15} {p:.4f}")
    return 0


def run_features(args: argparse.Namespace) -> int:
    import lmforge
    from lmforge.features import extract_features

    path = Path(args.input)
    if not path.is_file():
        raise UserError(f"no such input file: {path}")
    texts = path.read_text(encoding="utf-8").splitlines()
    if not texts:
        raise UserError(f"{path} is empty")
    model, tokenizer = lmforge.load(args.model)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files (tokenizer.json or vocab.txt)")
    features = extract_features(model, tokenizer, texts, strategy=args.strategy, pooling=args.pooling,
                                batch_size=args.batch_size, max_length=args.max_length,
                                layer_weights=args.layer_weights, show_progress=True)
    out = features.save(args.out)
    print(f"wrote {features.vectors.shape[0]} x {features.vectors.shape[1]} vectors to {out}")
    return 0
