"""The model subcommands: presets, convert (both directions), fill-mask; errors are one line."""

import re

import pytest
import torch
import transformers

import lmforge
from lmforge.cli import main
from lmforge.tokenization import Tokenizer

TEXT = ("the cat sat on the mat . the dog sat on the log . a bird sang in the tree .\n" * 20)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text(TEXT)
    tokenizer = Tokenizer.train([str(root / "corpus.txt")], vocab_size=120, min_frequency=1, show_progress=False)
    model = lmforge.build("bert-test", vocab_size=tokenizer.vocab_size, seed=0)
    return lmforge.save(model, root / "hf", tokenizer, format="hf")


def test_presets_lists_exact_counts(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"bert-base-uncased\s+bert\s+12\s+768\s+12\s+110,106,428", out)
    assert re.search(r"bert-mini\s+bert\s+4\s+256\s+4\s+11,267,900", out)
    # RobertaForMaskedLM and AlbertForPreTraining sizes (../shared/FAMILIES.md section 3)
    assert re.search(r"roberta-base\s+roberta\s+12\s+768\s+12\s+124,697,433", out)
    assert re.search(r"albert-base-v2\s+albert\s+12\s+768\s+12\s+11,813,810", out)
    assert re.search(r"albert-xxlarge-v2\s+albert\s+12\s+4096\s+64\s+223,158,450", out)
    for preset in ("roberta-large", "distilroberta-base", "roberta-tiny", "albert-tiny", "albert-base-v1"):
        assert re.search(rf"^{preset}\s", out, re.MULTILINE), preset


def test_convert_round_trip(hf_dir, tmp_path, capsys):
    assert main(["convert", "from-hf", str(hf_dir), str(tmp_path / "ours")]) == 0
    assert (tmp_path / "ours" / "lmforge.json").is_file()
    assert main(["convert", "to-hf", str(tmp_path / "ours"), str(tmp_path / "back")]) == 0
    a = transformers.BertForPreTraining.from_pretrained(hf_dir).state_dict()
    b, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not any(info.values())
    for name, tensor in b.state_dict().items():
        assert torch.equal(tensor, a[name]), name
    fast = transformers.AutoTokenizer.from_pretrained(tmp_path / "back")
    assert fast("the cat sat")["input_ids"] == Tokenizer.from_dir(hf_dir).encode("the cat sat")["input_ids"]


def test_fill_mask_prints_top_k(hf_dir, capsys):
    assert main(["fill-mask", "--model", str(hf_dir), "--top-k", "4", "the cat [MASK] on the mat ."]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 4
    probs = [float(p) for _, p in lines]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


@pytest.mark.parametrize("argv,message", [
    (["convert", "from-hf", "/no/such/dir", "/tmp/x"], "no such checkpoint directory"),
    (["fill-mask", "--model", "/no/such/dir", "a [MASK]"], "no such checkpoint directory"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_fill_mask_without_mask_token(hf_dir, capsys):
    assert main(["fill-mask", "--model", str(hf_dir), "no mask here"]) == 2
    assert "no [MASK]" in capsys.readouterr().err
