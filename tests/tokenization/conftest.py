from __future__ import annotations

from pathlib import Path

import pytest
from tokenizer_samples import write_corpus

from lmforge.tokenization import Tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def saved_wordpiece(request, corpus, tmp_path_factory) -> tuple[Tokenizer, Path]:
    tokenizer = Tokenizer.train([str(corpus)], vocab_size=200, lowercase=request.param, show_progress=False)
    directory = tmp_path_factory.mktemp("wordpiece")
    tokenizer.save(directory)
    return tokenizer, directory
