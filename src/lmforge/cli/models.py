"""Model subcommands: presets, convert, fill-mask, features."""

from __future__ import annotations

import argparse
from pathlib import Path

from lmforge.cli.checks import check_model_dir, load_checked, positive_int, reading
from lmforge.errors import UserError
from lmforge.lstm.elmo_cli import add_convert_parser, feature_strategy


def register(subparsers) -> None:
    presets = subparsers.add_parser("presets", help="list model presets with their sizes")
    presets.set_defaults(func=run_presets)

    convert = subparsers.add_parser("convert", help="convert checkpoints to and from Hugging Face layout")
    convert_sub = convert.add_subparsers(dest="direction", metavar="DIRECTION", required=True)
    for direction, text in (("from-hf", "Hugging Face directory or hub id -> lmforge checkpoint"),
                            ("to-hf", "lmforge checkpoint -> Hugging Face directory (config.json + model.safetensors)")):
        p = convert_sub.add_parser(direction, help=text, description=text)
        p.add_argument("src", help="source checkpoint directory (or hub id for from-hf)")
        p.add_argument("out", help="output directory (created; an existing one needs --overwrite)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace OUT (even OUT = SRC) once the converted model is complete")
        p.set_defaults(func=run_convert)
    add_convert_parser(convert_sub)  # from-allennlp (ELMo)

    fill = subparsers.add_parser("fill-mask", help="predict the tokens hidden behind [MASK]",
                                 description="Print the top-k tokens with probabilities for each [MASK] in TEXT.")
    fill.add_argument("text", help='a sentence with [MASK] in it, e.g. "the capital of france is [MASK]."')
    fill.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF) with an MLM head")
    fill.add_argument("--top-k", type=positive_int, default=5, help="how many candidates to show (default 5)")
    fill.set_defaults(func=run_fill_mask)

    features = subparsers.add_parser(
        "features", help="extract contextual vectors for lines of text",
        description="One vector per input line (pooled), or per token with a word map, in input order.")
    features.add_argument("--model", required=True, help="checkpoint directory (lmforge or HF)")
    features.add_argument("--input", required=True, help="text file, one text per line")
    features.add_argument("--out", required=True, help="output .npy (pooled) or .safetensors")
    features.add_argument("--overwrite", action="store_true",
                          help="replace an existing --out file (once the new one is complete)")
    features.add_argument("--pooling", choices=["cls", "mean", "none"], default="mean",
                          help="cls: first token; mean: average of non-padding tokens; none: per token")
    features.add_argument("--strategy", default="last", type=feature_strategy,
                          help="which layers make the vector (BERT paper Table 7): embeddings, second_to_last, last, "
                               "sum_last_four, concat_last_four, sum_all; ELMo also: layer_K, average, scalar_mix; "
                               "default last")
    features.add_argument("--layer-weights", type=float, nargs="+", help="weights for the sum strategies")
    features.add_argument("--batch-size", type=positive_int, default=64)
    features.add_argument("--max-length", type=positive_int,
                          help="tokens per text, longer ones truncated (default: the model's positions)")
    features.set_defaults(func=run_features)


def run_presets(args: argparse.Namespace) -> int:
    from lmforge.families import registered_families

    rows = []
    for family in registered_families().values():
        for name, config in family.presets.items():
            rows.append((name, family.name, config.num_layers, config.hidden_size, config.num_heads,
                         f"{parameter_count(config):,}", family.notes.get(name, "")))
    from lmforge.lstm.elmo_config import preset_rows as elmo_rows

    rows += elmo_rows()
    from lmforge.lstm.awd_lstm_config import PRESETS as AWD_LSTM_PRESETS, language_model_parameters

    rows += [(name, "awd_lstm", c.num_layers, c.hidden_size, "-", f"{language_model_parameters(c):,}",
              f"embedding {c.embedding_size}, vocabulary {c.vocab_size:,}") for name, c in AWD_LSTM_PRESETS.items()]
    header = ("preset", "family", "layers", "hidden", "heads", "parameters", "")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(w) if isinstance(cell, int) or i == 5 else str(cell).ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    print("parameters: with the pretraining heads (encoders: MLM, and NSP/SOP where the family has one; "
          "decoders and encoder-decoders: the LM head; ELMo without its softmax, AWD-LSTM with its tied decoder), tied weights once")
    return 0


def preset_task(config) -> str:
    """The task whose model `lmforge presets` counts: the family's pretraining model."""
    return {"encoder": "pretraining", "decoder": "causal_lm", "encoder_decoder": "seq2seq_lm"}[config.architecture]


def parameter_count(config) -> int:
    """Parameters of the ``preset_task`` model (tied weights once), counted from the config alone
    for single-stack models, ALBERT's factorised and shared encoders included (so listing presets
    needs no torch), encoder-decoders (BART, T5) too.
    tests/faults/test_recovery.py checks the count against the built model for every preset."""
    h, v, i, e, bias = config.hidden_size, config.vocab_size, config.intermediate_size, config.embedding_width, config.bias

    def norm(width: int) -> int:
        return 2 * width if config.norm_type == "layernorm" else width

    positions = config.max_positions + config.position_offset if config.positions == "learned" else 0
    embeddings = ((v + positions + config.type_vocab_size) * e + (norm(e) if config.embedding_norm else 0)
                  + (e * h + h if config.embedding_size else 0))
    qkv_rows = (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
    attention = (h * qkv_rows + config.num_heads * config.head_dim * h) + ((qkv_rows + h) if bias else 0)
    ffn_inputs = 2 if config.feed_forward == "gated" else 1
    feed_forward = (ffn_inputs + 1) * h * i + ((ffn_inputs * i + h) if bias else 0)
    layer = attention + feed_forward + 2 * norm(h)
    distinct_layers = config.num_layer_groups * config.layers_per_group if config.num_layer_groups else config.num_layers
    total = embeddings + distinct_layers * layer + (norm(h) if config.final_norm else 0)
    untied_output = 0 if config.tie_word_embeddings else v * e
    if config.architecture == "encoder_decoder":
        # One shared token table; per stack its positions, embedding norm, relative table and
        # final norm; decoder layers add cross-attention and its norm (BART's final_logits_bias
        # is a buffer, not a parameter).
        relative = config.relative_buckets * config.num_heads if config.positions == "relative_buckets" else 0
        per_stack = embeddings - v * e + relative + (norm(h) if config.final_norm else 0)
        decoder_layer = layer + attention + norm(h)
        return (v * e + 2 * per_stack + config.num_layers * layer + config.num_decoder_layers * decoder_layer
                + untied_output)
    if config.architecture == "decoder":
        return total + untied_output
    pair = config.pretraining_pair_head  # RoBERTa: MLM alone, so no pooler either
    pooler = h * h + h if config.pooler and pair else 0
    mlm = (h * e + e) + norm(e) + v + untied_output
    nsp = 2 * h + 2 if pair else 0
    return total + pooler + mlm + nsp


def run_convert(args: argparse.Namespace) -> int:
    import lmforge
    from lmforge.training.rundir import check_out_dir
    from lmforge.files import staged_dir

    if args.direction == "to-hf":
        check_model_dir(args.src, "SRC")
    out = check_out_dir(args.out, "OUT", overwrite=args.overwrite)
    model, tokenizer = load_checked(args.src, "SRC") if args.direction == "to-hf" else lmforge.load(args.src)
    # Everything is in memory now, so OUT may even be SRC: the new directory replaces it whole.
    with staged_dir(out) as staging:
        lmforge.save(model, staging, tokenizer, format="lmforge" if args.direction == "from-hf" else "hf")
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {model.config.family} {model.task} model ({params:,} parameters) to {out}")
    return 0


def run_fill_mask(args: argparse.Namespace) -> int:
    from lmforge.fill_mask import fill_mask

    model, tokenizer = load_checked(args.model)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files (tokenizer.json or vocab.txt)")
    answers = fill_mask(model, tokenizer, args.text, args.top_k)
    for k, candidates in enumerate(answers):
        if len(answers) > 1:
            print(f"{tokenizer.special_tokens['mask']} {k + 1}:")
        for token, p in candidates:
            print(f"  {token:<15} {p:.4f}")
    return 0


def run_features(args: argparse.Namespace) -> int:
    from lmforge.cli.checks import check_input_file
    from lmforge.features import extract_features
    from lmforge.training.rundir import check_out_file

    path = check_input_file(args.input, "--input", "input file")
    out = check_out_file(args.out, "--out")
    if Path(out).suffix not in (".npy", ".safetensors"):
        raise UserError(f"--out {out}: name a .npy or .safetensors file")
    if args.pooling == "none" and Path(out).suffix == ".npy":
        raise UserError("--pooling none gives per-token features: --out needs a .safetensors name")
    if Path(out).exists() and not args.overwrite:
        raise UserError(f"--out {out} already exists; choose another --out or pass --overwrite to replace it")
    with reading([path]):
        texts = path.read_text(encoding="utf-8").splitlines()
    if not texts:
        raise UserError(f"{path} is empty")
    from lmforge.lstm.checkpoint import is_lstm_checkpoint

    if is_lstm_checkpoint(args.model):
        from lmforge.lstm.elmo_cli import run_elmo_features

        return run_elmo_features(args, texts, out)
    model, tokenizer = load_checked(args.model)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files (tokenizer.json or vocab.txt)")
    positions = model.config.max_positions
    if args.max_length is not None and args.max_length > positions:
        raise UserError(f"--max-length {args.max_length} exceeds the model's {positions} positions")
    features = extract_features(model, tokenizer, texts, strategy=args.strategy, pooling=args.pooling,
                                batch_size=args.batch_size, max_length=args.max_length or min(512, positions),
                                layer_weights=args.layer_weights, show_progress=True)
    out = features.save(out, overwrite=args.overwrite)
    print(f"wrote {features.vectors.shape[0]} x {features.vectors.shape[1]} vectors to {out}")
    return 0
