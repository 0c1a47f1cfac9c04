"""T5's span corruption (Raffel et al. 2020, section 3.1.4 and 3.3) as
google-research/text-to-text-transfer-transformer's ``t5.data.preprocessors`` builds it
(``span_corruption``, ``random_spans_helper``, ``random_spans_noise_mask``,
``noise_span_to_unique_sentinel``), and its i.i.d. and prefix-LM variants (``iid_denoising``,
``prefix_lm``).

Documents are concatenated with no separator (``reduce_concat_tokens``) and cut into raw
segments (``split_tokens``); the last, shorter segment is kept. For span corruption the raw
length is the longest whose corrupted inputs, with one sentinel per noise span and EOS, fit the
inputs length (``random_spans_helper``: inputs 512 -> raw 568, targets 114; 128 -> 141 / 29).
In a raw segment of n tokens, round(n x density) (at least 1, at most n - 1) are noise, in
max(1, round(noise / mean_span)) spans; the noise and the non-noise tokens are each cut into that
many non-empty parts uniformly at random and interleaved starting with non-noise, so a segment
always ends in noise. Rounding is half-to-even, as Python's and TensorFlow's.

Inputs: each noise span becomes one sentinel, span k the k-th sentinel (``<extra_id_k>``, which
T5 vocabularies put at vocab_size - 1 - k), then EOS. Targets: each non-noise span becomes the
sentinel of the same index, then EOS, so they read ``<extra_id_0> noise_1 <extra_id_1> noise_2
... noise_k </s>``. The decoder reads the targets shifted right after the pad id (T5's decoder
start). ``noise_mask="iid"`` draws each token's noise independently with the density (the
paper's baseline objective), ``"prefix_lm"`` splits a segment at a uniform point in [1, n - 1]
into inputs and targets, with no sentinels; both cut raw segments of inputs length - 1.

T5 concatenates 128 documents at a time, so its segments stop at those group boundaries; here
the whole split is one stream. Every draw comes from one generator seeded by
``(seed, epoch, index)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lmforge.data.prepare import read_manifest
from lmforge.data.shards import TokenShards
from lmforge.errors import UserError
from lmforge.tokenization.sentinels import SENTINEL_PATTERN, sentinel_ids

NoiseMask = Literal["random_spans", "iid", "prefix_lm"]
NOISE_MASKS = ("random_spans", "iid", "prefix_lm")
SPAN_STREAM = 4  # seed stream of the corruption, apart from the data order's


def _round(x: float) -> int:
    return int(round(x))  # half-to-even, as tf.round


def corrupted_lengths(raw_length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(inputs, targets) lengths of a corrupted raw segment, sentinels and EOS included."""
    noise = _round(raw_length * noise_density)
    spans = _round(noise / mean_noise_span_length)
    return raw_length - noise + spans + 1, noise + spans + 1


def random_spans_helper(inputs_length: int, noise_density: float = 0.15,
                        mean_noise_span_length: float = 3.0) -> tuple[int, int]:
    """T5's sizing: the longest raw segment whose corrupted inputs fit ``inputs_length``, and the
    targets length it gives (512 -> (568, 114))."""
    raw = inputs_length - 1
    while corrupted_lengths(raw + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
        raw += 1
    targets = corrupted_lengths(raw, noise_density, mean_noise_span_length)[1]
    if noise_density == 0.5 and targets > inputs_length:  # T5's hack: equal lengths at density 0.5
        raw, targets = raw - 1, targets - 1
    return raw, targets


def _random_segmentation(items: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """``items`` cut into ``segments`` non-empty parts, uniformly over the cut points."""
    first_in_segment = np.zeros(items, dtype=np.int64)
    first_in_segment[1:] = rng.permutation(np.arange(items - 1) < segments - 1)
    return np.bincount(np.cumsum(first_in_segment), minlength=segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Bool noise mask of ``length`` tokens: alternating non-noise / noise spans, ending in noise."""
    padded = max(length, 2)  # as T5: a 1-token segment is masked as if it had 2
    noise = min(max(_round(padded * noise_density), 1), padded - 1)
    # T5 assumes noise spans <= non-noise tokens; past that (density > ~0.5) fewer, longer spans
    spans = min(max(_round(noise / mean_noise_span_length), 1), padded - noise)
    noise_lengths = _random_segmentation(noise, spans, rng)
    nonnoise_lengths = _random_segmentation(padded - noise, spans, rng)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
    span_number = np.repeat(np.arange(2 * spans), interleaved)
    return (span_number % 2 == 1)[:length]


def iid_noise_mask(length: int, noise_density: float, rng: np.random.Generator) -> np.ndarray:
    return rng.random(length) < noise_density


def random_prefix_noise_mask(length: int, rng: np.random.Generator) -> np.ndarray:
    """True on a prefix of uniform length in [1, length - 1] (T5's prefix_lm: the prefix is the input)."""
    if length < 2:
        return np.ones(length, dtype=bool)
    return np.arange(length) < int(rng.integers(1, length))


def spans_to_sentinels(tokens: np.ndarray, replaced: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """Each run of ``replaced`` tokens becomes one sentinel, the k-th run ``sentinel_ids[k]``
    (past the last sentinel, runs reuse it). T5's ``noise_span_to_unique_sentinel`` with
    ``replaced`` = the noise mask, ``nonnoise_span_to_unique_sentinel`` with its negation."""
    previous = np.concatenate(([False], replaced[:-1]))
    first = replaced & ~previous
    run = np.minimum(np.cumsum(first) - 1, len(sentinel_ids) - 1)
    out = np.where(first, sentinel_ids[np.maximum(run, 0)], tokens)
    return out[~(replaced & previous)]


def corrupt(tokens: np.ndarray, noise_mask: np.ndarray, sentinel_ids: np.ndarray | None, eos_id: int,
            ) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of one raw segment, EOS appended. ``sentinel_ids`` None: prefix-LM
    (inputs keep the masked prefix, targets the rest)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if sentinel_ids is None:
        inputs, targets = tokens[noise_mask], tokens[~noise_mask]
    else:
        inputs = spans_to_sentinels(tokens, noise_mask, sentinel_ids)
        targets = spans_to_sentinels(tokens, ~noise_mask, sentinel_ids)
    return np.append(inputs, eos_id), np.append(targets, eos_id)


def sentinel_ids_of(tokenizer, count: int = 100) -> np.ndarray:
    """The tokenizer's ``<extra_id_0>``, ``<extra_id_1>``, ... (as many as it has, up to ``count``;
    T5: the last ids of the vocabulary, descending); none is the shared one-line error."""
    available = 0
    while available < count and tokenizer.token_to_id(SENTINEL_PATTERN.format(available)) is not None:
        available += 1
    return np.asarray(sentinel_ids(tokenizer, max(available, 1)), dtype=np.int64)


class SpanCorruptionDataset(torch.utils.data.Dataset):
    """T5 examples of one prepared split: ``input_ids`` and ``labels`` (the targets), both ending
    in EOS; the decoder's inputs are made by the objective's collation."""

    def __init__(self, data_dir: str | os.PathLike, split: str = "train", *, inputs_length: int = 512,
                 sentinel_ids: np.ndarray, noise_density: float = 0.15, mean_noise_span_length: float = 3.0,
                 noise_mask: NoiseMask = "random_spans", seed: int = 12345) -> None:
        from lmforge.objectives.dataset import _split_dir

        if noise_mask not in NOISE_MASKS:
            raise UserError(f"span corruption noise_mask must be one of {', '.join(NOISE_MASKS)}, got {noise_mask!r}")
        if not 0 < noise_density < 1 or not mean_noise_span_length >= 1:
            raise UserError("span corruption needs 0 < noise_density < 1 and mean_noise_span_length >= 1")
        if noise_mask == "prefix_lm" and noise_density != 0.5:
            raise UserError("prefix_lm splits segments uniformly (T5's noise density 0.5); set noise_density: 0.5")
        split_dir = _split_dir(Path(data_dir), split)
        info = read_manifest(split_dir.parent)["tokenizer"]
        if info.get("eos_id") is None:
            raise UserError("span corruption needs a tokenizer with an end-of-text (eos) token; "
                            "set data.tokenizer_kind: t5_unigram")
        self.eos_id = int(info["eos_id"])
        self.shards = TokenShards(split_dir)
        if self.shards.num_tokens < 2:
            raise UserError(f"{split_dir} holds fewer than 2 tokens")
        self.sentinel_ids = np.asarray(sentinel_ids, dtype=np.int64)
        self.noise_density, self.mean_noise_span_length, self.noise_mask = (noise_density, mean_noise_span_length,
                                                                            noise_mask)
        if noise_mask == "random_spans":
            self.raw_length, self.targets_length = random_spans_helper(inputs_length, noise_density,
                                                                       mean_noise_span_length)
        else:
            self.raw_length, self.targets_length = inputs_length - 1, inputs_length
        self.inputs_length, self.seed, self.epoch = inputs_length, seed, 0
        if noise_mask == "random_spans":
            spans = max(_round(_round(self.raw_length * noise_density) / mean_noise_span_length), 1)
            if spans > len(self.sentinel_ids):
                raise UserError(f"span corruption at inputs length {inputs_length} makes {spans} spans, but the "
                                f"vocabulary has {len(self.sentinel_ids)} sentinels")
        # the short tail segment is kept, unless it is a lone token (nothing to split)
        self.num_segments = -(-self.shards.num_tokens // self.raw_length)
        if self.shards.num_tokens % self.raw_length == 1:
            self.num_segments -= 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_segments

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.example(index, self.epoch)

    def example(self, index: int, epoch: int) -> dict[str, np.ndarray]:
        if not 0 <= index < self.num_segments:
            raise IndexError(index)
        start = index * self.raw_length
        tokens = np.asarray(self.shards.tokens[start:start + self.raw_length], dtype=np.int64)
        rng = np.random.default_rng([self.seed, SPAN_STREAM, epoch, index])
        if self.noise_mask == "random_spans":
            mask = random_spans_noise_mask(len(tokens), self.noise_density, self.mean_noise_span_length, rng)
        elif self.noise_mask == "iid":
            mask = iid_noise_mask(len(tokens), self.noise_density, rng)
        else:
            mask = random_prefix_noise_mask(len(tokens), rng)
        inputs, targets = corrupt(tokens, mask, None if self.noise_mask == "prefix_lm" else self.sentinel_ids,
                                  self.eos_id)
        return {"input_ids": inputs, "labels": targets}
