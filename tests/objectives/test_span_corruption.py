"""T5 span corruption (lmforge.objectives.span_corruption) against t5.data.preprocessors: the
sizing helper (568 -> 512 / 114, 141 -> 128 / 29), random_spans_noise_mask (exact noise count,
span count, non-noise first and noise last, uniform segmentation), unique sentinels counting down
from the top of the vocabulary in inputs and targets, EOS, exact input and target lengths of
packed raw segments, the i.i.d. and prefix-LM variants, and the missing-sentinel error."""

from pathlib import Path

import numpy as np
import pytest

from lmforge.errors import UserError
from lmforge.objectives.span_corruption import (
    SpanCorruptionDataset,
    corrupt,
    random_prefix_noise_mask,
    random_spans_helper,
    random_spans_noise_mask,
    sentinel_ids_of,
    spans_to_sentinels,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "data" / "brown" / "brown-sample.jsonl"
VOCAB, EOS = 32100, 1
SENTINELS = np.arange(VOCAB - 1, VOCAB - 101, -1)  # <extra_id_0> = 32099, descending


def test_sizing_helper_matches_t5():
    assert random_spans_helper(512, 0.15, 3.0) == (568, 114)
    assert random_spans_helper(128, 0.15, 3.0) == (141, 29)
    assert random_spans_helper(64, 0.15, 3.0) == (70, 14)  # round(10.5) = 10: half to even
    raw, targets = random_spans_helper(512, 0.5, 3.0)  # density 0.5: targets no longer than inputs
    assert targets <= 512


def _runs(mask: np.ndarray) -> list[tuple[bool, int]]:
    edges = np.flatnonzero(np.diff(mask.astype(int))) + 1
    return [(bool(part[0]), len(part)) for part in np.split(mask, edges)]


def test_noise_mask_counts_and_alternation():
    rng = np.random.default_rng(0)
    lengths = []
    for _ in range(2000):
        mask = random_spans_noise_mask(568, 0.15, 3.0, rng)
        runs = _runs(mask)
        assert mask.sum() == 85  # round(0.15 x 568)
        assert not runs[0][0] and runs[-1][0]  # starts with non-noise, ends with noise
        noise_runs = [n for is_noise, n in runs if is_noise]
        assert len(noise_runs) == 28 and len(runs) == 56  # round(85 / 3) spans, interleaved
        lengths += noise_runs
    # 85 tokens cut uniformly into 28 positive parts: P(length 1) = C(83, 26) / C(84, 27) = 27/84
    lengths = np.asarray(lengths)
    assert abs(lengths.mean() - 85 / 28) < 1e-9
    assert abs((lengths == 1).mean() - 27 / 84) < 0.01, (lengths == 1).mean()


def test_noise_mask_degenerate_lengths():
    rng = np.random.default_rng(1)
    assert random_spans_noise_mask(1, 0.15, 3.0, rng).tolist() == [False]
    mask = random_spans_noise_mask(2, 0.15, 3.0, rng)
    assert mask.tolist() == [False, True]  # at least one noise and one non-noise token
    assert random_spans_noise_mask(10, 0.15, 3.0, rng).sum() == 2  # round(1.5) = 2 (half to even)
    assert random_spans_noise_mask(30, 0.15, 3.0, rng).sum() == 4  # round(4.5) = 4 (half to even)


def test_sentinels_in_inputs_and_targets():
    tokens = np.arange(100, 112)
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 1], dtype=bool)
    inputs, targets = corrupt(tokens, mask, SENTINELS, EOS)
    assert inputs.tolist() == [100, 101, 32099, 104, 105, 106, 32098, 108, 109, 32097, EOS]
    assert targets.tolist() == [32099, 102, 103, 32098, 107, 32097, 110, 111, EOS]
    # no trailing sentinel in the targets: the segment ends in noise
    assert spans_to_sentinels(np.arange(3), np.array([True, True, True]), SENTINELS).tolist() == [32099]


def test_corrupted_lengths_and_sentinel_order_at_scale():
    rng = np.random.default_rng(2)
    for _ in range(300):
        tokens = rng.integers(3, 32000, size=568)
        inputs, targets = corrupt(tokens, random_spans_noise_mask(568, 0.15, 3.0, rng), SENTINELS, EOS)
        assert (len(inputs), len(targets)) == (512, 114)
        sentinels_in = inputs[inputs >= 32000]
        assert sentinels_in.tolist() == list(range(32099, 32099 - 28, -1))
        assert targets[targets >= 32000].tolist() == sentinels_in.tolist()
        assert targets[0] == 32099 and inputs[-1] == EOS and targets[-1] == EOS
        # inputs and targets interleave back into the raw segment
        rebuilt, noise = [], {s: [] for s in sentinels_in}
        current = None
        for t in targets[:-1]:
            if t >= 32000:
                current = t
            else:
                noise[current].append(t)
        for t in inputs[:-1]:
            rebuilt += noise[t] if t >= 32000 else [t]
        assert rebuilt == tokens.tolist()


def test_prefix_lm_split_is_uniform():
    rng = np.random.default_rng(3)
    prefixes = [int(random_prefix_noise_mask(10, rng).sum()) for _ in range(9000)]
    counts = np.bincount(prefixes, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 850  # uniform over 1..9
    inputs, targets = corrupt(np.arange(10, 20), np.arange(10) < 4, None, EOS)
    assert inputs.tolist() == [10, 11, 12, 13, EOS] and targets.tolist() == [14, 15, 16, 17, 18, 19, EOS]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("t5-data")
    corpus = root / "docs.jsonl"  # 15 of the 50 documents: the unigram trainer is slow on two cores
    corpus.write_text("".join(CORPUS.read_text().splitlines(keepends=True)[:15]))
    Tokenizer.train([corpus], kind="t5_unigram", vocab_size=800, lowercase=False, show_progress=False).save(root / "tok")
    prepare_corpus([corpus], root / "tok", root / "data", heldout_docs=2, show_progress=False,
                   required_roles=("eos", "pad"))
    return root / "data"


def test_dataset_packs_documents_into_exact_lengths(prepared):
    from lmforge.tokenization import Tokenizer

    tokenizer = Tokenizer.from_dir(prepared / "tokenizer")
    sentinels = sentinel_ids_of(tokenizer)
    assert sentinels.tolist() == list(range(799, 699, -1))  # the last 100 ids, <extra_id_0> on top
    dataset = SpanCorruptionDataset(prepared, "train", inputs_length=128, sentinel_ids=sentinels, seed=5)
    assert (dataset.raw_length, dataset.targets_length) == (141, 29)
    assert len(dataset) == -(-dataset.shards.num_tokens // 141)
    noise = raw = 0
    for index in range(len(dataset) - 1):  # every segment but the short tail is full
        example = dataset.example(index, 0)
        inputs, targets = example["input_ids"], example["labels"]
        assert (len(inputs), len(targets)) == (128, 29)
        assert inputs[-1] == targets[-1] == tokenizer.eos_id
        assert inputs[np.isin(inputs, sentinels)].tolist() == sentinels[:7].tolist()
        noise += len(targets) - 7 - 1
        raw += 141
    assert noise / raw == pytest.approx(21 / 141)  # round(0.15 x 141) noise tokens per segment
    tail = dataset.example(len(dataset) - 1, 0)
    assert tail["input_ids"][-1] == tokenizer.eos_id and len(tail["labels"]) >= 2
    assert np.array_equal(dataset.example(3, 1)["input_ids"], dataset.example(3, 1)["input_ids"])
    assert not np.array_equal(dataset.example(3, 0)["input_ids"], dataset.example(3, 1)["input_ids"])


def test_iid_noise_share(prepared):
    from lmforge.tokenization import Tokenizer

    sentinels = sentinel_ids_of(Tokenizer.from_dir(prepared / "tokenizer"))
    dataset = SpanCorruptionDataset(prepared, "train", inputs_length=128, sentinel_ids=sentinels,
                                    noise_mask="iid", seed=6)
    assert dataset.raw_length == 127
    noise = raw = 0
    for index in range(len(dataset) - 1):
        targets = dataset.example(index, 0)["labels"]
        noise += int((~np.isin(targets, sentinels)).sum()) - 1
        raw += 127
    assert abs(noise / raw - 0.15) < 0.01, noise / raw


def test_a_vocabulary_without_sentinels_is_refused(tmp_path):
    from lmforge.tokenization import Tokenizer

    (tmp_path / "text.txt").write_text("a byte-level vocabulary has no extra ids\n" * 20)
    tokenizer = Tokenizer.train([tmp_path / "text.txt"], kind="byte_bpe", vocab_size=300, show_progress=False)
    with pytest.raises(UserError, match="has no sentinel tokens"):
        sentinel_ids_of(tokenizer)
