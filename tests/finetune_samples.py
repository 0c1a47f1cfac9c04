"""The bundled fine-tuning samples (hand-written, data/*-sample) and a one-thread fixture."""

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parents[1] / "data"
SST2 = (DATA / "glue-sample/sst2-train.tsv", DATA / "glue-sample/sst2-dev.tsv")
MRPC = (DATA / "glue-sample/mrpc-train.tsv", DATA / "glue-sample/mrpc-dev.tsv")
CONLL = (DATA / "ner-sample/train.txt", DATA / "ner-sample/dev.txt")
SQUAD = (DATA / "squad-sample/train.json", DATA / "squad-sample/dev.json")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Models this small run fastest on one thread (and far faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
