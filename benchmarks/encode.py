"""Sentence encoding: lmforge's ``extract_features`` against sentence-transformers' ``encode``.

    python benchmarks/encode.py                       # random 6-layer, 384-wide BERT, Brown sentences
    python benchmarks/encode.py --model DIR --input sentences.txt

Mean-pooled last-layer vectors of the same sentences, from the same Hugging Face directory,
batch 64, on CPU: lmforge (``lmforge.load`` + ``lmforge.features.extract_features``) and
sentence-transformers (``SentenceTransformer(modules=[Transformer(dir), Pooling(dim, "mean")])``,
whose ``encode`` sorts by length too). Both times include tokenization. The vectors must agree
within 1e-5 before anything is timed; then ``--repeats`` rounds, alternating which side goes
first, and the medians are compared.

Without ``--model``, a WordPiece vocabulary is trained on the bundled Brown corpus and a
randomly initialised BERT (6 layers, hidden 384, 12 heads, intermediate 1536: MiniLM-L6's
shape) is saved in HF format. Without ``--input``, 2,000 Brown sentences drawn at random
(fixed seed), from one word to well over a hundred, are encoded.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, interleaved, machine, median, offline, print_json, print_table  # noqa: E402

BROWN = REPO / "data" / "brown" / "brown.jsonl.xz"


def brown_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences of the Brown corpus in random order (one per line in its texts)."""
    with lzma.open(BROWN, "rt", encoding="utf-8") as f:
        sentences = [s.strip() for line in f for s in json.loads(line)["text"].split("\n") if s.strip()]
    order = np.random.default_rng(seed).permutation(len(sentences))[:count]
    return [sentences[i] for i in order]


def read_input(path: Path) -> list[str]:
    """One text per line (.txt), or the "text" field of each JSON line (.jsonl)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(line)["text"] for line in lines]
    return lines


def build_random_model(directory: Path) -> None:
    """A WordPiece vocabulary trained on Brown and a random 6-layer, 384-wide BERT, in HF format."""
    import lmforge
    from lmforge.families.bert import bert_config
    from lmforge.tokenization import Tokenizer

    tokenizer = Tokenizer.train([BROWN], kind="wordpiece", vocab_size=30522, show_progress=False)
    config = bert_config(6, 384, 12, vocab_size=tokenizer.vocab_size, intermediate_size=1536,
                         pad_token_id=tokenizer.pad_id)
    lmforge.save(lmforge.build(config, task="backbone", seed=0), directory, tokenizer, format="hf")


def sentence_transformer(directory: Path):
    try:  # sentence-transformers >= 6 moved the modules; `models` still re-exports them
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    from sentence_transformers import SentenceTransformer

    transformer = Transformer(str(directory))
    width = json.loads((directory / "config.json").read_text())["hidden_size"]
    return SentenceTransformer(modules=[transformer, Pooling(width, "mean")], device="cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="HF-format BERT directory (default: a random 6x384 BERT)")
    parser.add_argument("--input", type=Path, help="texts, one per line (.txt) or JSON lines with \"text\" "
                                                   "(default: 2,000 Brown sentences)")
    parser.add_argument("--count", type=int, default=2000, help="sentences taken from Brown without --input")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per side (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)
    offline()
    torch.set_num_threads(args.threads)
    import lmforge
    from lmforge.features import extract_features

    texts = read_input(args.input) if args.input else brown_sentences(args.count)
    with tempfile.TemporaryDirectory() as scratch:
        directory = args.model
        if directory is None:
            directory = Path(scratch) / "bert-6x384"
            build_random_model(directory)
        model, tokenizer = lmforge.load(directory)
        model.eval()
        reference = sentence_transformer(directory)
        reference.eval()

    def ours(_: int = 0) -> np.ndarray:
        return extract_features(model, tokenizer, texts, pooling="mean", batch_size=args.batch_size).vectors

    def theirs(_: int = 0) -> np.ndarray:
        return reference.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)

    ours_vectors, reference_vectors = ours(), theirs()  # also the warm-up
    diff = float(np.abs(ours_vectors - reference_vectors).max())
    if ours_vectors.shape != reference_vectors.shape or diff > 1e-5:
        raise SystemExit(f"vectors differ: max abs difference {diff:.2e} (shapes {ours_vectors.shape}, "
                         f"{reference_vectors.shape})")
    device = torch.device("cpu")
    times = interleaved({"lmforge": ours, "sentence-transformers": theirs}, args.repeats, device)
    tokens = sum(len(ids) + 2 for ids in tokenizer.encode_plain(texts))  # with [CLS] and [SEP]
    rates = {side: median([len(texts) / t for t in ts]) for side, ts in times.items()}
    ratio = rates["lmforge"] / rates["sentence-transformers"]
    paired = median([b / a for a, b in zip(times["lmforge"], times["sentence-transformers"])])
    config = model.config
    what = f"{config.num_layers} layers, H {config.hidden_size}, {config.num_heads} heads"
    rows = [[side, rates[side], rates[side] * tokens / len(texts), median(times[side])] for side in rates]
    rows.append(["ratio", ratio, f"paired {paired:.2f}", ""])
    print_table(f"Mean-pooled sentence vectors: {len(texts):,} texts ({tokens:,} tokens), batch {args.batch_size}, "
                f"{what}; repeats {args.repeats}; {machine(device)}",
                ["side", "texts/s", "tokens/s", "seconds"], rows)
    print(f"max abs difference of the vectors: {diff:.2e}")
    print_json({"benchmark": "encode", "device": "cpu", "machine": machine(device), "model": what,
                "texts": len(texts), "tokens": tokens, "batch_size": args.batch_size, "ours": rates["lmforge"],
                "reference": rates["sentence-transformers"], "ratio": ratio, "paired_ratio": paired,
                "repeats": args.repeats, "max_abs_diff": diff, "unit": "texts/s"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
