"""Zip two line-aligned text files (a parallel corpus such as Multi30k's train.de.gz and
train.en.gz; plain, .gz or .xz) into the ``source<TAB>target`` TSV that ``lmforge finetune
--task seq2seq`` reads; optionally also write the source side alone, as text for training the
source tokenizer of BART's new source encoder (recipes/finetune/bart-multi30k-de-en.yaml).

    python benchmarks/parallel_to_tsv.py DATA/train.de.gz DATA/train.en.gz runs/m30k/train.tsv \
        --source-text runs/m30k/train.de.txt [--limit N]
"""

from __future__ import annotations

import argparse
import gzip
import lzma
from pathlib import Path


def read_lines(path: Path) -> list[str]:
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    with opener(path, "rt", encoding="utf-8") as handle:
        return [" ".join(line.split()) for line in handle.read().splitlines()]  # tabs would split a TSV field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("out", type=Path, help="TSV to write")
    parser.add_argument("--source-text", type=Path, help="also write the source lines here")
    parser.add_argument("--limit", type=int, default=0, help="keep the first N pairs (0: all)")
    args = parser.parse_args()
    sources, targets = read_lines(args.source), read_lines(args.target)
    if len(sources) != len(targets):
        raise SystemExit(f"{args.source} has {len(sources)} lines but {args.target} has {len(targets)}")
    pairs = list(zip(sources, targets))[: args.limit or None]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    if args.source_text:
        args.source_text.write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    print(f"wrote {len(pairs)} pairs to {args.out}")


if __name__ == "__main__":
    main()
