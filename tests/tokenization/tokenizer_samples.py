"""Texts shared by the tokenization tests: a training corpus with the features the pipelines
treat specially (accents, CJK, punctuation, case, an over-long word) and texts/pairs to encode."""

from __future__ import annotations

import random
from pathlib import Path

SENTENCES = [
    "The quick brown Fox jumps over the lazy dog.",
    "Café naïve résumé: the Zürich office costs 12.50 euros!",
    "東京 is the capital of 日本, and 中文字符 appear here too.",
    "Don't stop (parentheses), [brackets] and \"quotes\" - okay?",
    "Numbers like 3.14159, 2,718 and 1e10 are COMMON in Reports.",
    "HELLO World, MixedCase WordsAreHere and camelCaseWords.",
    "unbelievable unbelievably believer believing relief relieved",
    "Straße ÅNGSTRÖM Ünïcödé señor façade coöperate.",
    "a" * 120 + " is a very long word indeed.",
]
LONG_WORD = "b" * 101  # one character over BERT's max_input_chars_per_word

# Texts for the parity checks: the corpus features plus whitespace and control characters,
# zero-width and non-breaking spaces, a ligature, an unseen emoji and a literal [MASK].
TEXTS = [
    "Café naïve unbelievable 東京!",
    "HELLO World [MASK] MixedCase believer",
    LONG_WORD + " end",
    "x",
    "",
    "  spaced   out\tTabs\nnewline\r\n",
    "Numbers 3.14159, 2,718!!",
    "Straße ﬁ ligature ÅNGSTRÖM \u00e9\u0301 combining",
    "\u200bzero\u00a0width\u0007bell 🙂 emoji",
    "don't (stop) relieved? OK.",
]
PAIRS = [
    "second one",
    "a b c d e f g h i j k l m n o p",
    "q",
    "東京 中文 日本 believing",
    "y" * 5,
    "Façade, coöperate.",
    "r",
    "the lazy dog jumps over the quick brown fox",
    "Zürich",
    "1 2 3 4 5 6 7 8 9",
]


def write_corpus(path: Path) -> Path:
    rng = random.Random(0)
    words = [w for s in SENTENCES for w in s.split()]
    lines = SENTENCES * 3 + [" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(300)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
