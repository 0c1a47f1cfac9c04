"""Pretraining corpora: split sentences, tokenize, and store memory-mapped shards (raw text is
read by ``lmforge.corpus``, which the tokenizer trainer shares)."""

from lmforge.data.prepare import prepare_corpus, read_manifest
from lmforge.data.sentences import split_sentences
from lmforge.data.shards import TokenShards

__all__ = ["prepare_corpus", "read_manifest", "split_sentences", "TokenShards"]
