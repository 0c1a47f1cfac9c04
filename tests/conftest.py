import os
import sys
from pathlib import Path

import pytest
import torch

# Tests live in folders mirroring the package (tests/objectives, tests/tasks, ...); the shared
# helpers (finetune_samples, wordpiece_helpers) stay here and are imported by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
