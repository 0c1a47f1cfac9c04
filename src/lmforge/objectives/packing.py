"""FULL-SENTENCES packing for MLM-only pretraining (RoBERTa, Liu et al. 2019, section 4.2).

Whole sentences are packed contiguously, crossing document boundaries, until the next one
would not fit: ``[CLS] s1 s2 ... [SEP]``, with an extra [SEP] where one document ends and the
next begins inside a block (fairseq's ``TokenBlockDataset`` with ``break_mode="complete"``
packs the same way; its ``<s>``/``</s>`` are our [CLS]/[SEP]). A sentence longer than a block
is cut into full blocks, and its remainder starts the next block. ``within_documents=True``
closes a block at every document start instead (fairseq's ``complete_doc``, BART's blocks).

A block is contiguous in the split's token stream (the layout of ``lmforge.data.shards``), so
it is stored as a token range ``[start, stop)``; the document separators are inserted when the
block is read.
"""

from __future__ import annotations

import numpy as np


def pack_blocks(sentence_offsets: np.ndarray, document_offsets: np.ndarray, max_seq_length: int,
                within_documents: bool = False) -> np.ndarray:
    """Token ranges of the packed blocks, an int64 table ``(N, 2)`` of ``[start, stop)``.

    Each block assembles to at most ``max_seq_length`` tokens: [CLS], its tokens, one [SEP]
    per document start strictly inside it, and the final [SEP].
    """
    capacity = max_seq_length - 2
    if capacity < 1:
        raise ValueError("packing needs max_seq_length >= 3")
    offsets = np.asarray(sentence_offsets).tolist()
    first_sentences = set(np.asarray(document_offsets[:-1]).tolist())
    blocks: list[tuple[int, int]] = []
    block_start = 0
    used = 0  # tokens in the open block, document separators included
    for s in range(len(offsets) - 1):
        start, length = offsets[s], offsets[s + 1] - offsets[s]
        separator = 1 if used and s in first_sentences else 0
        if used and (used + separator + length > capacity or (separator and within_documents)):
            blocks.append((block_start, start))
            used, separator = 0, 0
        if not used:
            block_start = start
        # Only a sentence alone in its block can overflow it: cut off full blocks.
        while length > capacity:
            blocks.append((start, start + capacity))
            start += capacity
            length -= capacity
            block_start = start
        used += separator + length
    if used:
        blocks.append((block_start, offsets[-1]))
    return np.asarray(blocks, dtype=np.int64).reshape(-1, 2)


def assemble_block(
    tokens: np.ndarray, start: int, stop: int, document_starts: np.ndarray, *, cls_id: int, sep_id: int
) -> np.ndarray:
    """``[CLS] tokens[start:stop] [SEP]`` with a [SEP] before every document start inside.

    ``document_starts`` is the sorted token offset of every document's first token.
    """
    inside = document_starts[
        np.searchsorted(document_starts, start, side="right") : np.searchsorted(document_starts, stop, side="left")
    ]
    body = np.insert(np.asarray(tokens[start:stop], dtype=np.int64), inside - start, sep_id)
    return np.concatenate(([cls_id], body, [sep_id])).astype(np.int64)
