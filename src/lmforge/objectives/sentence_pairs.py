"""Next-sentence prediction (NSP) and ALBERT's sentence-order prediction (SOP): sentence pairs
(A, B) cut from document-level text, and their loss (the same two-way pair head serves both).

Follows ``create_instances_from_document`` and ``truncate_seq_pair`` in google-research/bert
``create_pretraining_data.py`` (Devlin et al. 2019, section 3.1), with the reference's draws
from Python's ``random.Random`` (only truncation's front-or-back coins are grouped by side):

- one target length per document: ``max_seq_length - 3``, or with ``short_seq_prob``
  ``randint(2, max_seq_length - 3)``;
- sentences accumulate into a chunk until the target length or the document end;
  A = the first ``a_end = randint(1, len(chunk) - 1)`` sentences (1 for a one-sentence chunk);
- with a one-sentence chunk, or with p 0.5, B is read from a random other document (10 tries)
  from a random sentence until B reaches ``target - len(A)``, and the unused chunk sentences are
  put back (label 1, the reference's ``is_random_next``); otherwise B is the rest of the chunk
  (label 0);
- truncation drops one token at a time from the longer side (B on ties), front or back with
  p 0.5, until ``len(A) + len(B) <= max_seq_length - 3``;
- layout ``[CLS] A [SEP] B [SEP]``, segment 0 through the first [SEP].

SOP (Lan et al. 2020, section 3.1) follows google-research/albert ``create_pretraining_data.py``
with ``random_next_sentence=False``: the same chunks and A/B split, but B is always the rest of
the chunk, and with p 0.5 the two consecutive segments are swapped (label 1, the reference's
``is_random_next``), else kept in order (label 0). The reference keeps BERT's branch for a
one-sentence chunk: B from a random other document, labelled 1, so SOP positives are a little
over half and some of them are NSP-style random pairs. ``single_sentence="skip"`` drops those
chunks instead (pure order prediction; their sentences are not used in that round);
the default ``"random_next"`` is the reference's behaviour.

The other difference is the seeding: the reference runs one generator through all documents
after shuffling them; here each (seed, round, document) has its own generator, so a document's
instances do not depend on the others' and any round can be rebuilt alone.

As in the reference, a one-sentence chunk always takes a random B, so NotNext is a little over
half: document ends add about one per document, and a short target (drawn per document) makes
many one-sentence chunks. On the Gutenberg books at 128 tokens: 54% NotNext, 15% of pairs
under 100 tokens.

A document is given as token offsets (the layout of ``lmforge.data.shards``): sentence ``s``
is ``tokens[sentence_offsets[s]:sentence_offsets[s + 1]]`` and document ``d`` holds sentences
``document_offsets[d]:document_offsets[d + 1]``. Sentences of a document are contiguous, so an
instance is four token offsets: A = ``tokens[a_start:a_end]``, B = ``tokens[b_start:b_end]``.

The loss is ``get_next_sentence_output`` of ``run_pretraining.py``: cross-entropy of the
two-way classifier on the pooled [CLS] vector, label 1 = B is a random sentence.
"""

from __future__ import annotations

import random
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

NSP_STREAM = 0  # seed stream of instance creation (masks use lmforge.objectives.mlm.MASK_STREAM)

# Columns of an instance table.
A_START, A_END, B_START, B_END, IS_RANDOM_NEXT = range(5)


def document_rng(seed: int, dupe_round: int, document_index: int) -> random.Random:
    """The generator that builds one document's instances in one round (dupe pass)."""
    state = np.random.SeedSequence([seed, NSP_STREAM, dupe_round, document_index]).generate_state(2, np.uint64)
    return random.Random(int(state[0]) << 64 | int(state[1]))


def truncation_counts(len_a: int, len_b: int, max_num_tokens: int) -> tuple[int, int]:
    """Tokens ``truncate_seq_pair`` removes from A and from B.

    The side it trims depends only on the two lengths (the longer one, B on ties), so the
    counts are fixed; only front-or-back is random.
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0
    # First the longer side shrinks to the shorter one's length ...
    cut_a = min(excess, max(0, len_a - len_b))
    cut_b = min(excess, max(0, len_b - len_a))
    # ... then equal lengths alternate B, A, B, ...
    rest = excess - cut_a - cut_b
    return cut_a + rest // 2, cut_b + (rest + 1) // 2


def _split_cut(cut: int, rng: random.Random) -> int:
    """How many of ``cut`` removals happen at the front: one coin per token, as the reference."""
    return sum(rng.random() < 0.5 for _ in range(cut))


def create_instances_from_document(
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    document_index: int,
    rng: random.Random,
    *,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    pair_task: Literal["nsp", "sop"] = "nsp",
    single_sentence: Literal["random_next", "skip"] = "random_next",
) -> list[tuple[int, int, int, int, int]]:
    """The instances of one document: rows ``(a_start, a_end, b_start, b_end, is_random_next)``.

    ``pair_task="sop"``: ALBERT's sentence order (label 1 = A and B swapped);
    ``single_sentence`` says what SOP does with a one-sentence chunk (module docstring).
    """
    num_documents = len(document_offsets) - 1
    first, last = int(document_offsets[document_index]), int(document_offsets[document_index + 1])
    # starts[k] = token offset of the document's k-th sentence; starts[n] = the document's end.
    starts = np.asarray(sentence_offsets[first : last + 1]).tolist()
    n = last - first

    # Account for [CLS], [SEP], [SEP].
    max_num_tokens = max_seq_length - 3
    # Drawn once per document, as in the reference; short sequences reduce the mismatch
    # between pretraining and fine-tuning lengths.
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)

    instances = []
    chunk_start = 0  # the current chunk is sentences chunk_start..i of the document
    i = 0
    while i < n:
        current_length = starts[i + 1] - starts[chunk_start]
        if i == n - 1 or current_length >= target_seq_length:
            chunk_size = i + 1 - chunk_start
            a_end = rng.randint(1, chunk_size - 1) if chunk_size >= 2 else 1
            a_start, a_stop = starts[chunk_start], starts[chunk_start + a_end]

            if chunk_size == 1 and pair_task == "sop" and single_sentence == "skip":
                chunk_start = i + 1
                i += 1
                continue
            if chunk_size == 1 or (pair_task == "nsp" and rng.random() < 0.5):
                is_random_next = 1
                target_b_length = target_seq_length - (a_stop - a_start)
                # Ten tries to avoid the same document; with one document it stays the same.
                for _ in range(10):
                    random_document = rng.randint(0, num_documents - 1)
                    if random_document != document_index:
                        break
                r_first = int(document_offsets[random_document])
                r_last = int(document_offsets[random_document + 1])
                random_start = r_first + rng.randint(0, r_last - r_first - 1)
                b_start = int(sentence_offsets[random_start])
                # Whole sentences until B reaches its target length or the document ends.
                ends = sentence_offsets[random_start + 1 : r_last + 1]
                k = min(int(np.searchsorted(ends, b_start + target_b_length)), len(ends) - 1)
                b_stop = int(ends[k])
                # The chunk's unused sentences are put back so they are not wasted.
                i -= chunk_size - a_end
            else:
                b_start, b_stop = a_stop, starts[i + 1]
                # SOP: the reference draws the swap only after the chunk-size test, as here
                swapped = pair_task == "sop" and rng.random() < 0.5
                is_random_next = int(swapped)
                if swapped:
                    a_start, a_stop, b_start, b_stop = b_start, b_stop, a_start, a_stop

            cut_a, cut_b = truncation_counts(a_stop - a_start, b_stop - b_start, max_num_tokens)
            front_a = _split_cut(cut_a, rng)
            front_b = _split_cut(cut_b, rng)
            instances.append(
                (
                    a_start + front_a,
                    a_stop - (cut_a - front_a),
                    b_start + front_b,
                    b_stop - (cut_b - front_b),
                    is_random_next,
                )
            )
            chunk_start = i + 1
        i += 1
    return instances


def build_instances(
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    *,
    seed: int,
    dupe_round: int,
    max_seq_length: int = 128,
    short_seq_prob: float = 0.1,
    pair_task: Literal["nsp", "sop"] = "nsp",
    single_sentence: Literal["random_next", "skip"] = "random_next",
) -> np.ndarray:
    """All documents' instances for one round, as an int64 table ``(N, 5)`` (columns above).

    A round is one of the reference's ``dupe_factor`` passes over the data.
    """
    if pair_task not in ("nsp", "sop") or single_sentence not in ("random_next", "skip"):
        raise ValueError(f"unknown pair task {pair_task!r} or single-sentence rule {single_sentence!r}")
    if max_seq_length < 5:
        raise ValueError("NSP needs max_seq_length >= 5 (two specials around at least one token each)")
    rows: list[tuple[int, int, int, int, int]] = []
    for d in range(len(document_offsets) - 1):
        rng = document_rng(seed, dupe_round, d)
        rows.extend(
            create_instances_from_document(
                sentence_offsets,
                document_offsets,
                d,
                rng,
                max_seq_length=max_seq_length,
                short_seq_prob=short_seq_prob,
                pair_task=pair_task,
                single_sentence=single_sentence,
            )
        )
    return np.asarray(rows, dtype=np.int64).reshape(-1, 5)


def assemble_pair(
    tokens: np.ndarray, instance: np.ndarray, *, cls_id: int, sep_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``[CLS] A [SEP] B [SEP]`` and its segment ids (0 through the first [SEP], then 1)."""
    a = tokens[instance[A_START] : instance[A_END]]
    b = tokens[instance[B_START] : instance[B_END]]
    input_ids = np.concatenate(([cls_id], a, [sep_id], b, [sep_id])).astype(np.int64)
    token_type_ids = np.zeros(len(input_ids), dtype=np.int64)
    token_type_ids[len(a) + 2 :] = 1
    return input_ids, token_type_ids


def next_sentence_loss_sum(pair_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed NSP cross-entropy of a batch: ``pair_logits`` (B, 2), ``labels`` (B,)."""
    return F.cross_entropy(pair_logits.float(), labels, reduction="sum")


def next_sentence_eval_sums(pair_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, tuple[float, int]]:
    """Held-out NSP loss and accuracy as (sum, count) pairs."""
    return {
        "nsp_loss": (float(next_sentence_loss_sum(pair_logits, labels)), labels.numel()),
        "nsp_accuracy": (float((pair_logits.argmax(-1) == labels).sum()), labels.numel()),
    }
