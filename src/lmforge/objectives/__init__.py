"""Pretraining objectives: example construction, corruption, collation and loss.

- ``base``: the protocol the training loop runs (shared with the fine-tuning tasks), the one
  ``collate`` and ``IGNORE_INDEX``.
- ``mlm``: BERT's masked-LM corruption (token or whole-word units, ALBERT's n-grams),
  fairseq's RoBERTa masking, and the loss (``MaskedLMObjective``, with NSP or SOP when the
  batch has sentence pairs).
- ``sentence_pairs``: BERT's next-sentence and ALBERT's sentence-order pairs, and their loss.
- ``packing``: RoBERTa's FULL-SENTENCES blocks for MLM alone.
- ``dataset``: the examples of a prepared split, per (seed, epoch, index).
- ``clm``: GPT/GPT-2 causal LM: end-of-text-joined documents in contiguous blocks (optionally
  with attention kept inside each document), next-token loss and perplexity.
- ``denoising``: BART's noise (fairseq's DenoisingDataset: masking, deletion, text infilling,
  sentence permutation, rotation, insertion) and its dataset of document blocks.
- ``span_corruption``: T5's span corruption (and its i.i.d. and prefix-LM variants) over packed
  raw segments, sentinels from the top of the vocabulary.
- ``seq2seq``: the teacher-forced encoder-decoder loss of both, and the datasets of a run.
"""

from lmforge.objectives.base import IGNORE_INDEX, Objective, collate
from lmforge.objectives.dataset import PretrainingDataset
from lmforge.objectives.mlm import MaskedLMObjective, MaskingPolicy, mask_tokens

__all__ = ["IGNORE_INDEX", "MaskedLMObjective", "MaskingPolicy", "Objective", "PretrainingDataset", "collate",
           "mask_tokens"]
