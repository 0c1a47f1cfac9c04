"""Pretraining objectives: example construction, corruption and collation (BERT MLM + NSP,
RoBERTa FULL-SENTENCES MLM)."""

from lmforge.objectives.dataset import PretrainingDataset, collate
from lmforge.objectives.masking import IGNORE_INDEX, MaskingPolicy, mask_tokens

__all__ = ["IGNORE_INDEX", "MaskingPolicy", "PretrainingDataset", "collate", "mask_tokens"]
