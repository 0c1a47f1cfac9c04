"""Corpus preparation: readers, sentence splitting, shards, manifest, CLI, and the dataset on top."""

import gzip
import json
import lzma
import textwrap

import numpy as np
import pytest
import torch

from lmforge.cli import main
from lmforge.corpus import iter_documents
from lmforge.data.prepare import prepare_corpus, read_manifest
from lmforge.data.sentences import split_sentences
from lmforge.data.shards import ShardWriter, TokenShards, token_dtype
from lmforge.errors import UserError
from lmforge.objectives.dataset import PretrainingDataset, collate
from lmforge.objectives.base import IGNORE_INDEX
from lmforge.tokenization import Tokenizer

WORDS = (
    "river stone lantern orchard whisper copper meadow harbor silver thunder candle forest "
    "garden pebble window violin saddle blanket marble engine feather ladder cabin pepper"
).split()


def _documents(seed: int = 0, count: int = 40) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    documents = []
    for _ in range(count):
        sentences = []
        for _ in range(rng.integers(3, 25)):
            words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=rng.integers(4, 13))]
            sentences.append(" ".join(words).capitalize() + rng.choice([".", "?", "!"]))
        documents.append(sentences)
    return documents


def _wrapped(sentences: list[str]) -> str:
    """Paragraphs of three sentences, hard-wrapped at 30 columns like Gutenberg text."""
    paragraphs = [" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3)]
    return "\n\n".join(textwrap.fill(p, width=30) for p in paragraphs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same documents in three formats: one-sentence-per-line .txt, wrapped .jsonl.gz,
    and Brown-style (one sentence per line inside "text") .jsonl.xz."""
    root = tmp_path_factory.mktemp("corpus")
    documents = _documents()
    txt = root / "corpus.txt"
    txt.write_text("\n\n".join("\n".join(doc) for doc in documents) + "\n", encoding="utf-8")
    jsonl_gz = root / "corpus.jsonl.gz"
    with gzip.open(jsonl_gz, "wt", encoding="utf-8") as handle:
        for i, doc in enumerate(documents):
            handle.write(json.dumps({"id": i, "text": _wrapped(doc)}) + "\n")
    jsonl_xz = root / "corpus.jsonl.xz"
    with lzma.open(jsonl_xz, "wt", encoding="utf-8") as handle:
        for doc in documents:
            handle.write(json.dumps({"text": "\n".join(doc)}) + "\n")
    tokenizer_dir = root / "tokenizer"
    Tokenizer.train([txt], vocab_size=90, show_progress=False).save(tokenizer_dir)
    return {
        "documents": documents, "txt": txt, "jsonl_gz": jsonl_gz, "jsonl_xz": jsonl_xz, "tokenizer": tokenizer_dir
    }


@pytest.fixture(scope="module")
def prepared(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    manifest = prepare_corpus([files["txt"]], files["tokenizer"], out, heldout_docs=5, show_progress=False)
    return out, manifest


def _split_documents(split_dir) -> list[tuple[tuple[int, ...], ...]]:
    shards = TokenShards(split_dir)
    return [tuple(tuple(s.tolist()) for s in shards.document(i)) for i in range(shards.num_documents)]


def test_sentence_splitter_rules():
    text = 'Mr. Smith met Dr. J. R. Watson at 5 p.m. in the U.S. Army camp. "Go!" he said. Then\nthey left.'
    assert split_sentences(text) == [
        "Mr. Smith met Dr. J. R. Watson at 5 p.m. in the U.S. Army camp.",
        '"Go!" he said.',
        "Then they left.",
    ]
    # No split before a lower-case word or a number.
    assert split_sentences("It cost 5 dollars. and more. 3 of them") == ["It cost 5 dollars. and more. 3 of them"]
    # A blank line always ends a paragraph; closing quotes stay with their sentence.
    assert split_sentences("“Yes,” she said.\n\n“No.” He left.") == ["“Yes,” she said.", "“No.”", "He left."]


def test_line_breaks_are_detected_per_document():
    brown_like = "The jury said it .\nIt urged action .\nsome lower case line ?\nLast one ."
    assert len(split_sentences(brown_like)) == 4
    wrapped = "The jury said that it had found\nno evidence of any kind, and it\nurged action. It was late."
    assert split_sentences(wrapped) == [
        "The jury said that it had found no evidence of any kind, and it urged action.",
        "It was late.",
    ]
    assert len(split_sentences(wrapped, line_breaks="sentence")) == 4


def test_readers_yield_the_documents(files):
    documents = files["documents"]
    assert [d.split("\n") for d in iter_documents(files["txt"])] == documents
    assert [split_sentences(d) for d in iter_documents(files["jsonl_gz"])] == documents
    assert [split_sentences(d) for d in iter_documents(files["jsonl_xz"])] == documents


def test_round_trip_counts_and_heldout(files, prepared):
    out, manifest = prepared
    tokenizer = Tokenizer.from_dir(out / "tokenizer")
    expected = [tuple(tuple(ids) for ids in tokenizer.encode_plain(doc)) for doc in files["documents"]]
    train, heldout = _split_documents(out / "train"), _split_documents(out / "heldout")
    # Whole documents, disjoint, nothing lost, train keeps the corpus order.
    assert len(heldout) == 5 and len(train) == len(expected) - 5
    assert sorted(train + heldout) == sorted(expected)
    assert not set(train) & set(heldout)
    assert train == [doc for doc in expected if doc not in heldout]
    for name, documents in (("train", train), ("heldout", heldout)):
        counts = manifest["splits"][name]
        assert counts["documents"] == len(documents)
        assert counts["sentences"] == sum(len(doc) for doc in documents)
        assert counts["tokens"] == sum(len(s) for doc in documents for s in doc)
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == tokenizer.vocab_size
    assert manifest["tokenizer"]["fingerprint"] == Tokenizer.from_dir(files["tokenizer"]).fingerprint()
    assert manifest["sources"][0]["documents"] == len(expected)
    assert read_manifest(out) == manifest
    assert np.load(out / "word_start.npy").shape == (tokenizer.vocab_size,)


@pytest.mark.parametrize("kind", ["gpt2_byte_bpe", "byte_bpe", "llama_bpe", "wordpiece"])
def test_sentences_are_encoded_as_the_running_text(files, tmp_path, kind):
    """A document's sentence ids in a row are the ids of the whole document (byte-level BPE:
    ``ĠRiver``, not ``River``, after the first sentence); WordPiece is as before."""
    tokenizer_dir = tmp_path / "tok"
    Tokenizer.train([files["txt"]], kind=kind, vocab_size=400, lowercase=False, show_progress=False).save(tokenizer_dir)
    roles = ("eos",) if kind in ("gpt2_byte_bpe", "llama_bpe") else ("pad",)
    prepare_corpus([files["jsonl_xz"]], tokenizer_dir, tmp_path / "data", heldout_docs=0, show_progress=False,
                   required_roles=roles)
    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    documents = _split_documents(tmp_path / "data" / "train")
    assert len(documents) == len(files["documents"])
    for sentences, ids in zip(files["documents"], documents):
        stream = [i for sentence in ids for i in sentence]
        assert stream == tokenizer.encode_plain([" ".join(sentences)])[0]
        if kind == "wordpiece":
            assert list(ids) == [tuple(s) for s in tokenizer.encode_plain(sentences)]
    if kind == "gpt2_byte_bpe":
        second = tokenizer.convert_ids_to_tokens(documents[0][1])
        assert second[0].startswith("Ġ"), second


def test_every_format_gives_the_same_shards(files, prepared, tmp_path):
    out, _ = prepared
    reference = {name: (out / "train" / name).read_bytes() for name in ("tokens.bin", "sentence_offsets.npy")}
    for key in ("jsonl_gz", "jsonl_xz"):
        other = tmp_path / key
        prepare_corpus([files[key]], files["tokenizer"], other, heldout_docs=5, show_progress=False)
        for name, data in reference.items():
            assert (other / "train" / name).read_bytes() == data, (key, name)


def test_workers_and_small_chunks_give_the_same_shards(files, prepared, tmp_path):
    out, _ = prepared
    prepare_corpus(
        [files["txt"]], files["tokenizer"], tmp_path / "w", heldout_docs=5, num_workers=1, chunk_chars=500,
        show_progress=False,
    )
    for split in ("train", "heldout"):
        for name in ("tokens.bin", "sentence_offsets.npy", "document_offsets.npy"):
            assert (tmp_path / "w" / split / name).read_bytes() == (out / split / name).read_bytes()


def test_heldout_choice_follows_the_seed(files, prepared, tmp_path):
    out, _ = prepared
    prepare_corpus([files["txt"]], files["tokenizer"], tmp_path / "b", heldout_docs=5, seed=7, show_progress=False)
    assert _split_documents(tmp_path / "b" / "heldout") != _split_documents(out / "heldout")
    manifest = prepare_corpus(
        [files["txt"]], files["tokenizer"], tmp_path / "f", heldout_fraction=0.1, show_progress=False
    )
    assert manifest["splits"]["heldout"]["documents"] == 4  # round(0.1 * 40)


def test_shards_reader_and_wide_dtype(tmp_path):
    assert token_dtype(65535) == np.uint16 and token_dtype(65536) == np.uint32
    writer = ShardWriter(tmp_path / "s", token_dtype(100_000))
    writer.append(np.array([70_000, 1, 2, 99_999, 5]), [2, 1, 2], [2, 1])
    writer.append(np.array([7]), [1], [1])
    assert writer.close() == {"documents": 3, "sentences": 4, "tokens": 6}
    shards = TokenShards(tmp_path / "s")
    assert shards.tokens.dtype == np.uint32
    assert [s.tolist() for s in shards.document(0)] == [[70_000, 1], [2]]
    assert shards.sentence(3).tolist() == [7]
    assert shards.document_token_starts().tolist() == [0, 3, 5]


def test_cli_prepare_and_its_errors(files, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["prepare", "--corpus", str(files["txt"]), "--tokenizer", str(files["tokenizer"]), "--out", str(out)]
    assert main(args + ["--heldout-docs", "3", "--no-progress", "--num-workers", "0"]) == 0
    assert read_manifest(out)["splits"]["heldout"]["documents"] == 3
    assert "train: 37 documents" in capsys.readouterr().out
    # An existing directory needs --overwrite.
    assert main(args + ["--no-progress"]) == 2
    assert main(args + ["--no-progress", "--num-workers", "0", "--overwrite"]) == 0
    # ... and never deletes a directory prepare did not write.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(args[:-1] + [str(tmp_path / "mine"), "--no-progress", "--overwrite"]) == 2
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    missing = ["prepare", "--corpus", str(tmp_path / "nope.txt"), "--tokenizer", str(files["tokenizer"])]
    assert main(missing + ["--out", str(tmp_path / "x")]) == 2
    assert "corpus file not found" in capsys.readouterr().err
    assert main(args[:-1] + [str(tmp_path / "y"), "--heldout-docs", "40", "--no-progress"]) == 2
    with pytest.raises(UserError, match="unknown corpus format"):
        prepare_corpus([files["tokenizer"] / "tokenizer.json"], files["tokenizer"], tmp_path / "z")


def test_nsp_dataset_is_deterministic_and_collates(prepared):
    out, _ = prepared
    data = PretrainingDataset(out, max_seq_length=32, seed=3)
    again = PretrainingDataset(out / "train", max_seq_length=32, seed=3)
    assert len(data) == len(again) > 20
    for i in (0, 7, len(data) - 1):
        a, b = data[i], again.example(i, 0)
        assert a.keys() == {"input_ids", "token_type_ids", "labels", "next_sentence_label"}
        for key in a:
            assert np.array_equal(a[key], b[key])
        assert len(a["input_ids"]) <= 32
        original = np.where(a["labels"] == IGNORE_INDEX, a["input_ids"], a["labels"])
        assert original[0] == data.cls_id and original[-1] == data.sep_id
    # Dynamic masking: the same pair (same round) gets a new mask in the next dupe round's epoch.
    first, later = data.example(0, 0), data.example(0, data.dupe_factor)
    assert np.array_equal(
        np.where(first["labels"] == IGNORE_INDEX, first["input_ids"], first["labels"]),
        np.where(later["labels"] == IGNORE_INDEX, later["input_ids"], later["labels"]),
    )
    assert not np.array_equal(first["labels"], later["labels"])

    batch = collate([data[0], data[1], data[2]], data.pad_id)
    width = max(len(data[i]["input_ids"]) for i in range(3))
    assert batch["input_ids"].shape == (3, width) and batch["input_ids"].dtype == torch.long
    assert batch["next_sentence_label"].shape == (3,)
    for row in range(3):
        n = len(data[row]["input_ids"])
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][row, n:] == data.pad_id).all()
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()


def test_mlm_dataset_packs_the_split(prepared):
    out, manifest = prepared
    data = PretrainingDataset(out, objective="mlm", max_seq_length=64, whole_word=True, max_predictions=None)
    lengths = [len(data[i]["input_ids"]) for i in range(len(data))]
    assert max(lengths) <= 64
    # Every training token appears once, plus [CLS]/[SEP] per block and one [SEP] per inner document start.
    sep = sum(
        int((np.where(data[i]["labels"] == IGNORE_INDEX, data[i]["input_ids"], data[i]["labels"]) == data.sep_id).sum())
        for i in range(len(data))
    )
    assert sum(lengths) - len(data) - sep == manifest["splits"]["train"]["tokens"]
    assert "next_sentence_label" not in data[0]
    assert not data[0]["token_type_ids"].any()
