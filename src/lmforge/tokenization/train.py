"""Learning a vocabulary from corpus files with a kind's trainer (HF ``tokenizers``' Rust trainers).

Text comes through ``lmforge.corpus`` (the corpus reader pretraining data preparation uses):
.txt or .jsonl ("text" field), optionally .gz/.xz/.bz2, streamed in batches so memory grows
with the number of distinct words, not with the corpus.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import tokenizers

from lmforge.corpus import check_corpus_files, iter_texts
from lmforge.errors import UserError
from lmforge.files import read_errors
from lmforge.progress import progress_enabled
from lmforge.tokenization.kinds import PipelineOptions, TokenizerKind, TrainerSettings

_BATCH_TEXTS = 1000  # texts handed to the Rust trainer at a time


def train_backend(
    paths: Sequence[str | Path],
    kind: TokenizerKind,
    vocab_size: int,
    lowercase: bool,
    min_frequency: int,
    show_progress: bool,
) -> tokenizers.Tokenizer:
    """A trained backend: the kind's leading specials at ids 0.., learned pieces, then sentinels."""
    files = [str(p) for p in paths]
    if not files:
        raise UserError("no training files given")
    check_corpus_files(files)
    specials = kind.specials
    sentinels = specials.sentinels.tokens() if specials.sentinels else []
    reserved = len(specials.leading) + len(sentinels)
    if vocab_size <= reserved:
        raise UserError(f"vocab size must exceed the {reserved} special tokens of {kind.name}, got {vocab_size}")
    batches = _text_batches(files)
    first = next(batches, None)
    if first is None:  # the trainers would return a vocabulary of special tokens only
        raise UserError(f"no text to train a tokenizer on in {', '.join(files)}")
    options = PipelineOptions(lowercase=lowercase)
    backend = kind.pipeline(kind.new_model(), options)
    show_progress = show_progress and progress_enabled()  # bars for a person at a terminal only
    trainer = kind.trainer(TrainerSettings(vocab_size - len(sentinels), min_frequency, show_progress, specials.leading))
    backend.train_from_iterator(itertools.chain([first], batches), trainer=trainer)
    if kind.after_training is not None:
        backend = kind.after_training(backend)
    # T5 puts <extra_id_0> at the top id, so the range is added last-first
    backend.add_special_tokens(sentinels[::-1])
    backend.post_processor = kind.layout.build(role_ids(backend, kind), options)
    # Unigram scores reload a ULP off (serde_json's float parsing is not exact); one trip
    # through JSON makes the trained tokenizer equal to every later load of it.
    return tokenizers.Tokenizer.from_str(backend.to_str())


def role_ids(backend: tokenizers.Tokenizer, kind: TokenizerKind) -> dict[str, tuple[str, int]]:
    """role -> (token, id) for the kind's roles present in the vocabulary."""
    found = {role: (token, backend.token_to_id(token)) for role, token in kind.specials.roles.items()}
    return {role: pair for role, pair in found.items() if pair[1] is not None}


def _text_batches(files: Sequence[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for path in files:
        with read_errors(path):
            for text in iter_texts(path):
                batch.append(text)
                if len(batch) >= _BATCH_TEXTS:
                    yield batch
                    batch = []
    if batch:
        yield batch
