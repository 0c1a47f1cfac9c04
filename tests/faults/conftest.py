"""Shared inputs of the fault suite, built once per session: a small tokenizer, prepared data,
a masked-LM model (lmforge and HF layouts), a classifier, and corpus files good and bad."""

from __future__ import annotations

import gzip
import lzma
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BROWN = REPO / "data" / "brown" / "brown-sample.jsonl"
TINY = REPO / "recipes" / "pretrain" / "tiny.yaml"


@dataclass
class Assets:
    root: Path
    tok: Path
    prepared: Path
    mlm: Path  # lmforge layout, masked_lm head, with tokenizer
    mlm_hf: Path  # the same in HF layout
    classifier: Path  # HF layout, sequence classification, labels 0/1
    good_txt: Path
    recipe: Path  # tiny.yaml on the prepared data

    def copy(self, name: str, to: Path) -> Path:
        shutil.copytree(getattr(self, name), to)
        return to


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> Assets:
    import lmforge
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("fault-assets")
    good = root / "good.txt"
    good.write_text("the cat sat on the mat .\nit was a sunny day .\n\nanother document here .\nwith two lines .\n")
    Tokenizer.train([str(BROWN)], vocab_size=600, show_progress=False).save(root / "tok")
    tokenizer = Tokenizer.from_dir(root / "tok")
    prepare_corpus([str(BROWN)], root / "tok", root / "prepared", heldout_docs=2, show_progress=False)
    model = lmforge.build("bert-test", task="masked_lm", seed=0, vocab_size=tokenizer.vocab_size)
    lmforge.save(model, root / "mlm", tokenizer)
    lmforge.save(model, root / "mlm-hf", tokenizer, format="hf")
    classifier = lmforge.build("bert-test", task="sequence_classification", seed=0,
                               vocab_size=tokenizer.vocab_size, labels=("0", "1"))
    lmforge.save(classifier, root / "clf", tokenizer, format="hf")
    recipe = root / "tiny.yaml"
    recipe.write_text(TINY.read_text().replace("corpus: [data/brown/brown-sample.jsonl]",
                                               f"prepared: {root / 'prepared'}")
                      .replace("max_steps: 40", "max_steps: 2").replace("batch_size: 16", "batch_size: 8"))
    return Assets(root, root / "tok", root / "prepared", root / "mlm", root / "mlm-hf", root / "clf", good, recipe)


def latin1(path: Path) -> Path:
    path.write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e .\nna\xefve .\n".encode("latin-1"))
    return path


def truncated(path: Path, text: str = "the cat sat on the mat .\n" * 2000) -> Path:
    compress = lzma.compress if path.suffix == ".xz" else gzip.compress
    data = compress(text.encode())
    path.write_bytes(data[: len(data) // 2])
    return path
