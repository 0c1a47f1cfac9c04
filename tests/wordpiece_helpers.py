"""A BERT WordPiece tokenizer over a hand-written vocabulary, for tests that need exact ids."""

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import models, normalizers, pre_tokenizers, processors


def tiny_wordpiece(vocab: list[str]) -> BackendTokenizer:
    """[PAD]=0 ... as in ``vocab``; BERT normaliser, pre-tokeniser and [CLS]/[SEP] template."""
    ids = {token: i for i, token in enumerate(vocab)}
    backend = BackendTokenizer(models.WordPiece(ids, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return backend
