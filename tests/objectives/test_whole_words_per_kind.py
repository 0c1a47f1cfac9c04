"""Whole-word and n-gram masking with every encoder tokenizer kind (WordPiece "##", byte-level
BPE "Ġ", SentencePiece "▁"): a word the tokenizer's pre-tokenizer keeps together is never split
by a mask, including the first word of a sentence that byte-level BPE writes without "Ġ"
(transformers issue 11768); and the dataset's dynamic masks, per prepared data of each kind."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lmforge.objectives.base import IGNORE_INDEX
from lmforge.objectives.mlm import fairseq_mask_tokens, mask_tokens
from lmforge.tokenization import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tokenization"))
from tokenizer_samples import SENTENCES, write_corpus

REPO = Path(__file__).resolve().parents[2]
KINDS = ["wordpiece", "byte_bpe", "unigram"]
TEXTS = [*SENTENCES[:-1], "Believers believed unbelievably, relieving the relieved believer.",
         "https://example.com/path?query=1 is a URL; señor Zürich 東京 🙂"]


@pytest.fixture(scope="module", params=KINDS)
def trained(request, tmp_path_factory) -> Tokenizer:
    corpus = write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")
    return Tokenizer.train([corpus], kind=request.param, vocab_size=300, lowercase=request.param != "byte_bpe",
                           show_progress=False)


def _pack(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """[CLS] s1 s2 ... [SEP] of the sample texts: ids, sentence-start flags and the positions of
    each pre-tokenizer word that masking must keep whole."""
    ids, sentence_starts, words = [tokenizer.cls_id], [False], []
    for text in TEXTS:
        encoding = tokenizer.backend.encode(text, add_special_tokens=False)
        tokens = encoding.tokens
        groups: dict[int, list[int]] = {}
        for offset, word in enumerate(encoding.word_ids):
            groups.setdefault(word, []).append(len(ids) + offset)
        for positions in groups.values():
            pieces = [tokens[p - len(ids)] for p in positions]
            # ALBERT's rule splits a SentencePiece word at pieces with characters outside a-z
            # (punctuation, digits, other scripts), so only letter-only words must stay whole there
            if tokenizer.kind == "unigram" and not all(p.lstrip("▁").isascii() and p.lstrip("▁").isalpha()
                                                       for p in pieces):
                continue
            # Every kind makes each punctuation mark a word of its own (BERT's rule), so a
            # pre-tokenizer word such as GPT-2's "Ġ(" or ")," may be split there; the pieces
            # with letters or digits must stay together.
            kept = [p for p, piece in zip(positions, pieces) if any(c.isalnum() for c in piece.lstrip("Ġ▁#"))]
            words.append(kept)
        sentence_starts += [True] + [False] * (len(encoding.ids) - 1)
        ids += encoding.ids
    ids.append(tokenizer.sep_id)
    sentence_starts.append(False)
    return np.asarray(ids), np.asarray(sentence_starts), words


@pytest.mark.parametrize("unit", ["whole_word", "ngram", "fairseq_whole_word"])
def test_masks_never_split_a_word(trained, unit):
    ids, sentence_starts, words = _pack(trained)
    assert sum(len(w) > 1 for w in words) >= 5  # the sample has multi-piece words to split
    word_start = trained.word_start_mask()
    specials = trained.special_ids - {trained.unk_id}
    whole_masks = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        common = dict(vocab_size=trained.vocab_size, mask_id=trained.mask_id, special_ids=specials,
                      word_start=word_start, sentence_starts=sentence_starts)
        if unit == "fairseq_whole_word":
            _, labels = fairseq_mask_tokens(ids, rng, **common)
        else:
            _, labels = mask_tokens(ids, rng, max_predictions=None, max_ngram=3 if unit == "ngram" else 1, **common)
        picked = labels != IGNORE_INDEX
        for positions in words:
            assert picked[positions].all() or not picked[positions].any(), (trained.kind, positions)
            whole_masks += len(positions) > 1 and bool(picked[positions].all())
    assert whole_masks > 0


def test_sentence_start_keeps_a_byte_level_first_word_apart():
    """Without the sentence start, "Hello" (no "Ġ") would join the previous sentence's last word."""
    ids = np.array([0, 10, 11, 12, 2])  # <s> "Ġfox" "Hello" "Ġworld" </s>
    word_start = np.zeros(20, dtype=bool)
    word_start[[0, 2, 10, 12]] = True
    starts = np.array([False, False, True, False, False])
    for seed in range(40):
        for sentence_starts in (None, starts):
            _, labels = mask_tokens(ids, np.random.default_rng(seed), vocab_size=20, mask_id=4,
                                    special_ids={0, 2}, mlm_probability=0.2, word_start=word_start,
                                    sentence_starts=sentence_starts)
            picked = (labels != IGNORE_INDEX)[1:4].tolist()
            if sentence_starts is None:
                assert picked[0] == picked[1]  # "Ġfox" + "Hello" form one unit
            else:
                assert sum(picked) == 1  # n = 1: one word of its own


@pytest.fixture(scope="module", params=["byte_bpe", "unigram"])
def prepared(request, tmp_path_factory):
    from lmforge.data.prepare import prepare_corpus

    root = tmp_path_factory.mktemp(f"prepared-{request.param}")
    corpus = [str(REPO / "data" / "brown" / "brown-sample.jsonl")]
    Tokenizer.train(corpus, kind=request.param, vocab_size=1200, lowercase=request.param == "unigram",
                    show_progress=False).save(root / "tok")
    prepare_corpus(corpus, root / "tok", root / "data", heldout_docs=3, show_progress=False)
    return root / "data"


@pytest.mark.parametrize("objective,unit,scheme", [("mlm", "whole_word", "fairseq"), ("mlm+sop", "ngram", "bert")])
def test_dataset_masks_are_dynamic_and_reproducible(prepared, objective, unit, scheme):
    from lmforge.objectives.dataset import PretrainingDataset

    def dataset(seed=1):
        return PretrainingDataset(prepared, max_seq_length=96, objective=objective, masking_unit=unit,
                                  masking_scheme=scheme, max_predictions=14, seed=seed)

    first, again, other_seed = dataset(), dataset(), dataset(seed=2)
    tokenizer = Tokenizer.from_dir(prepared / "tokenizer")
    word_start = tokenizer.word_start_mask()
    differ = 0
    for index in range(0, min(len(first), 200), 5):
        a, b = first.example(index, 0), again.example(index, 0)
        assert all(np.array_equal(a[key], b[key]) for key in a)  # same (seed, epoch, index): same mask
        next_epoch = first.example(index, 1)
        differ += not np.array_equal(a["labels"], next_epoch["labels"])
        if objective == "mlm":  # RoBERTa blocks stay, only the masks change
            original = np.where(a["labels"] != IGNORE_INDEX, a["labels"], a["input_ids"])
            original_next = np.where(next_epoch["labels"] != IGNORE_INDEX, next_epoch["labels"],
                                     next_epoch["input_ids"])
            assert np.array_equal(original, original_next)
        # a chosen token followed by a piece that continues its word takes that piece too
        picked = a["labels"] != IGNORE_INDEX
        original = np.where(picked, a["labels"], a["input_ids"])
        for p in np.flatnonzero(picked[:-1]):
            follower = original[p + 1]
            if not word_start[follower] and follower not in tokenizer.special_ids:
                assert picked[p + 1] or _sentence_starts_at(first, index, 0)[p + 1]
        assert ("next_sentence_label" in a) == (objective != "mlm")
    assert differ >= 0.9 * len(range(0, min(len(first), 200), 5))
    assert not np.array_equal(first.example(0, 0)["labels"], other_seed.example(0, 0)["labels"])


def _sentence_starts_at(dataset, index, epoch):
    """The sentence-start flags the dataset computes for an example (rebuilt from its row)."""
    row = dataset.instances(epoch)[index]
    if dataset.objective == "mlm":
        from lmforge.objectives.packing import assemble_block

        start, stop = int(row[0]), int(row[1])
        return assemble_block(dataset._sentence_flags(start, stop), 0, stop - start,
                              dataset._document_starts - start, cls_id=0, sep_id=0).astype(bool)
    return np.concatenate([[0], dataset._sentence_flags(int(row[0]), int(row[1])), [0],
                           dataset._sentence_flags(int(row[2]), int(row[3])), [0]]).astype(bool)
