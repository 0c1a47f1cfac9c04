"""Corpus-preparation throughput: WordPiece tokenizer training and `lmforge prepare` on a real
corpus (default: the Project Gutenberg shards of ../shared/data/corpus).

    python benchmarks/prepare_corpus.py --corpus ../shared/data/corpus/*.jsonl.xz --out runs/bench-prepare

Prints a table and a last line of JSON (tokens, seconds, tokens_per_second).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", required=True, help="raw text files (.txt/.jsonl, .gz/.xz)")
    parser.add_argument("--out", default="runs/bench-prepare")
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--tokenizer", help="existing tokenizer dir (skips tokenizer training)")
    parser.add_argument("--num-workers", type=int, default=1)
    args = parser.parse_args()

    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = []
    tokenizer_dir = args.tokenizer
    if not tokenizer_dir:
        started = time.perf_counter()
        Tokenizer.train(args.corpus, vocab_size=args.vocab_size).save(out / "tokenizer")
        rows.append(("train WordPiece tokenizer", time.perf_counter() - started, None))
        tokenizer_dir = out / "tokenizer"
    started = time.perf_counter()
    manifest = prepare_corpus(args.corpus, tokenizer_dir, out / "data", num_workers=args.num_workers)
    seconds = time.perf_counter() - started
    tokens = sum(split["tokens"] for split in manifest["splits"].values())
    rows.append(("prepare (split, tokenize, write shards)", seconds, tokens))
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    for name, secs, toks in rows:
        rate = f"{toks / secs:,.0f} tokens/s ({toks:,} tokens)" if toks else ""
        print(f"{name:<42} {secs:8.1f} s  {rate}")
    print(json.dumps({"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_second": round(tokens / seconds)}))


if __name__ == "__main__":
    main()
