"""Memory-mapped token shards: the on-disk form of a tokenized, sentence-split corpus split.

One directory per split holds three files:

- ``tokens.bin``: every sentence's token ids, concatenated, raw little-endian ``uint16`` when
  the vocabulary fits (<= 65535 ids) else ``uint32``; the dtype is read back from the file size;
- ``sentence_offsets.npy``: int64, ``num_sentences + 1`` token offsets (sentence ``s`` is
  ``tokens[off[s]:off[s + 1]]``);
- ``document_offsets.npy``: int64, ``num_documents + 1`` sentence indices.

Sentences of a document are contiguous, so a document is a token range too. This is the layout
of Megatron-LM's indexed datasets (one flat token file plus offset indices), reduced to what
the pretraining objectives read. ``ShardWriter`` appends documents with bounded memory;
``TokenShards`` reads a split without loading it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lmforge.errors import UserError

TOKENS_FILE = "tokens.bin"
SENTENCE_OFFSETS_FILE = "sentence_offsets.npy"
DOCUMENT_OFFSETS_FILE = "document_offsets.npy"


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id of the vocabulary."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32).newbyteorder("<")


class ShardWriter:
    """Appends documents to a split directory; ``close()`` writes the offset indices.

    The offsets go to raw temporary files while writing, so memory does not grow with the
    corpus; ``close`` copies them into ``.npy`` files in slices.
    """

    _COPY_SLICE = 1 << 22

    def __init__(self, split_dir: str | os.PathLike, dtype: np.dtype) -> None:
        self.dir = Path(split_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self._tokens = open(self.dir / TOKENS_FILE, "wb")
        self._sentence_ends = open(self.dir / "sentence_offsets.tmp", "wb")
        self._document_ends = open(self.dir / "document_offsets.tmp", "wb")
        self.num_tokens = 0
        self.num_sentences = 0
        self.num_documents = 0

    def append(self, tokens: np.ndarray, sentence_lengths: np.ndarray, document_sizes: np.ndarray) -> None:
        """Append documents: their concatenated ``tokens``, each sentence's length and each
        document's number of sentences (all positive)."""
        sentence_lengths = np.asarray(sentence_lengths, dtype=np.int64)
        document_sizes = np.asarray(document_sizes, dtype=np.int64)
        assert sentence_lengths.sum() == len(tokens) and document_sizes.sum() == len(sentence_lengths)
        self._tokens.write(np.asarray(tokens).astype(self.dtype, copy=False).tobytes())
        (self.num_tokens + np.cumsum(sentence_lengths)).astype("<i8").tofile(self._sentence_ends)
        (self.num_sentences + np.cumsum(document_sizes)).astype("<i8").tofile(self._document_ends)
        self.num_tokens += len(tokens)
        self.num_sentences += len(sentence_lengths)
        self.num_documents += len(document_sizes)

    def close(self) -> dict[str, int]:
        """Finish the split; returns its counts."""
        for handle in (self._tokens, self._sentence_ends, self._document_ends):
            handle.close()
        self._to_npy("sentence_offsets.tmp", SENTENCE_OFFSETS_FILE, self.num_sentences)
        self._to_npy("document_offsets.tmp", DOCUMENT_OFFSETS_FILE, self.num_documents)
        return {"documents": self.num_documents, "sentences": self.num_sentences, "tokens": self.num_tokens}

    def _to_npy(self, raw_name: str, npy_name: str, count: int) -> None:
        raw = np.memmap(self.dir / raw_name, dtype="<i8", mode="r") if count else np.empty(0, "<i8")
        out = np.lib.format.open_memmap(self.dir / npy_name, mode="w+", dtype="<i8", shape=(count + 1,))
        out[0] = 0  # the leading zero makes off[s]:off[s + 1] work for the first entry too
        for lo in range(0, count, self._COPY_SLICE):
            out[lo + 1 : lo + 1 + self._COPY_SLICE] = raw[lo : lo + self._COPY_SLICE]
        out.flush()
        del out, raw
        os.remove(self.dir / raw_name)


class TokenShards:
    """Read-only, memory-mapped view of one split directory written by ``ShardWriter``."""

    def __init__(self, split_dir: str | os.PathLike) -> None:
        self.dir = Path(split_dir)
        for name in (TOKENS_FILE, SENTENCE_OFFSETS_FILE, DOCUMENT_OFFSETS_FILE):
            if not (self.dir / name).is_file():
                raise UserError(f"{self.dir} is not a prepared split: {name} is missing (run `lmforge prepare`)")
        self._open()

    def _open(self) -> None:
        self.sentence_offsets: np.ndarray = np.load(self.dir / SENTENCE_OFFSETS_FILE, mmap_mode="r")
        self.document_offsets: np.ndarray = np.load(self.dir / DOCUMENT_OFFSETS_FILE, mmap_mode="r")
        num_tokens = int(self.sentence_offsets[-1])
        size = (self.dir / TOKENS_FILE).stat().st_size
        if num_tokens == 0:
            self.tokens: np.ndarray = np.empty(0, dtype="<u2")
        elif size in (2 * num_tokens, 4 * num_tokens):
            dtype = "<u2" if size == 2 * num_tokens else "<u4"
            self.tokens = np.memmap(self.dir / TOKENS_FILE, dtype=dtype, mode="r", shape=(num_tokens,))
        else:
            raise UserError(f"{self.dir / TOKENS_FILE} has {size} bytes, which does not match {num_tokens} tokens")

    # Memory maps are reopened after unpickling (DataLoader workers), never copied.
    def __getstate__(self) -> dict:
        return {"dir": self.dir}

    def __setstate__(self, state: dict) -> None:
        self.dir = state["dir"]
        self._open()

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.sentence_offsets[-1])

    def sentence(self, i: int) -> np.ndarray:
        return self.tokens[self.sentence_offsets[i] : self.sentence_offsets[i + 1]]

    def document(self, i: int) -> list[np.ndarray]:
        """The sentences of document ``i``, each a view into the token file."""
        first, last = int(self.document_offsets[i]), int(self.document_offsets[i + 1])
        return [self.sentence(s) for s in range(first, last)]

    def document_token_starts(self) -> np.ndarray:
        """Token offset of every document's first token (int64, ``num_documents``)."""
        return np.asarray(self.sentence_offsets[np.asarray(self.document_offsets[:-1])], dtype=np.int64)
