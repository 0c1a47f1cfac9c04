"""Sub-word tokenizers for every lmforge family, as a thin layer over HF ``tokenizers`` (Rust).

- ``kinds``: the table of tokenizer kinds (WordPiece/BERT, BPE/GPT, byte-level BPE in RoBERTa's
  and GPT-2's layouts, SentencePiece unigram in ALBERT's and T5's), one frozen spec each;
- ``tokenizer``: the ``Tokenizer`` class, which reads a kind's spec;
- ``train``: learning a vocabulary from corpus files read by ``lmforge.corpus``;
- ``hf_files``: reading and writing tokenizer directories in the Hugging Face layout.
"""

from lmforge.tokenization.kinds import ROLES, TokenizerKind, get_kind
from lmforge.tokenization.kinds import KINDS as KIND_SPECS
from lmforge.tokenization.tokenizer import Tokenizer

KINDS = tuple(KIND_SPECS)  # the kind names, in table order (CLI choices)

__all__ = ["KINDS", "KIND_SPECS", "ROLES", "Tokenizer", "TokenizerKind", "get_kind"]
