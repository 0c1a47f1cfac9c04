"""Shared fixtures of the training tests."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Tokenizer + shards of the bundled Brown sample, built once for this module."""
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("prepared")
    corpus = [str(REPO / "data" / "brown" / "brown-sample.jsonl")]
    Tokenizer.train(corpus, vocab_size=1500, show_progress=False).save(root / "tok")
    prepare_corpus(corpus, root / "tok", root / "data", heldout_docs=3, show_progress=False)
    return root / "data"
