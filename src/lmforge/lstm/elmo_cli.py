"""The ELMo side of the model commands: `lmforge convert from-allennlp` and `lmforge features`
on an ELMo checkpoint. Nothing here imports torch at module level (`lmforge --help` stays fast).

ELMo feature strategies, on Peters et al.'s L + 1 layers [token layer, LSTM 1, ..., L]:
``layer_K`` (one layer, 0 = the token layer), ``average`` (equal weights), ``scalar_mix``
(``gamma * sum softmax(w)_j h_j`` with ``w`` from ``--layer-weights``, zeros by default, gamma 1:
the mix a downstream task would train, here fixed), and the BERT paper's strategies with the
token layer as ``embeddings``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lmforge.errors import UserError

BERT_STRATEGIES = ("embeddings", "second_to_last", "last", "sum_last_four", "concat_last_four", "sum_all")
ELMO_STRATEGIES = ("average", "scalar_mix", "layer_K")


def feature_strategy(text: str) -> str:
    """argparse type for --strategy: the BERT paper's six, or ELMo's."""
    if text in BERT_STRATEGIES or text in ELMO_STRATEGIES[:2] or re.fullmatch(r"layer_\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"choose from {', '.join(BERT_STRATEGIES + ELMO_STRATEGIES)} (got {text!r})")


def add_convert_parser(convert_sub) -> None:
    text = "AllenNLP ELMo options.json + weights.hdf5 -> lmforge ELMo checkpoint"
    p = convert_sub.add_parser("from-allennlp", help=text, description=text)
    p.add_argument("options", help="the model's options.json")
    p.add_argument("weights", help="the model's weights .hdf5")
    p.add_argument("out", help="output directory (created; an existing one needs --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT once the converted model is complete")
    p.set_defaults(func=run_convert_allennlp)


def run_convert_allennlp(args: argparse.Namespace) -> int:
    from lmforge.files import staged_dir
    from lmforge.lstm.elmo import save_elmo
    from lmforge.lstm.elmo_convert import read_allennlp
    from lmforge.training.rundir import check_out_dir

    out = check_out_dir(args.out, "OUT", overwrite=args.overwrite)
    model = read_allennlp(args.options, args.weights)
    with staged_dir(out) as staging:
        save_elmo(model, staging)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote elmo biLM ({params:,} parameters, no softmax) to {out}")
    return 0


def combine_elmo_layers(layers: list, mask, strategy: str, weights: list[float] | None = None):
    """One (B, T, D) tensor from the L + 1 ELMo layers (see the module docstring)."""
    if match := re.fullmatch(r"layer_(\d+)", strategy):
        index = int(match.group(1))
        if index >= len(layers):
            raise UserError(f"{strategy}: this ELMo has layers 0..{len(layers) - 1}")
        return layers[index]
    if strategy == "average":
        return sum(layers) / len(layers)
    if strategy == "scalar_mix":
        from lmforge.lstm.scalar_mix import ScalarMix

        return ScalarMix(len(layers), initial_weights=weights).to(layers[0].device)(layers, mask)
    from lmforge.features import combine_layers

    return combine_layers(layers, strategy, weights)


def run_elmo_features(args: argparse.Namespace, texts: list[str], out: Path) -> int:
    """`lmforge features` for an ELMo checkpoint: words are split on whitespace, <S> and </S>
    framed around each line and dropped from the output (AllenNLP's ``Elmo``)."""
    import numpy as np
    import torch

    from lmforge.features import Features
    from lmforge.lstm.elmo import elmo_layer_outputs, load_elmo
    from lmforge.tokenization.hf_files import has_tokenizer

    if args.pooling == "cls":
        raise UserError("an ELMo model has no [CLS] token: use --pooling mean or none")
    model = load_elmo(args.model).eval()
    tokenizer = None
    if has_tokenizer(Path(args.model)):
        from lmforge.tokenization import Tokenizer

        tokenizer = Tokenizer.from_dir(args.model)
    elif model.config.token_encoder != "char_cnn":
        raise UserError(f"{args.model} has no tokenizer files, which its word embeddings need")
    sentences = [line.split() for line in texts]
    if any(not words for words in sentences):
        raise UserError(f"{args.input} has an empty line: every line needs at least one word")
    order = np.argsort([len(s) for s in sentences], kind="stable")[::-1]
    results: list = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(texts), args.batch_size):
            index = order[start:start + args.batch_size]
            result = elmo_layer_outputs(model, [sentences[i] for i in index], tokenizer)
            hidden = combine_elmo_layers(result.layers, result.mask, args.strategy, args.layer_weights).float()
            for row, i in enumerate(index):
                n = int(result.mask[row].sum())
                if args.pooling == "mean":
                    results[i] = hidden[row, :n].mean(0).cpu().numpy()
                else:
                    results[i] = (hidden[row, :n].cpu().numpy(), result.word_ids[row, :n].numpy())
    if args.pooling == "mean":
        features = Features(np.stack(results))
    else:
        offsets = np.cumsum([0] + [len(words) for _, words in results]).astype(np.int64)
        features = Features(np.concatenate([v for v, _ in results]), offsets, np.concatenate([w for _, w in results]))
    out = features.save(out, overwrite=args.overwrite)
    print(f"wrote {features.vectors.shape[0]} x {features.vectors.shape[1]} vectors to {out}")
    return 0
