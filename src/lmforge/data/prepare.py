"""Corpus preparation: raw text files -> sentence-split, tokenized, memory-mapped shards.

The offline half of google-research/bert ``create_pretraining_data.py`` (read documents, split
them into sentences, tokenize) with the instance building and masking left to training time
(``lmforge.objectives``), so one prepared corpus serves every objective, sequence length and
seed. The corpus is streamed in chunks of documents and appended to the shards, so memory stays
bounded for corpora larger than RAM; sentences are tokenized in batches by the Rust tokenizer,
which runs them in parallel.

Output directory::

    OUT/manifest.json       counts per split, dtype, vocab size, tokenizer fingerprint, sources
    OUT/tokenizer/          the tokenizer, so the directory is self-contained
    OUT/word_start.npy      bool per vocabulary id: starts a word (whole-word masking)
    OUT/train/, OUT/heldout/    one split each, layout of ``lmforge.data.shards``

The output is built in a directory beside OUT and renamed into place once complete, so an
unreadable corpus or a crash never costs an earlier prepared directory (``--overwrite``).
The held-out split is whole documents, chosen uniformly without replacement by ``seed``
(documents numbered across the corpus files in the given order). ``manifest.json`` is
written last: a directory without it is an interrupted run.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from lmforge.corpus import check_corpus_files, iter_documents
from lmforge.data.sentences import LineBreaks, split_sentences
from lmforge.data.shards import ShardWriter, token_dtype
from lmforge.errors import UserError
from lmforge.tokenization import Tokenizer
from lmforge.files import staged_dir
from lmforge.progress import progress_enabled

MANIFEST = "manifest.json"
FORMAT = "lmforge.token_shards"
FORMAT_VERSION = 1
HELDOUT_STREAM = 2  # seed stream of the held-out choice (0 and 1 are NSP instances and masks)
_CHUNK_DOCUMENTS = 10_000  # also bounds a chunk of many tiny documents
_OUTPUTS = (MANIFEST, "tokenizer", "word_start.npy", "train", "heldout")


def prepare_corpus(
    corpus: list[str],
    tokenizer_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    heldout_fraction: float | None = 0.01,
    heldout_docs: int | None = None,
    seed: int = 12345,
    line_breaks: LineBreaks = "auto",
    num_workers: int = 0,
    chunk_chars: int = 8_000_000,
    overwrite: bool = False,
    show_progress: bool = True,
    required_roles: tuple[str, ...] = ("cls", "sep", "mask", "pad"),
) -> dict[str, Any]:
    """Prepare ``corpus`` (paths to .txt/.jsonl, optionally .gz/.xz) into ``out``; returns the manifest.

    ``heldout_docs`` (an exact count) overrides ``heldout_fraction`` (rounded, at least one
    document when positive). ``num_workers`` > 0 splits sentences in that many processes while
    the main process tokenizes; the output is identical for any value. ``chunk_chars`` is the
    amount of text held in memory at once. ``required_roles`` are the special tokens the
    objective needs (BERT's by default; causal-LM pretraining needs only ``eos``).
    """
    corpus = [str(p) for p in corpus]
    check_corpus_files(corpus)
    if heldout_docs is None and heldout_fraction is not None and not 0 <= heldout_fraction < 1:
        raise UserError(f"--heldout-fraction must be in [0, 1), got {heldout_fraction}")
    if heldout_docs is not None and heldout_docs < 0:
        raise UserError(f"--heldout-docs must be >= 0, got {heldout_docs}")
    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    missing = [role for role in required_roles if getattr(tokenizer, f"{role}_id") is None]
    if missing:
        needed_by = "BERT pretraining" if "mask" in required_roles else "the objective"
        raise UserError(f"tokenizer in {tokenizer_dir} has no {'/'.join(missing)} token; {needed_by} needs them")
    out = Path(out)
    _check_out_dir(out, overwrite)
    with staged_dir(out) as staging:
        return _prepare_into(staging, corpus, tokenizer, heldout_fraction, heldout_docs, seed, line_breaks,
                             num_workers, chunk_chars, show_progress)


def _prepare_into(out: Path, corpus: list[str], tokenizer: Tokenizer, heldout_fraction: float | None,
                  heldout_docs: int | None, seed: int, line_breaks: LineBreaks, num_workers: int,
                  chunk_chars: int, show_progress: bool) -> dict[str, Any]:
    num_heldout = 0
    heldout: set[int] = set()
    if (heldout_docs if heldout_docs is not None else heldout_fraction):
        total = _count_documents(corpus, show_progress)
        num_heldout = _heldout_count(total, heldout_fraction, heldout_docs)
        rng = np.random.default_rng([seed, HELDOUT_STREAM])
        heldout = set(rng.choice(total, size=num_heldout, replace=False).tolist())

    dtype = token_dtype(tokenizer.vocab_size)
    writers = {"train": ShardWriter(out / "train", dtype)}
    if num_heldout:
        writers["heldout"] = ShardWriter(out / "heldout", dtype)
    documents_per_file = [0] * len(corpus)

    progress = tqdm(unit="tok", unit_scale=True, desc="tokenizing", disable=not (show_progress and progress_enabled()))
    chunks = _chunks(corpus, chunk_chars, documents_per_file)
    for (indices, _), sentences in _split_chunks(chunks, line_breaks, num_workers):
        is_heldout = np.fromiter((i in heldout for i in indices), dtype=bool, count=len(indices))
        added = _write_chunk(tokenizer, sentences, is_heldout, writers, dtype)
        progress.update(added)
        progress.set_postfix(documents=indices[-1] + 1, refresh=False)
    progress.close()

    splits = {name: writer.close() for name, writer in writers.items()}
    if splits["train"]["documents"] == 0:
        raise UserError("the corpus has no text left for training after splitting and tokenizing")
    tokenizer.save(out / "tokenizer")
    np.save(out / "word_start.npy", tokenizer.word_start_mask())
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "splits": splits,
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "tokenizer": {
            "dir": "tokenizer",
            "kind": tokenizer.kind,
            "fingerprint": tokenizer.fingerprint(),
            **{f"{role}_id": getattr(tokenizer, f"{role}_id") for role in ("pad", "unk", "cls", "sep", "mask", "eos")},
            "special_ids": sorted(tokenizer.special_ids),
        },
        "word_start": "word_start.npy",
        "sources": [
            {"path": str(Path(p).resolve()), "documents": n} for p, n in zip(corpus, documents_per_file, strict=True)
        ],
        "heldout": {"documents": num_heldout, "seed": seed},
        # Older directories lack the key: their byte-level sentences were encoded without the
        # leading space (still loadable; re-prepare for the running text's ids).
        "sentence_splitter": {"line_breaks": line_breaks, "sentences_encoded_as": "running_text"},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a prepared directory, checked to be one."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        raise UserError(f"{data_dir} is not a prepared data directory (no {MANIFEST}; run `lmforge prepare`)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise UserError(f"{path}: not an {FORMAT} v{FORMAT_VERSION} manifest")
    return manifest


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier prepared directory, and that only with --overwrite."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace a prepared directory")
        # Only ever replace what a run of prepare (finished or interrupted) writes.
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OUTPUTS)
        if foreign:
            raise UserError(f"--out {out} holds {', '.join(foreign)}, not written by prepare; refusing to overwrite it")


def _count_documents(corpus: list[str], show_progress: bool) -> int:
    documents = itertools.chain.from_iterable(iter_documents(p) for p in corpus)
    return sum(1 for _ in tqdm(documents, unit="doc", desc="counting documents",
                                disable=not (show_progress and progress_enabled())))


def _heldout_count(total: int, fraction: float | None, docs: int | None) -> int:
    if docs is not None:
        if docs >= total:
            raise UserError(f"--heldout-docs {docs} leaves no training documents (the corpus has {total})")
        return docs
    assert fraction is not None
    wanted = max(1, round(fraction * total)) if fraction > 0 else 0
    return min(wanted, total - 1)


def _chunks(
    corpus: list[str], chunk_chars: int, documents_per_file: list[int]
) -> Iterator[tuple[list[int], list[str]]]:
    """``(document indices, texts)`` of at most ~``chunk_chars`` characters each (one document
    may exceed it alone); counts documents per file on the way."""
    index = 0
    indices: list[int] = []
    texts: list[str] = []
    size = 0
    for file_index, path in enumerate(corpus):
        for text in iter_documents(path):
            documents_per_file[file_index] += 1
            indices.append(index)
            texts.append(text)
            index += 1
            size += len(text)
            if size >= chunk_chars or len(texts) >= _CHUNK_DOCUMENTS:
                yield indices, texts
                indices, texts, size = [], [], 0
    if texts:
        yield indices, texts


def split_documents(texts: list[str], line_breaks: LineBreaks) -> list[list[str]]:
    """Sentences of each document (module level, so spawned workers can run it)."""
    return [split_sentences(text, line_breaks) for text in texts]


def _split_chunks(
    chunks: Iterable[tuple[list[int], list[str]]], line_breaks: LineBreaks, num_workers: int
) -> Iterator[tuple[tuple[list[int], list[str]], list[list[str]]]]:
    """Each chunk with its documents' sentences, in order."""
    if num_workers <= 0:
        for chunk in chunks:
            yield chunk, split_documents(chunk[1], line_breaks)
        return
    # Spawned, not forked: the parent may hold torch or tokenizer threads. At most two chunks
    # per worker are in flight (Pool.imap would read the whole corpus ahead).
    with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append((chunk, pool.apply_async(split_documents, (chunk[1], line_breaks))))
            if len(pending) > 2 * num_workers:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


def running_text_pieces(tokenizer: Tokenizer):
    """A function from a document's sentences to the texts to encode, so that their ids in a
    row are the ids of the running text (the sentences joined by spaces).

    Byte-level BPE (GPT-2, RoBERTa) encodes a word after a space as ``Ġword``: a sentence encoded
    alone would start with ``word``, a form the text never has there, so every sentence but a
    document's first keeps its leading space. WordPiece and ``bpe`` split on whitespace, and
    Metaspace kinds (unigram, llama_bpe) already mark every sentence's first word with ``▁``,
    as the running text does: their sentences are encoded as they are."""
    if not tokenizer.spec.byte_level:
        return lambda document: document
    return lambda document: [text if i == 0 else " " + text for i, text in enumerate(document)]


def _write_chunk(
    tokenizer: Tokenizer,
    sentences: list[list[str]],
    is_heldout: np.ndarray,
    writers: dict[str, ShardWriter],
    dtype: np.dtype,
) -> int:
    """Tokenize one chunk's sentences in one batch and append each document to its split."""
    per_document = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
    ids = tokenizer.encode_plain(list(itertools.chain.from_iterable(map(running_text_pieces(tokenizer), sentences))))
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    # Sentences that tokenize to nothing (stray control characters) are dropped, and so are
    # documents left without sentences: the objectives assume neither is empty.
    document_of = np.repeat(np.arange(len(sentences)), per_document)
    kept = lengths > 0
    sizes = np.bincount(document_of[kept], minlength=len(sentences))
    for name, chosen in (("train", ~is_heldout), ("heldout", is_heldout)):
        documents = chosen & (sizes > 0)
        if not documents.any():
            continue
        selected = kept & documents[document_of]
        writers[name].append(tokens[np.repeat(selected, lengths)], lengths[selected], sizes[documents])
    return len(tokens)
