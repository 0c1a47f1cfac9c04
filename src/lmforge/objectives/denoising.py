"""BART's denoising objective (Lewis et al. 2020) as fairseq's ``DenoisingDataset`` builds it
(fairseq/data/denoising_dataset.py, fairseq/tasks/denoising.py).

A document block ``<s> tokens </s>`` is the target; the encoder reads a corrupted copy. The
noise functions run in fairseq's order, each with its own rate (``DenoisingNoise``):

1. sentence permutation (``permute_sentences``): ceil(n x p) of the block's n sentences are
   shuffled among themselves (p = 1: all of them);
2. masking (``mask``): ceil(#word starts x mask) words are chosen; ``mask_length`` "subword"
   treats every token as a word, "word" extends each choice over its whole word, and
   "span-poisson" draws span lengths from Poisson(``poisson_lambda``) (pmf truncated after the
   first value below 1e-7, as fairseq's), keeping the shortest prefix of draws that reaches the
   budget and setting its last length to the remainder; zero-length spans become insertions.
   A span covers that many whole words (word starts: the byte-level BPE leading-space marker,
   fairseq's ``mask_whole_words``) and never reaches ``</s>``. ``replace_length`` 1 turns the
   span's first token into ``<mask>`` (or, with probability ``mask_random`` per span, a random
   id in [1, V)) and deletes the rest, -1 replaces every token, 0 deletes the span. Token
   masking is "subword" with replace_length 1, token deletion replace_length 0, text infilling
   "span-poisson" with replace_length 1;
3. insertion (``insert``): ceil(n x insert) ``<mask>``/random tokens at interior positions
   (ceil(k x mask_random) of them random);
4. document rotation (with probability ``rotate``): the body is rotated to start at a uniform
   offset in [1, n - 1]; ``<s>`` and ``</s>`` stay in place.

``<s>`` and ``</s>`` are never noised. Every draw comes from one generator seeded by
``(seed, epoch, index)`` (fairseq: ``numpy_seed(seed, epoch, index)``), so any example can be
rebuilt anywhere.

Differences from fairseq, on purpose: sentences are the prepared data's sentences (fairseq reads
them off the full-stop id, ``full_stop_sentence_ends``, because its binarized blocks lost the
line boundaries), the first token of every sentence counts as a word start (byte-level BPE
writes a document's first word without the space marker, which fairseq can never mask), and the
zero-length spans insert exactly their count of masks (fairseq recomputes it through a float
ratio). Blocks are whole sentences of one document up to ``max_seq_length - 2`` tokens (fairseq's
``complete_doc``); a source that insertions made longer than ``max_seq_length`` is cut before its
``</s>``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lmforge.data.prepare import read_manifest
from lmforge.data.shards import TokenShards
from lmforge.errors import UserError
from lmforge.objectives.packing import pack_blocks

MaskLength = Literal["subword", "word", "span-poisson"]
NOISE_STREAM = 3  # seed stream of the noise, apart from the data order's and MLM's


@dataclass(frozen=True)
class DenoisingNoise:
    """fairseq's denoising task options (same names and meanings; its defaults are the
    ``fairseq-defaults`` preset)."""

    mask: float = 0.0  # share of word starts masked
    mask_random: float = 0.0  # per span: a random token instead of <mask>
    insert: float = 0.0  # extra <mask>/random tokens, as a share of the length
    rotate: float = 0.0  # probability of rotating the document
    permute_sentences: float = 0.0  # share of sentences shuffled
    poisson_lambda: float = 3.0  # mean span length of span-poisson
    mask_length: MaskLength = "subword"
    replace_length: int = 0  # 1: one token per span, 0: delete, -1: one per token

    def __post_init__(self) -> None:
        for name in ("mask", "mask_random", "insert", "rotate", "permute_sentences"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UserError(f"denoising {name} must be in [0, 1], got {getattr(self, name)}")
        if self.mask_length not in ("subword", "word", "span-poisson"):
            raise UserError(f"denoising mask_length must be subword, word or span-poisson, got {self.mask_length!r}")
        if self.replace_length not in (-1, 0, 1):
            raise UserError(f"denoising replace_length must be -1, 0 or 1, got {self.replace_length}")
        if self.mask_length == "subword" and self.replace_length == -1:
            raise UserError("denoising mask_length subword needs replace_length 0 or 1 (as fairseq)")
        if self.mask_length == "span-poisson" and not self.poisson_lambda > 0:
            raise UserError(f"denoising poisson_lambda must be positive, got {self.poisson_lambda}")

    def replace(self, **changes) -> "DenoisingNoise":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise UserError(f"unknown denoising option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


_MASKING = dict(mask=0.3, rotate=0.0)
NOISE_PRESETS: dict[str, DenoisingNoise] = {
    # the authors' BART-large command (fairseq issue 1614): text infilling + sentence permutation
    "bart-large": DenoisingNoise(mask=0.3, mask_random=0.1, insert=0.0, rotate=0.0, permute_sentences=1.0,
                                 poisson_lambda=3.5, mask_length="span-poisson", replace_length=1),
    # fairseq's DenoisingConfig defaults: rotation only
    "fairseq-defaults": DenoisingNoise(mask=0.0, mask_random=0.0, insert=0.0, rotate=0.5, permute_sentences=0.0,
                                       poisson_lambda=3.0, mask_length="subword", replace_length=0),
    # the paper's single noise functions (section 2.2); its ablations state no rates, these use
    # BART-large's 30% and the paper's lambda 3
    "token-masking": DenoisingNoise(mask_length="subword", replace_length=1, **_MASKING),
    "token-deletion": DenoisingNoise(mask_length="subword", replace_length=0, **_MASKING),
    "text-infilling": DenoisingNoise(mask_length="span-poisson", replace_length=1, poisson_lambda=3.0, **_MASKING),
    "sentence-permutation": DenoisingNoise(permute_sentences=1.0),
    "document-rotation": DenoisingNoise(rotate=1.0),
}


def noise_preset(name: str, **overrides) -> DenoisingNoise:
    if name not in NOISE_PRESETS:
        raise UserError(f"unknown denoising preset {name!r}; choose one of {', '.join(NOISE_PRESETS)}")
    return NOISE_PRESETS[name].replace(**overrides)


def poisson_span_probabilities(poisson_lambda: float) -> np.ndarray:
    """fairseq's truncated Poisson pmf over lengths 0, 1, ...: terms up to and including the first
    one below 1e-7 (lengths 0..17 at lambda 3), renormalised."""
    terms, term, k = [], math.exp(-poisson_lambda), 0
    while True:
        terms.append(term)
        if term < 1e-7 or k >= 127:
            break
        k += 1
        term *= poisson_lambda / k
    probs = np.asarray(terms, dtype=np.float64)
    return probs / probs.sum()


def sample_span_lengths(budget: int, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Span lengths (zeros included) summing to exactly ``budget``: draws of ``budget`` at a time
    until they reach it, the shortest prefix that does, its last length cut to the remainder."""
    lengths = rng.choice(len(probs), size=budget, p=probs)
    while lengths.sum() < budget:
        lengths = np.concatenate([lengths, rng.choice(len(probs), size=budget, p=probs)])
    count = int(np.searchsorted(np.cumsum(lengths), budget)) + 1  # first prefix sum >= budget
    lengths = lengths[:count].copy()
    lengths[-1] = budget - lengths[:-1].sum()
    return lengths


def full_stop_sentence_ends(tokens: np.ndarray, full_stop_id: int) -> np.ndarray:
    """fairseq's sentence ends in ``<s> ... </s>``: after each full stop not preceded by one, and
    after the last real token; exclusive positions."""
    stops = tokens == full_stop_id
    stops[-2] = True
    return np.flatnonzero(stops[1:] & ~stops[:-1]) + 2


def permute_sentences(tokens: np.ndarray, word_starts: np.ndarray, sentence_ends: np.ndarray, share: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ceil(n x share) of the n sentences ``[1, ends[0]), [ends[0], ends[1]), ...`` among
    the positions they held; ``word_starts`` (per position) moves with its tokens."""
    count = len(sentence_ends)
    chosen = rng.permutation(count)[: math.ceil(count * share)]
    ordering = np.arange(count)
    ordering[chosen] = chosen[rng.permutation(len(chosen))]
    starts = np.concatenate(([1], sentence_ends[:-1]))
    order = np.concatenate([[0], *[np.arange(starts[i], sentence_ends[i]) for i in ordering],
                            np.arange(sentence_ends[-1], len(tokens))]).astype(np.int64)
    return tokens[order], word_starts[order]


def insert_noise(tokens: np.ndarray, count: int, rng: np.random.Generator, mask_id: int, vocab_size: int,
                 mask_random: float) -> np.ndarray:
    """``count`` new tokens at random interior positions: ceil(count x mask_random) random ids in
    [1, V), the rest ``<mask>``."""
    if count == 0:
        return tokens
    total = len(tokens) + count
    positions = rng.permutation(total - 2)[:count] + 1
    num_random = math.ceil(count * mask_random)
    result = np.empty(total, dtype=np.int64)
    is_new = np.zeros(total, dtype=bool)
    is_new[positions] = True
    result[positions[num_random:]] = mask_id
    result[positions[:num_random]] = rng.integers(1, vocab_size, size=num_random)
    result[~is_new] = tokens
    return result


def rotate(tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The body rotated to start at a uniform offset in [1, n - 1] (both ends: no change)."""
    offset = int(rng.integers(1, max(1, len(tokens) - 1) + 1))
    return np.concatenate((tokens[:1], tokens[offset:-1], tokens[1:offset], tokens[-1:]))


@dataclass
class MaskingRecord:
    """What one masking pass did (for statistics): spans with a length, zero-length spans."""

    spans: int = 0
    inserts: int = 0


def mask_words(tokens: np.ndarray, word_starts: np.ndarray, noise: DenoisingNoise, rng: np.random.Generator,
               mask_id: int, vocab_size: int, span_probs: np.ndarray | None = None,
               record: MaskingRecord | None = None) -> np.ndarray:
    """fairseq's ``add_whole_word_mask`` on ``<s> ... </s>``; ``word_starts`` is per position
    (ignored for ``mask_length`` subword, where every token is a word)."""
    starts = np.ones(len(tokens), dtype=bool) if noise.mask_length == "subword" else word_starts.astype(bool)
    starts[0] = starts[-1] = False
    budget = math.ceil(int(starts.sum()) * noise.mask)
    if budget == 0:
        return tokens
    inserts = 0
    if noise.mask_length == "span-poisson":
        if span_probs is None:
            span_probs = poisson_span_probabilities(noise.poisson_lambda)
        lengths = sample_span_lengths(budget, span_probs, rng)
        inserts = int((lengths == 0).sum())
        lengths = lengths[lengths > 0]
    else:
        lengths = np.ones(budget, dtype=np.int64)
    if record is not None:
        record.spans, record.inserts = len(lengths), inserts
    if len(lengths) == 0:
        return insert_noise(tokens, inserts, rng, mask_id, vocab_size, noise.mask_random)
    positions = rng.permutation(np.flatnonzero(starts))[: len(lengths)]
    use_random = rng.random(len(positions)) < noise.mask_random
    source, keep = tokens.copy(), np.ones(len(tokens), dtype=bool)

    def replace(at: np.ndarray, random: np.ndarray) -> None:
        source[at] = mask_id
        source[at[random]] = rng.integers(1, vocab_size, size=int(random.sum()))

    if noise.replace_length == 0:
        keep[positions] = False
    else:
        replace(positions, use_random)
    # Walk every span forward: a word start uses up one length, the end of the document stops it.
    step_cost = starts.astype(np.int64)
    step_cost[-1] = len(tokens)
    remaining = lengths - 1
    while len(positions):
        remaining = remaining - step_cost[positions + 1]
        going = remaining >= 0
        positions, use_random, remaining = positions[going] + 1, use_random[going], remaining[going]
        if noise.replace_length == -1:
            replace(positions, use_random)
        else:
            keep[positions] = False
    return insert_noise(source[keep], inserts, rng, mask_id, vocab_size, noise.mask_random)


class DenoisingNoiser:
    """All of BART's noise on one ``<s> ... </s>`` block, in fairseq's order."""

    def __init__(self, noise: DenoisingNoise, mask_id: int, vocab_size: int) -> None:
        self.noise, self.mask_id, self.vocab_size = noise, mask_id, vocab_size
        self.span_probs = (poisson_span_probabilities(noise.poisson_lambda)
                           if noise.mask_length == "span-poisson" else None)

    def __call__(self, tokens: np.ndarray, word_starts: np.ndarray, sentence_ends: np.ndarray,
                 rng: np.random.Generator, record: MaskingRecord | None = None) -> np.ndarray:
        """``word_starts``: bool per position; ``sentence_ends``: exclusive sentence end positions
        (the last is ``len(tokens) - 1``)."""
        noise, source = self.noise, np.asarray(tokens, dtype=np.int64)
        if noise.permute_sentences > 0:
            source, word_starts = permute_sentences(source, word_starts, sentence_ends, noise.permute_sentences, rng)
        if noise.mask > 0:
            source = mask_words(source, word_starts, noise, rng, self.mask_id, self.vocab_size, self.span_probs,
                                record)
        if noise.insert > 0:
            source = insert_noise(source, math.ceil(len(source) * noise.insert), rng, self.mask_id,
                                  self.vocab_size, noise.mask_random)
        if noise.rotate > 0 and rng.random() < noise.rotate:
            source = rotate(source, rng)
        return source


class DenoisingDataset(torch.utils.data.Dataset):
    """BART examples of one prepared split: ``input_ids`` (the noised block) and ``labels`` (the
    clean ``<s> ... </s>``); the decoder's inputs are made by the objective's collation."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", *, max_seq_length: int = 512,
                 noise: DenoisingNoise, seed: int = 12345) -> None:
        from lmforge.objectives.dataset import _split_dir

        split_dir = _split_dir(Path(data_dir), split)
        manifest = read_manifest(split_dir.parent)
        info = dict(manifest["tokenizer"])
        if info.get("bos_id") is None:  # manifests record <s> as the cls role
            info["bos_id"] = info.get("cls_id")
        missing = [role for role in ("bos", "eos", "mask") if info.get(f"{role}_id") is None]
        if missing:
            raise UserError(f"BART denoising needs a tokenizer with {'/'.join(missing)} tokens; "
                            "set data.tokenizer_kind: byte_bpe")
        self.shards = TokenShards(split_dir)
        if self.shards.num_documents == 0:
            raise UserError(f"{split_dir} holds no documents")
        self.bos_id, self.eos_id, self.mask_id = int(info["bos_id"]), int(info["eos_id"]), int(info["mask_id"])
        self.vocab_word_starts = np.load(split_dir.parent / manifest["word_start"])
        self.noiser = DenoisingNoiser(noise, self.mask_id, int(manifest["vocab_size"]))
        self.max_seq_length, self.seed, self.epoch = max_seq_length, seed, 0
        self.blocks = pack_blocks(self.shards.sentence_offsets, self.shards.document_offsets, max_seq_length,
                                  within_documents=True)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.example(index, self.epoch)

    def clean_block(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``<s> tokens </s>`` of block ``index``, its word starts and its sentence ends."""
        start, stop = (int(x) for x in self.blocks[index])
        body = np.asarray(self.shards.tokens[start:stop], dtype=np.int64)
        tokens = np.concatenate(([self.bos_id], body, [self.eos_id]))
        offsets = self.shards.sentence_offsets
        inside = np.asarray(offsets[np.searchsorted(offsets, start, side="right"):np.searchsorted(offsets, stop)],
                            dtype=np.int64)
        word_starts = self.vocab_word_starts[tokens]
        word_starts[inside - start + 1] = True  # a sentence's first token starts a word
        word_starts[1] = True
        sentence_ends = np.append(inside - start + 1, len(tokens) - 1)
        return tokens, word_starts, sentence_ends

    def example(self, index: int, epoch: int) -> dict[str, np.ndarray]:
        tokens, word_starts, sentence_ends = self.clean_block(index)
        rng = np.random.default_rng([self.seed, NOISE_STREAM, epoch, index])
        source = self.noiser(tokens, word_starts, sentence_ends, rng)
        if len(source) > self.max_seq_length:  # only insertions lengthen it
            source = np.append(source[: self.max_seq_length - 1], self.eos_id)
        return {"input_ids": source, "labels": tokens}
