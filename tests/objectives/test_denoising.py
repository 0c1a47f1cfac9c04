"""BART's noise (lmforge.objectives.denoising) against fairseq's DenoisingDataset semantics, with
statistics over large samples: the truncated Poisson span lengths and their exact budget, the
masked share of word starts and whole-word spans, replace_length -1/0/1, the random-token share,
zero-length spans inserting masks, sentence permutation moving whole sentences, rotation keeping
<s>/</s>; and the dataset over prepared byte-level BPE shards (complete_doc blocks, determinism
in (seed, epoch, index))."""

import math
from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import UserError
from lmforge.objectives.denoising import (
    NOISE_PRESETS,
    DenoisingDataset,
    DenoisingNoise,
    DenoisingNoiser,
    MaskingRecord,
    full_stop_sentence_ends,
    mask_words,
    noise_preset,
    poisson_span_probabilities,
    sample_span_lengths,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "brown" / "brown-sample.jsonl"
BOS, PAD, EOS, MASK, V = 0, 1, 2, 4, 1000


def document(rng, words=60, start_share=0.6):
    """<s> body </s> of word-start flags drawn with ``start_share``; ids 10.. are distinct."""
    body = np.arange(10, 10 + words, dtype=np.int64)
    starts = rng.random(words) < start_share
    starts[0] = True
    return (np.concatenate(([BOS], body, [EOS])), np.concatenate(([False], starts, [False])))


def test_poisson_pmf_is_truncated_as_fairseq():
    probs = poisson_span_probabilities(3.0)
    assert len(probs) == 18  # lengths 0..17: the 18th term is the first below 1e-7
    raw = [math.exp(-3.0) * 3.0 ** k / math.factorial(k) for k in range(18)]
    assert raw[16] >= 1e-7 > raw[17]
    np.testing.assert_allclose(probs, np.asarray(raw) / sum(raw), rtol=1e-12)
    assert len(poisson_span_probabilities(3.5)) == 19  # 0..18: P(18) = 2.9e-8, P(17) = 1.5e-7


def test_span_lengths_follow_the_truncated_poisson_and_sum_to_the_budget():
    probs = poisson_span_probabilities(3.5)
    rng = np.random.default_rng(0)
    firsts, counts = [], []
    for _ in range(20000):
        budget = int(rng.integers(18, 60))
        lengths = sample_span_lengths(budget, probs, rng)
        assert lengths.sum() == budget and lengths[-1] >= 1
        firsts.append(lengths[0])  # budget > max length: the first draw is never trimmed
        counts.append(len(lengths))
    histogram = np.bincount(firsts, minlength=len(probs)) / len(firsts)
    assert np.abs(histogram - probs).max() < 0.01, np.round(histogram[:10], 3)
    assert histogram[len(probs):].sum() == 0


def test_word_masking_hides_exactly_the_budget_of_whole_words():
    """mask_length word, replace_length -1: ceil(0.3 x word starts) words, every token of each."""
    noise = DenoisingNoise(mask=0.3, mask_length="word", replace_length=-1)
    rng = np.random.default_rng(1)
    masked_starts = total_starts = 0
    for _ in range(2000):
        tokens, starts = document(rng)
        source = mask_words(tokens, starts, noise, rng, MASK, V)
        assert len(source) == len(tokens) and source[0] == BOS and source[-1] == EOS
        hidden = source == MASK
        word = np.cumsum(starts)  # word number of every position
        for w in np.unique(word[hidden]):
            assert hidden[(word == w) & (np.arange(len(tokens)) > 0) & (np.arange(len(tokens)) < len(tokens) - 1)].all()
        assert (hidden & starts).sum() == math.ceil(0.3 * starts.sum())
        masked_starts += (hidden & starts).sum()
        total_starts += starts.sum()
    assert 0.3 <= masked_starts / total_starts < 0.32  # ceil rounds the budget up


def test_text_infilling_masks_about_thirty_percent_of_word_starts():
    """span-poisson, replace_length -1 makes every covered token visible: the covered share of
    word starts is the 30% budget less the overlaps of randomly placed spans."""
    noise = NOISE_PRESETS["bart-large"].replace(replace_length=-1, mask_random=0.0, permute_sentences=0.0)
    rng = np.random.default_rng(2)
    covered = starts_total = 0
    for _ in range(3000):
        tokens, starts = document(rng, words=200)
        source = mask_words(tokens, starts, noise, rng, MASK, V)
        kept = source[source != MASK]
        assert len(source) >= len(tokens)  # -1 keeps length; zero-length spans add masks
        assert np.isin(kept, tokens).all()
        covered += int(starts.sum()) - int(np.isin(tokens[starts], kept).sum())
        starts_total += int(starts.sum())
    share = covered / starts_total
    assert 0.24 < share < 0.3, share


@pytest.mark.parametrize("replace_length", [1, 0, -1])
def test_replace_length(replace_length):
    noise = DenoisingNoise(mask=0.3, mask_length="span-poisson", poisson_lambda=3.0, replace_length=replace_length)
    rng = np.random.default_rng(3)
    for _ in range(500):
        tokens, starts = document(rng)
        record = MaskingRecord()
        source = mask_words(tokens, starts, noise, rng, MASK, V, record=record)
        assert source[0] == BOS and source[-1] == EOS
        kept = source[source != MASK]
        # what survives is the clean text in order, minus the covered tokens
        assert np.array_equal(kept, tokens[np.isin(tokens, kept)])
        covered = len(tokens) - len(kept)
        masks = int((source == MASK).sum())
        if replace_length == -1:
            assert masks == covered + record.inserts
        elif replace_length == 0:
            assert masks == record.inserts
        else:  # one mask per maximal run of covered tokens at most, one per span at least per run
            runs = int(np.count_nonzero(np.diff(np.isin(tokens, kept).astype(int)) == -1))
            assert runs <= masks - record.inserts <= record.spans


def test_mask_random_share_is_per_span():
    """One draw per span (word spans here: zero-length spans would add ceil(k x 0.1) random inserts)."""
    noise = DenoisingNoise(mask=0.3, mask_random=0.1, mask_length="word", replace_length=1)
    rng = np.random.default_rng(4)
    replaced = random = 0
    for _ in range(3000):
        tokens = np.concatenate(([BOS], np.full(80, 7), [EOS]))
        starts = np.ones(len(tokens), dtype=bool)
        source = mask_words(tokens, starts, noise, rng, MASK, V)
        changed = source[1:-1][source[1:-1] != 7]
        replaced += len(changed)
        random += int((changed != MASK).sum())
        assert ((changed >= 1) & (changed < V)).all()
    assert abs(random / replaced - 0.1) < 0.015, random / replaced


def test_zero_length_spans_insert_masks():
    """Deletion (replace_length 0) leaves only the inserted masks; their share of the spans is
    about the truncated Poisson's P(0)."""
    noise = DenoisingNoise(mask=0.3, mask_length="span-poisson", poisson_lambda=3.5, replace_length=0)
    rng = np.random.default_rng(5)
    inserts = spans = 0
    for _ in range(3000):
        tokens, starts = document(rng, words=200)
        record = MaskingRecord()
        source = mask_words(tokens, starts, noise, rng, MASK, V, record=record)
        assert (source == MASK).sum() == record.inserts
        assert source[0] == BOS and source[-1] == EOS
        inserts += record.inserts
        spans += record.spans + record.inserts
    p0 = poisson_span_probabilities(3.5)[0]
    assert inserts > 100 and abs(inserts / spans - p0) < 0.2 * p0, (inserts / spans, p0)


def test_sentence_permutation_moves_whole_sentences():
    noiser = DenoisingNoiser(NOISE_PRESETS["sentence-permutation"], MASK, V)
    rng = np.random.default_rng(6)
    tokens = np.concatenate(([BOS], np.arange(10, 40), [EOS]))
    ends = np.array([5, 9, 16, 20, 27, 31])  # six sentences over positions 1..30
    sentences = {tuple(tokens[a:b]) for a, b in zip(np.concatenate(([1], ends[:-1])), ends)}
    orders = set()
    for _ in range(1000):
        source = noiser(tokens, np.ones(len(tokens), dtype=bool), ends, rng)
        assert source[0] == BOS and source[-1] == EOS and sorted(source) == sorted(tokens)
        pieces, at = [], 1
        while at < len(source) - 1:  # each sentence starts with its own first id
            piece = next(s for s in sentences if s[0] == source[at])
            assert tuple(source[at:at + len(piece)]) == piece
            pieces.append(piece)
            at += len(piece)
        assert set(pieces) == sentences
        orders.add(tuple(p[0] for p in pieces))
    assert len(orders) > 450  # of 720 orders (~540 expected)


def test_partial_permutation_shuffles_ceil_share_of_sentences():
    noise = DenoisingNoise(permute_sentences=0.5)
    noiser = DenoisingNoiser(noise, MASK, V)
    rng = np.random.default_rng(7)
    tokens = np.concatenate(([BOS], np.arange(10, 17), [EOS]))
    ends = np.arange(2, 9)  # seven one-token sentences
    moved = [int((noiser(tokens, np.ones(9, dtype=bool), ends, rng) != tokens).sum()) for _ in range(2000)]
    assert max(moved) == 4 and min(moved) == 0  # ceil(3.5) chosen, some land in place


def test_full_stop_sentence_ends_as_fairseq():
    tokens = np.array([BOS, 20, 13, 21, 22, 13, 13, 23, 24, EOS])
    assert full_stop_sentence_ends(tokens, 13).tolist() == [3, 6, 9]


def test_rotation_keeps_bos_and_eos():
    noiser = DenoisingNoiser(NOISE_PRESETS["document-rotation"], MASK, V)
    rng = np.random.default_rng(8)
    tokens = np.concatenate(([BOS], np.arange(10, 20), [EOS]))
    body = tokens[1:-1].tolist()
    firsts = []
    for _ in range(2000):
        source = noiser(tokens, np.ones(12, dtype=bool), np.array([11]), rng)
        assert source[0] == BOS and source[-1] == EOS
        offset = body.index(source[1])
        assert source[1:-1].tolist() == body[offset:] + body[:offset]
        firsts.append(source[1])
    # offsets 1..n-1 over <s> body </s>: bodies starting at its 1st..10th token, the first twice as often
    counts = np.bincount(np.asarray(firsts) - 10, minlength=10)
    assert counts.min() > 100 and counts[0] > 1.6 * counts[1:].mean()


def test_presets_and_checks():
    large = NOISE_PRESETS["bart-large"]
    assert (large.mask, large.mask_random, large.poisson_lambda, large.permute_sentences, large.replace_length,
            large.rotate, large.insert, large.mask_length) == (0.3, 0.1, 3.5, 1.0, 1, 0.0, 0.0, "span-poisson")
    defaults = NOISE_PRESETS["fairseq-defaults"]
    assert (defaults.mask, defaults.rotate, defaults.poisson_lambda, defaults.mask_length,
            defaults.replace_length) == (0.0, 0.5, 3.0, "subword", 0)
    assert noise_preset("bart-large", rotate=0.5).rotate == 0.5
    with pytest.raises(UserError, match="unknown denoising preset"):
        noise_preset("bart")
    with pytest.raises(UserError, match="unknown denoising option"):
        noise_preset("bart-large", masking=0.2)
    with pytest.raises(UserError, match="replace_length must be -1, 0 or 1"):
        DenoisingNoise(replace_length=2)
    with pytest.raises(UserError, match="subword needs replace_length 0 or 1"):
        DenoisingNoise(mask_length="subword", replace_length=-1)
    with pytest.raises(UserError, match="mask must be in"):
        DenoisingNoise(mask=1.5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("bart-data")
    Tokenizer.train([CORPUS], kind="byte_bpe", vocab_size=800, lowercase=False, show_progress=False).save(root / "tok")
    prepare_corpus([CORPUS], root / "tok", root / "data", heldout_docs=3, show_progress=False,
                   required_roles=("bos", "eos", "mask", "pad"))
    return root / "data"


def test_dataset_blocks_and_determinism(prepared):
    dataset = DenoisingDataset(prepared, "train", max_seq_length=64, noise=NOISE_PRESETS["bart-large"], seed=3)
    doc_starts = dataset.shards.document_token_starts()
    for index in range(0, len(dataset), 7):
        start, stop = dataset.blocks[index]
        # complete_doc: no block crosses a document start
        assert not ((doc_starts > start) & (doc_starts < stop)).any()
        example = dataset.example(index, 0)
        labels = example["labels"]
        assert labels[0] == dataset.bos_id and labels[-1] == dataset.eos_id and len(labels) <= 64
        assert example["input_ids"][0] == dataset.bos_id and example["input_ids"][-1] == dataset.eos_id
    again = DenoisingDataset(prepared, "train", max_seq_length=64, noise=NOISE_PRESETS["bart-large"], seed=3)
    assert np.array_equal(again.example(5, 2)["input_ids"], dataset.example(5, 2)["input_ids"])
    differ = sum(not np.array_equal(dataset.example(i, 0)["input_ids"], dataset.example(i, 1)["input_ids"])
                 for i in range(50))
    assert differ > 40  # a fresh noise every epoch


def test_dataset_masks_whole_words_of_real_text(prepared):
    """On byte-level BPE text: every covered position is a whole word (starts at a Ġ-word or a
    sentence start and runs to the next word start), and the masked share of word starts is ~30%."""
    noise = NOISE_PRESETS["bart-large"].replace(replace_length=-1, mask_random=0.0, permute_sentences=0.0)
    dataset = DenoisingDataset(prepared, "train", max_seq_length=128, noise=noise, seed=4)
    covered = total = 0
    rng = np.random.default_rng(0)
    for index in range(len(dataset)):
        tokens, starts, ends = dataset.clean_block(index)
        record = MaskingRecord()
        source = dataset.noiser(tokens, starts, ends, rng, record)
        if record.inserts:  # zero-length spans shifted the text; skip those blocks
            continue
        masked = source == dataset.mask_id
        word = np.cumsum(starts)
        for w in np.unique(word[masked]):
            inner = (word == w) & (np.arange(len(tokens)) < len(tokens) - 1)
            assert masked[inner].all(), index
        covered += int((masked & starts).sum())
        total += int(starts[1:-1].sum())
    assert 0.24 < covered / total < 0.3, covered / total
