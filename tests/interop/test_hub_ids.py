"""Hub ids (``lmforge.load("owner/name")``) for the encoder families, offline: a stand-in for
``huggingface_hub.snapshot_download`` copies what its ``allow_patterns`` select from a local
"repository" laid out as the published ones are (RoBERTa: vocab.json + merges.txt, an MLM file
that still holds the pooler; ALBERT: tokenizer.json), so the download patterns are checked too."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import lmforge
from lmforge.tokenization import Tokenizer

TEXT = "the cat sat on the mat . a dog ran in the park . birds sing in the trees .\n" * 10


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """(repositories root, fake snapshot_download): register repos as root / owner / name."""
    import huggingface_hub

    root, cache = tmp_path / "remote", tmp_path / "cache"

    def snapshot_download(repo_id, allow_patterns=None, **unused):
        source = root / repo_id
        if not source.is_dir():
            raise huggingface_hub.errors.RepositoryNotFoundError(repo_id)
        target = cache / repo_id
        target.mkdir(parents=True, exist_ok=True)
        for file in source.iterdir():
            if any(fnmatch.fnmatch(file.name, pattern) for pattern in allow_patterns):
                shutil.copy(file, target / file.name)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return root


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


def test_roberta_hub_id_with_vocab_and_merges(hub, tmp_path):
    tokenizer = Tokenizer.train([corpus(tmp_path)], kind="byte_bpe", vocab_size=300, lowercase=False,
                                min_frequency=1, show_progress=False)
    repo = hub / "FacebookAI" / "roberta-tiny"
    model = lmforge.build("roberta-tiny", task="masked_lm", seed=0, vocab_size=tokenizer.vocab_size)
    lmforge.save(model, repo, format="hf")
    tensors = load_file(repo / "model.safetensors")  # published MLM files keep the pooler
    tensors["roberta.pooler.dense.weight"], tensors["roberta.pooler.dense.bias"] = torch.ones(64, 64), torch.ones(64)
    save_file(tensors, repo / "model.safetensors", metadata={"format": "pt"})
    tokenizer.backend.model.save(str(repo))  # vocab.json + merges.txt only, as the original upload
    (repo / "README.md").write_text("not downloaded")

    loaded, loaded_tokenizer = lmforge.load("FacebookAI/roberta-tiny")
    assert loaded.config.family == "roberta" and loaded.task == "masked_lm"
    assert loaded_tokenizer is not None and loaded_tokenizer.mask_id == tokenizer.mask_id
    assert loaded_tokenizer.encode("the cat sat")["input_ids"] == tokenizer.encode("the cat sat")["input_ids"]
    assert not (tmp_path / "cache" / "FacebookAI" / "roberta-tiny" / "README.md").exists()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_albert_hub_id(hub, tmp_path):
    tokenizer = Tokenizer.train([corpus(tmp_path)], kind="unigram", vocab_size=60, lowercase=True,
                                show_progress=False)
    repo = hub / "albert" / "albert-tiny"
    model = lmforge.build("albert-tiny", seed=0, vocab_size=tokenizer.vocab_size)
    lmforge.save(model, repo, tokenizer, format="hf")
    loaded, loaded_tokenizer = lmforge.load("albert/albert-tiny")
    assert loaded.config.family == "albert" and loaded.task == "pretraining"
    assert loaded_tokenizer.encode("the cat sat")["input_ids"] == tokenizer.encode("the cat sat")["input_ids"]
    reference = transformers.AlbertForPreTraining.from_pretrained(tmp_path / "cache" / "albert" / "albert-tiny")
    ids = torch.tensor([tokenizer.encode("the cat sat on the mat")["input_ids"]])
    with torch.no_grad():
        diff = (loaded.eval()(ids).mlm_logits - reference.eval()(input_ids=ids).prediction_logits).abs().max()
    assert diff <= 1e-5
    with pytest.raises(lmforge.UserError, match="reachable hub id"):
        lmforge.load("albert/no-such-model")
