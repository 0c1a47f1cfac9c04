"""Training from corpus files (through lmforge.corpus), user errors, and the tokenizer CLI."""

from __future__ import annotations

import gzip
import json
import lzma

import pytest

from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer


def test_training_reads_jsonl_and_compressed_files(corpus, tmp_path):
    lines = corpus.read_text(encoding="utf-8").splitlines()
    jsonl_gz = tmp_path / "corpus.jsonl.gz"
    with gzip.open(jsonl_gz, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": line, "id": i}) + "\n" for i, line in enumerate(lines))
    txt_xz = tmp_path / "corpus.txt.xz"
    with lzma.open(txt_xz, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    # byte-level BPE training is deterministic (no "##" pieces), so the vocabularies must agree
    prints = {
        Tokenizer.train([path], kind="byte_bpe", vocab_size=350, show_progress=False).fingerprint()
        for path in (corpus, jsonl_gz, txt_xz)
    }
    assert len(prints) == 1
    half = tmp_path / "half.txt"
    half.write_text("\n".join(lines[: len(lines) // 2]), encoding="utf-8")
    assert Tokenizer.train([half], kind="byte_bpe", vocab_size=350, show_progress=False).fingerprint() not in prints
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:2"):
        Tokenizer.train([bad], vocab_size=100, show_progress=False)


def test_empty_corpus_is_a_user_error(tmp_path, capsys):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\t\n", encoding="utf-8")
    empty_jsonl = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty_jsonl, "wt", encoding="utf-8") as handle:
        handle.write('{"text": ""}\n\n{"text": "   "}\n')
    (tmp_path / "nothing.txt").write_text("", encoding="utf-8")
    for files in ([blank], [empty_jsonl, tmp_path / "nothing.txt"]):
        for kind in ("wordpiece", "unigram"):
            with pytest.raises(UserError, match="no text"):
                Tokenizer.train(files, kind=kind, vocab_size=100, show_progress=False)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--files", str(blank), "--out", str(out), "--no-progress"]) == 2
    assert "no text" in capsys.readouterr().err and not out.exists()


def test_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="missing.txt"):
        Tokenizer.train([corpus, tmp_path / "missing.txt"], show_progress=False)
    with pytest.raises(UserError, match="kind"):
        Tokenizer.train([corpus], kind="sentencepiece", show_progress=False)
    notes = tmp_path / "notes.md"  # the corpus reader's formats: .txt and .jsonl, maybe compressed
    notes.write_text("some text\n", encoding="utf-8")
    with pytest.raises(UserError, match="unknown corpus format"):
        Tokenizer.train([notes], show_progress=False)
    with pytest.raises(UserError, match="no training files"):
        Tokenizer.train([], show_progress=False)
    with pytest.raises(UserError, match="no_such_dir"):
        Tokenizer.from_dir(tmp_path / "no_such_dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        Tokenizer.from_dir(tmp_path / "empty")


def test_cli_train_and_encode(corpus, tmp_path, capsys):
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--files", str(corpus), "--vocab-size", "180", "--cased", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "vocab size 180" in printed and str(out) in printed
    tokenizer = Tokenizer.from_dir(out)
    assert (tokenizer.kind, tokenizer.lowercase, tokenizer.vocab_size) == ("wordpiece", False, 180)
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "東京 x", "--pair", "!"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "tokens: [CLS] 東 京 x [SEP] ! [SEP]"
    assert printed[1].split()[1:] == [str(i) for i in tokenizer.encode("東京 x", "!")["input_ids"]]
    assert printed[2].split()[1:] == ["0", "0", "0", "0", "0", "1", "1"]


def test_cli_bad_input_path(tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main(["tokenizer", "train", "--files", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["tokenizer", "encode", "--tokenizer", str(tmp_path / "none"), "hi"]) == 2
