"""BERT/RoBERTa/ALBERT pretraining examples read from prepared shards, and their collation.

``objective="mlm+nsp"`` builds BERT's sentence-pair instances (``lmforge.objectives.sentence_pairs``),
``"mlm+sop"`` ALBERT's sentence-order pairs (same module), ``"mlm"`` RoBERTa's FULL-SENTENCES
blocks (``lmforge.objectives.packing``); all are masked by ``lmforge.objectives.mlm``:
``masking_unit`` "token", "whole_word" or "ngram" (ALBERT: n-grams of whole words up to
``max_ngram``), with BERT's selection (``masking_scheme="bert"``) or fairseq's
(``"fairseq"``, RoBERTa). Whole words come from the tokenizer kind's word-start rule plus the
first token of every sentence (byte-level BPE writes a sentence's first word without "Ġ").

google-research/bert ``create_pretraining_data.py`` writes ``dupe_factor`` passes over the
data, each with its own pairing and mask; here pass (round) ``epoch % dupe_factor`` is built
when an epoch first needs it, and only the masks of
``masking="dynamic"`` change every epoch, seeded by ``(seed, epoch, index)`` as fairseq's
datasets are. Everything is a function of ``(seed, epoch, index)``, so any example can be
rebuilt, in any process, in any order.

Instances are stored as token offsets into the split's memory-mapped token file (a few int64
per instance), never as copies of the tokens.
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
from lmforge.objectives.base import collate  # noqa: F401 (the batcher of these examples, importable here)
from lmforge.objectives.mlm import MaskingPolicy, fairseq_mask_tokens, mask_tokens
from lmforge.objectives.sentence_pairs import IS_RANDOM_NEXT, assemble_pair, build_instances
from lmforge.objectives.packing import assemble_block, pack_blocks

ObjectiveKind = Literal["mlm+nsp", "mlm+sop", "mlm"]  # BERT, ALBERT, RoBERTa (MLM on packed blocks)
OBJECTIVE_KINDS = ("mlm+nsp", "mlm+sop", "mlm")
MaskingUnit = Literal["token", "whole_word", "ngram"]
MASKING_UNITS = ("token", "whole_word", "ngram")
MASKING_SCHEMES = ("bert", "fairseq")


class PretrainingDataset(torch.utils.data.Dataset):
    """Masked-LM (and NSP) examples of one prepared split.

    ``data_dir`` is a ``lmforge prepare`` output directory (then ``split`` picks the split) or one
    of its split directories. Call ``set_epoch(epoch)`` before iterating an epoch: with NSP the
    number of instances depends on the round, so ``len()`` can change between epochs.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        split: str = "train",
        *,
        max_seq_length: int = 128,
        objective: ObjectiveKind = "mlm+nsp",
        masking: Literal["dynamic", "static"] = "dynamic",
        dupe_factor: int = 10,
        whole_word: bool = False,
        mlm_probability: float = 0.15,
        max_predictions: int | None = 20,
        short_seq_prob: float = 0.1,
        seed: int = 12345,
        masking_unit: MaskingUnit | None = None,
        max_ngram: int = 3,
        masking_scheme: Literal["bert", "fairseq"] = "bert",
        sop_single_sentence: Literal["random_next", "skip"] = "random_next",
    ) -> None:
        split_dir = _split_dir(Path(data_dir), split)
        manifest = read_manifest(split_dir.parent)
        if objective not in OBJECTIVE_KINDS:
            raise UserError(f"objective must be one of {', '.join(OBJECTIVE_KINDS)}, not {objective!r}")
        # whole_word=True is the older spelling of masking_unit="whole_word"
        masking_unit = masking_unit or ("whole_word" if whole_word else "token")
        if masking_unit not in MASKING_UNITS:
            raise UserError(f"masking unit must be one of {', '.join(MASKING_UNITS)}, not {masking_unit!r}")
        if masking_scheme not in MASKING_SCHEMES:
            raise UserError(f"masking scheme must be one of {', '.join(MASKING_SCHEMES)}, not {masking_scheme!r}")
        if masking_scheme == "fairseq" and masking_unit == "ngram":
            raise UserError("n-gram masking follows ALBERT's selection: use masking scheme 'bert' with it")
        if masking_unit == "ngram" and max_ngram < 1:
            raise UserError(f"max_ngram must be at least 1, got {max_ngram}")
        self.shards = TokenShards(split_dir)
        if self.shards.num_documents == 0:
            raise UserError(f"{split_dir} holds no documents")
        info = manifest["tokenizer"]
        self.vocab_size = int(manifest["vocab_size"])
        self.cls_id, self.sep_id = int(info["cls_id"]), int(info["sep_id"])
        self.mask_id, self.pad_id = int(info["mask_id"]), int(info["pad_id"])
        # The reference excludes only [CLS]/[SEP] from masking and keeps [UNK] a candidate;
        # [PAD]/[MASK] (and other specials) are excluded too, they never occur in prepared text.
        self.special_ids = frozenset(info["special_ids"]) - {info["unk_id"]}
        # fairseq draws random replacements from the non-special ids, <unk> excluded
        self._all_special_ids = frozenset(info["special_ids"]) | ({info["unk_id"]} - {None})
        by_words = masking_unit != "token"
        self.word_start = np.load(split_dir.parent / manifest["word_start"]) if by_words else None
        self.masking_unit = masking_unit
        self.max_ngram = max_ngram if masking_unit == "ngram" else 1
        self.masking_scheme = masking_scheme
        self.sop_single_sentence = sop_single_sentence
        self.max_seq_length = max_seq_length
        self.objective = objective
        self.masking = MaskingPolicy(seed, masking, dupe_factor)
        self.dupe_factor = dupe_factor
        self.mlm_probability = mlm_probability
        self.max_predictions = max_predictions
        self.short_seq_prob = short_seq_prob
        self.seed = seed
        self.epoch = 0
        self._document_starts = self.shards.document_token_starts()
        self._round: int | None = None
        self._instances = np.empty((0, 5), dtype=np.int64)
        if objective == "mlm":
            # Packing has no randomness: one set of blocks serves every epoch.
            self._instances = pack_blocks(self.shards.sentence_offsets, self.shards.document_offsets, max_seq_length)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def instances(self, epoch: int) -> np.ndarray:
        """The instance table of ``epoch``: NSP rows of ``lmforge.objectives.sentence_pairs``, or block ranges."""
        if self.objective == "mlm":
            return self._instances
        dupe_round = epoch % self.dupe_factor
        if self._round != dupe_round:
            self._instances = build_instances(
                self.shards.sentence_offsets,
                self.shards.document_offsets,
                seed=self.seed,
                dupe_round=dupe_round,
                max_seq_length=self.max_seq_length,
                short_seq_prob=self.short_seq_prob,
                pair_task="sop" if self.objective == "mlm+sop" else "nsp",
                single_sentence=self.sop_single_sentence,
            )
            self._round = dupe_round
        return self._instances

    def __len__(self) -> int:
        return len(self.instances(self.epoch))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.example(index, self.epoch)

    def example(self, index: int, epoch: int) -> dict[str, np.ndarray]:
        """Example ``index`` of ``epoch``: int64 input_ids, token_type_ids, labels (and
        next_sentence_label for NSP and SOP)."""
        row = self.instances(epoch)[index]
        tokens = self.shards.tokens
        sentence_starts = None
        if self.objective == "mlm":
            start, stop = int(row[0]), int(row[1])
            input_ids = assemble_block(tokens, start, stop, self._document_starts, cls_id=self.cls_id,
                                       sep_id=self.sep_id)
            token_type_ids = np.zeros_like(input_ids)
            if self.word_start is not None:
                # the same assembly over flags: separators and [CLS]/[SEP] are not sentence starts
                sentence_starts = assemble_block(self._sentence_flags(start, stop), 0, stop - start,
                                                 self._document_starts - start, cls_id=0, sep_id=0)
        else:
            input_ids, token_type_ids = assemble_pair(tokens, row, cls_id=self.cls_id, sep_id=self.sep_id)
            if self.word_start is not None:
                sentence_starts = np.concatenate([[0], self._sentence_flags(int(row[0]), int(row[1])), [0],
                                                  self._sentence_flags(int(row[2]), int(row[3])), [0]])
        if sentence_starts is not None:
            sentence_starts = sentence_starts.astype(bool)
        common = dict(vocab_size=self.vocab_size, mask_id=self.mask_id, special_ids=self.special_ids,
                      mlm_probability=self.mlm_probability, word_start=self.word_start,
                      sentence_starts=sentence_starts)
        rng = self.masking.rng(epoch, index)
        if self.masking_scheme == "fairseq":
            masked, labels = fairseq_mask_tokens(input_ids, rng, **{**common, "special_ids": self._all_special_ids})
        else:
            masked, labels = mask_tokens(input_ids, rng, max_predictions=self.max_predictions,
                                         max_ngram=self.max_ngram, **common)
        example = {"input_ids": masked, "token_type_ids": token_type_ids, "labels": labels}
        if self.objective != "mlm":  # NSP's or SOP's label, for the same pair head
            example["next_sentence_label"] = np.asarray(row[IS_RANDOM_NEXT], dtype=np.int64)
        return example

    def _sentence_flags(self, start: int, stop: int) -> np.ndarray:
        """int64 per token of ``[start, stop)``: 1 where a sentence begins."""
        offsets = self.shards.sentence_offsets
        inside = offsets[np.searchsorted(offsets, start) : np.searchsorted(offsets, stop)]
        flags = np.zeros(stop - start, dtype=np.int64)
        flags[np.asarray(inside, dtype=np.int64) - start] = 1
        return flags


def _split_dir(path: Path, split: str) -> Path:
    if (path / "manifest.json").is_file():
        return path / split
    if (path.parent / "manifest.json").is_file():
        return path  # already a split directory
    raise UserError(f"{path} is neither a prepared data directory nor one of its splits (run `lmforge prepare`)")
