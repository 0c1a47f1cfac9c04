"""Writes the toy sequence-to-sequence sets of this folder (run from anywhere; deterministic):
copy-*.tsv and reverse-*.tsv, lines ``source<TAB>target`` of 2-6 letters from a-j separated
by spaces, the target the source itself (copy) or reversed (reverse)."""

import random
from pathlib import Path

LETTERS = "abcdefghij"
SIZES = {"train": 600, "dev": 40}


def sources(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(LETTERS) for _ in range(rng.randint(2, 6))] for _ in range(count)]


def main() -> None:
    folder = Path(__file__).resolve().parent
    for seed, (split, count) in enumerate(SIZES.items()):
        rows = sources(count, seed)
        for task, target in (("copy", lambda words: words), ("reverse", lambda words: words[::-1])):
            lines = [f"{' '.join(words)}\t{' '.join(target(words))}\n" for words in rows]
            (folder / f"{task}-{split}.tsv").write_text("".join(lines))


if __name__ == "__main__":
    main()
