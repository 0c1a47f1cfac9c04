"""Fine-tuning tasks: the model-independent parts (BERT paper, section 4; Devlin et al. 2019).

Submodules, each usable on its own:

- ``readers``: GLUE-style TSV/CSV/JSONL classification files, CoNLL-2003 NER, SQuAD v1.1 JSON.
- ``classification``, ``ner``, ``qa``: examples -> features (lists of token ids plus targets).
- ``metrics``: accuracy, F1, Matthews correlation, entity-level F1, SQuAD EM/F1.

This module holds what they share: reaching the raw ``tokenizers.Tokenizer`` behind an
``lmforge.tokenization.Tokenizer``, setting its truncation for one call without leaking that
state, and padding a list of features into a batch.

Features are plain dicts of Python lists so that datasets stay cheap to build and inspect;
``collate`` turns a list of them into tensors. Keys it knows: ``input_ids``, ``token_type_ids``
(padded with the pad id and 0), ``labels`` (token-level, padded with -100, which
``torch.nn.functional.cross_entropy`` ignores), and the per-example scalars ``label``,
``start_position`` and ``end_position``. Other keys (``word_ids``, ``offsets``,
``example_index``) are bookkeeping for decoding and are left out of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tokenizers import Tokenizer as BackendTokenizer

from lmforge.errors import UserError

# Label id that cross-entropy ignores (torch's default ignore_index); the BERT paper scores
# only the first sub-token of each word, the rest carry this.
IGNORE_INDEX = -100

_SCALAR_KEYS = ("label", "start_position", "end_position")


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


def check_max_length(backend: BackendTokenizer, max_length: int, pair: bool) -> None:
    """A length that leaves no room for text after the special tokens is a user mistake."""
    specials = backend.num_special_tokens_to_add(pair)
    if max_length < specials + (2 if pair else 1):
        raise UserError(f"max_length {max_length} leaves no room for text after {specials} special tokens")


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of features to the longest one: a batch of (B, T) and (B,) tensors.

    ``attention_mask`` is 1 on real tokens and 0 on padding (right padding, as BERT).
    """
    if not features:
        raise ValueError("collate needs at least one feature")
    length = max(len(f["input_ids"]) for f in features)

    def padded(key: str, fill: int) -> torch.Tensor:
        rows = [list(f[key]) + [fill] * (length - len(f[key])) for f in features]
        return torch.tensor(rows, dtype=torch.long)  # (B, T)

    batch = {
        "input_ids": padded("input_ids", pad_id),
        "attention_mask": torch.tensor(
            [[1] * len(f["input_ids"]) + [0] * (length - len(f["input_ids"])) for f in features],
            dtype=torch.long,
        ),
    }
    if "token_type_ids" in features[0]:
        batch["token_type_ids"] = padded("token_type_ids", 0)
    if "labels" in features[0]:
        batch["labels"] = padded("labels", IGNORE_INDEX)
    for key in _SCALAR_KEYS:
        if key in features[0]:
            batch[key] = torch.tensor([f[key] for f in features], dtype=torch.long)  # (B,)
    return batch
