"""Tokenizer handling every fine-tuning task shares: the raw ``tokenizers.Tokenizer`` behind an
``lmforge.tokenization.Tokenizer``, truncation set for one call without leaking that state,
pre-split words for byte-level BPE (RoBERTa's ``add_prefix_space``), encoding in chunks under a
progress bar, and the one-line warnings and feature helpers the task modules use."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import pre_tokenizers

from lmforge.errors import UserError
from lmforge.progress import progress


def backend_of(tokenizer: Any) -> BackendTokenizer:
    """The raw ``tokenizers.Tokenizer``: ``tokenizer.backend`` for an lmforge Tokenizer,
    or the object itself when it already is one."""
    backend = getattr(tokenizer, "backend", tokenizer)
    if not isinstance(backend, BackendTokenizer):
        raise TypeError(f"expected an lmforge or tokenizers Tokenizer, got {type(tokenizer).__name__}")
    return backend


@contextmanager
def truncating(
    backend: BackendTokenizer, max_length: int | None, strategy: str = "longest_first", stride: int = 0
) -> Iterator[BackendTokenizer]:
    """Truncate to ``max_length`` (None: not at all) with no padding inside the block, then
    restore the backend.

    The backend object may be shared with other code (the lmforge Tokenizer wrapper pads to
    the batch), so its settings are put back exactly as they were.
    """
    saved_truncation, saved_padding = backend.truncation, backend.padding
    backend.no_padding()
    if max_length is None:
        backend.no_truncation()
    else:
        backend.enable_truncation(max_length, stride=stride, strategy=strategy)
    try:
        yield backend
    finally:
        if saved_truncation is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(**saved_truncation)
        if saved_padding is not None:
            backend.enable_padding(**saved_padding)


@contextmanager
def pre_split_words(backend: BackendTokenizer) -> Iterator[BackendTokenizer]:
    """Encode pre-split words (``is_pretokenized``) as they appear in running text: a byte-level
    BPE (GPT-2, RoBERTa) gives each word its leading space, as transformers requires
    (``add_prefix_space=True`` with ``is_split_into_words``); without it every word would be
    encoded as if it began the text, which pretraining never saw mid-sentence. Other
    pre-tokenisers mark word starts themselves. The setting is put back afterwards."""
    pre_tokenizer = backend.pre_tokenizer
    if not isinstance(pre_tokenizer, pre_tokenizers.ByteLevel) or pre_tokenizer.add_prefix_space:
        yield backend
        return
    pre_tokenizer.add_prefix_space = True  # the backend's own pre-tokenizer, changed in place
    try:
        yield backend
    finally:
        pre_tokenizer.add_prefix_space = False


def check_max_length(backend: BackendTokenizer, max_length: int, pair: bool) -> None:
    """A length that leaves no room for text after the special tokens is a user mistake."""
    specials = backend.num_special_tokens_to_add(pair)
    if max_length < specials + (2 if pair else 1):
        raise UserError(f"max_length {max_length} leaves no room for text after {specials} special tokens")




def warn(line: str) -> None:
    """One line on standard error that the run goes on despite (repaired or skipped data)."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


ENCODE_CHUNK = 2048  # inputs per encode_batch call: small enough for a steady bar, large enough for its threads


def encode_in_chunks(backend: BackendTokenizer, inputs: Sequence[Any], desc: str, **kwargs) -> list:
    """``backend.encode_batch(inputs, **kwargs)`` in chunks, with an examples/s bar."""
    encodings: list = []
    with progress(len(inputs), desc, "ex") as bar:
        for start in range(0, len(inputs), ENCODE_CHUNK):
            chunk = inputs[start:start + ENCODE_CHUNK]
            encodings.extend(backend.encode_batch(chunk, **kwargs))
            bar.update(len(chunk))
    return encodings


def one_line(text: str) -> str:
    """One TSV field: tabs and line breaks inside a text would break the columns."""
    return " ".join(text.split())


def without_keys(feature: dict, *keys: str) -> dict:
    return {k: v for k, v in feature.items() if k not in keys}
