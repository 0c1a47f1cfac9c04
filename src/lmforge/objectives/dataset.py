"""BERT/RoBERTa pretraining examples read from prepared shards, and their collation.

``objective="mlm+nsp"`` builds BERT's sentence-pair instances (``lmforge.objectives.sentence_pairs``),
``"mlm"`` RoBERTa's FULL-SENTENCES blocks (``lmforge.objectives.packing``); both are masked by
``lmforge.objectives.mlm``. google-research/bert ``create_pretraining_data.py`` writes
``dupe_factor`` passes over the data, each with its own pairing and mask; here pass (round)
``epoch % dupe_factor`` is built when an epoch first needs it, and only the masks of
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
from lmforge.objectives.mlm import MaskingPolicy, mask_tokens
from lmforge.objectives.sentence_pairs import IS_RANDOM_NEXT, assemble_pair, build_instances
from lmforge.objectives.packing import assemble_block, pack_blocks

ObjectiveKind = Literal["mlm+nsp", "mlm"]  # BERT: MLM + NSP pairs; RoBERTa: MLM on packed blocks


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
    ) -> None:
        split_dir = _split_dir(Path(data_dir), split)
        manifest = read_manifest(split_dir.parent)
        if objective not in ("mlm+nsp", "mlm"):
            raise UserError(f"objective must be 'mlm+nsp' or 'mlm', not {objective!r}")
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
        self.word_start = np.load(split_dir.parent / manifest["word_start"]) if whole_word else None
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
            )
            self._round = dupe_round
        return self._instances

    def __len__(self) -> int:
        return len(self.instances(self.epoch))

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.example(index, self.epoch)

    def example(self, index: int, epoch: int) -> dict[str, np.ndarray]:
        """Example ``index`` of ``epoch``: int64 input_ids, token_type_ids, labels (and
        next_sentence_label for NSP)."""
        row = self.instances(epoch)[index]
        tokens = self.shards.tokens
        if self.objective == "mlm":
            input_ids = assemble_block(
                tokens, int(row[0]), int(row[1]), self._document_starts, cls_id=self.cls_id, sep_id=self.sep_id
            )
            token_type_ids = np.zeros_like(input_ids)
        else:
            input_ids, token_type_ids = assemble_pair(tokens, row, cls_id=self.cls_id, sep_id=self.sep_id)
        masked, labels = mask_tokens(
            input_ids,
            self.masking.rng(epoch, index),
            vocab_size=self.vocab_size,
            mask_id=self.mask_id,
            special_ids=self.special_ids,
            mlm_probability=self.mlm_probability,
            max_predictions=self.max_predictions,
            word_start=self.word_start,
        )
        example = {"input_ids": masked, "token_type_ids": token_type_ids, "labels": labels}
        if self.objective == "mlm+nsp":
            example["next_sentence_label"] = np.asarray(row[IS_RANDOM_NEXT], dtype=np.int64)
        return example


def _split_dir(path: Path, split: str) -> Path:
    if (path / "manifest.json").is_file():
        return path / split
    if (path.parent / "manifest.json").is_file():
        return path  # already a split directory
    raise UserError(f"{path} is neither a prepared data directory nor one of its splits (run `lmforge prepare`)")
