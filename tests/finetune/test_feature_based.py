"""The feature-based approach (BERT paper §5.3): heads trained on a frozen backbone's features.

A tiny random BERT (4 layers, so every Table 7 strategy applies) with a word-level WordPiece
of the samples stands in for a pretrained checkpoint; its frozen features still tell the
sample's name words and keywords apart, which is all a head needs to learn them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_samples import CONLL, SST2, one_thread  # noqa: F401 (fixture)

import lmforge
from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.finetune import FinetuneConfig, evaluate_model, predict_file, run_finetune
from lmforge.finetune.feature_based import FEATURE_LR, load_head, run_feature_based
from lmforge.lstm.scalar_mix import ScalarMix
from lmforge.tasks.classification import read_classification
from lmforge.tasks.feature_based import (
    FEATURE_STRATEGIES,
    FeatureNerTask,
    feature_width,
)
from lmforge.tasks.feature_heads import BiLstmTagger, LinearHead, mixed
from lmforge.tasks.feature_sources import (
    ALL_LAYERS,
    EncoderSource,
    FeatureCache,
    pooled_features,
    reduce_stacked,
    word_features,
)
from lmforge.tasks.ner import entity_scores, read_conll
from lmforge.tokenization import Tokenizer

HIDDEN, LAYERS = 32, 4


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An HF-format tiny BERT whose WordPiece holds every sample word whole (plus characters)."""
    root = tmp_path_factory.mktemp("feature-based")
    texts = [" ".join(s.words) for path in CONLL for s in read_conll(path)]
    texts += [e.text for path in SST2 for e in read_classification(path)]
    words = {w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())}
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words - set(chars)), *chars,
             *("##" + c for c in chars)]
    (root / "vocab").mkdir()
    (root / "vocab" / "vocab.txt").write_text("".join(token + "\n" for token in vocab))
    tokenizer = Tokenizer.from_dir(root / "vocab")
    model = lmforge.build("bert-test", task="pretraining", seed=0, vocab_size=tokenizer.vocab_size,
                          num_layers=LAYERS, hidden_size=HIDDEN, num_heads=2, intermediate_size=64,
                          hidden_dropout=0.0, attention_dropout=0.0)
    return lmforge.save(model, root / "ckpt", tokenizer, format="hf")


@pytest.fixture(scope="module")
def source(checkpoint) -> EncoderSource:
    model, tokenizer = lmforge.load(checkpoint)
    return EncoderSource(model, tokenizer, identity=str(checkpoint), max_length=128)


def settings(checkpoint: Path, out: Path, task: str = "ner", files=CONLL, **changes) -> FinetuneConfig:
    values = dict(model=str(checkpoint), task=task, train=str(files[0]), eval=str(files[1]), out=str(out),
                  epochs=8, batch_size=4, lr=5e-3, device="cpu", features="last", head_hidden=32)
    values.update(changes)
    return FinetuneConfig(**values)


def training_losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def count_backbone_rows(source: EncoderSource) -> list[int]:
    """A list that the backbone's forward appends its batch size to."""
    calls: list[int] = []
    source.backbone.register_forward_hook(lambda module, args, output: calls.append(int(args[0].shape[0])))
    return calls


# ---------------------------------------------------------------------------------------
# Features


def test_every_strategy_gives_its_width_and_the_first_sub_token_vector(source):
    sentences = [s.words for s in read_conll(CONLL[1])][:5]
    stacked = word_features(source, sentences, ALL_LAYERS)
    assert [a.shape for a in stacked] == [(LAYERS + 1, len(words), HIDDEN) for words in sentences]
    for strategy in FEATURE_STRATEGIES[:-1]:  # the six fixed ones
        vectors = word_features(source, sentences, strategy)
        width = 4 * HIDDEN if strategy == "concat_last_four" else HIDDEN
        assert feature_width(strategy, HIDDEN) == width
        assert [v.shape for v in vectors] == [(len(words), width) for words in sentences], strategy
        # Derived from every layer, the same numbers as extracting the strategy itself.
        for direct, kept in zip(vectors, stacked):
            np.testing.assert_allclose(reduce_stacked(kept, strategy), direct, atol=1e-5)
    # "last" is the final layer at each word's first sub-token, computed here without the source.
    words = ["Northwind", "hired", "Lisbonia", "."]  # Lisbonia: lisbon ##i ##a
    encoding = source.tokenizer.backend.encode(words, is_pretokenized=True)
    assert len(encoding.ids) > len(words) + 2
    with torch.no_grad():
        out = source.backbone(torch.tensor([encoding.ids]), output_hidden_states=True)
    first = [encoding.word_ids.index(w) for w in range(len(words))]
    expected = out.hidden_states[-1][0, first].numpy()
    np.testing.assert_allclose(word_features(source, [words], "last")[0], expected, atol=1e-5)
    concat = torch.cat(out.hidden_states[-4:], -1)[0, first].numpy()
    np.testing.assert_allclose(word_features(source, [words], "concat_last_four")[0], concat, atol=1e-5)


def test_pooled_features_are_the_mean_over_tokens_of_each_layer(source):
    texts = [("a fine film", None), ("dull", None)]
    stacked = pooled_features(source, texts, ALL_LAYERS)
    assert [a.shape for a in stacked] == [(LAYERS + 1, HIDDEN)] * 2
    ids = source.tokenizer.backend.encode("dull").ids
    with torch.no_grad():
        out = source.backbone(torch.tensor([ids]), output_hidden_states=True)
    np.testing.assert_allclose(stacked[1][-1], out.hidden_states[-1][0].mean(0).numpy(), atol=1e-5)
    concat = pooled_features(source, texts, "concat_last_four")
    assert concat[0].shape == (4 * HIDDEN,)


def test_a_sentence_longer_than_max_length_gets_a_vector_for_every_word(checkpoint):
    model, tokenizer = lmforge.load(checkpoint)
    short = EncoderSource(model, tokenizer, max_length=12)
    words = ["Maria", "visited", "Lisbon", "in", "the", "spring", "and", "Tomas", "Berg", "joined", "Northwind", "last", "year", "."]
    vectors = word_features(short, [words], "last")[0]
    assert vectors.shape == (len(words), HIDDEN)
    assert np.abs(vectors).sum(1).min() > 0  # no word left as padding


def test_the_cache_is_keyed_by_backbone_strategy_and_data(source):
    cache = FeatureCache()
    calls = count_backbone_rows(source)
    sentences = [["Maria", "visited", "Lisbon"], ["Ingrid", "met", "Tomas"]]
    first = word_features(source, sentences, "last", cache=cache)
    assert word_features(source, sentences, "last", cache=cache) is first and cache.hits == 1
    assert sum(calls) == 2
    word_features(source, sentences, "embeddings", cache=cache)
    word_features(source, sentences[:1], "last", cache=cache)
    assert sum(calls) == 5 and cache.hits == 1


# ---------------------------------------------------------------------------------------
# Heads


def test_scalar_mix_is_gamma_times_the_softmax_weighted_sum():
    mix = ScalarMix(3)
    with torch.no_grad():
        mix.scalar_parameters.copy_(torch.tensor([0.5, -1.0, 2.0]))
        mix.gamma.fill_(1.5)
    layers = torch.randn(2, 3, 5, 4)  # (B, layers, T, D)
    s = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0)
    expected = 1.5 * (s[0] * layers[:, 0] + s[1] * layers[:, 1] + s[2] * layers[:, 2])
    torch.testing.assert_close(mixed(mix, layers), expected)
    fresh = ScalarMix(3)  # starts as the equal-weight mean
    torch.testing.assert_close(mixed(fresh, layers), layers.mean(1))
    mixed(fresh, layers).sum().backward()
    assert fresh.gamma.grad is not None and fresh.scalar_parameters.grad is not None


def test_the_bilstm_never_reads_padding():
    tagger = BiLstmTagger(6, 3, hidden=5).eval()
    short, long = torch.randn(1, 4, 6), torch.randn(1, 7, 6)
    alone = tagger(short, torch.ones(1, 4, dtype=torch.bool))
    padded = torch.cat([torch.cat([short, torch.full((1, 3, 6), 9.0)], 1), long])
    mask = torch.tensor([[1] * 4 + [0] * 3, [1] * 7], dtype=torch.bool)
    torch.testing.assert_close(tagger(padded, mask)[0, :4], alone[0])


# ---------------------------------------------------------------------------------------
# Runs


def test_bilstm_ner_on_frozen_features_learns_the_sample(checkpoint, tmp_path):
    out = tmp_path / "ner"
    summary = run_finetune(settings(checkpoint, out, features="concat-last-four", epochs=20, lr=1e-2))
    losses = training_losses(out)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert summary["features"] == "concat_last_four" and summary["head"] == "bilstm"
    assert summary["f1"] >= 0.7  # measured 0.85 (epoch 18); every name word was seen in training
    lines = [line.split() for line in (out / "predictions.conll").read_text().splitlines() if line]
    dev = read_conll(CONLL[1])
    assert [line[0] for line in lines] == [w for s in dev for w in s.words]
    gold, predicted, start = [], [], 0
    for sentence in dev:
        rows = lines[start:start + len(sentence.words)]
        gold.append([r[1] for r in rows])
        predicted.append([r[2] for r in rows])
        start += len(sentence.words)
    assert entity_scores(gold, predicted)["f1"] == pytest.approx(summary["f1"])
    # The saved head reloads and names its backbone and strategy.
    head, config = load_head(out / "model")
    assert config["strategy"] == "concat_last_four" and config["backbone"] == str(checkpoint)
    assert config["width"] == 4 * HIDDEN and config["hidden"] == 32 and isinstance(head, BiLstmTagger)
    # evaluate and predict read the backbone the head names and give the run's numbers.
    result = evaluate_model(out / "model", None, CONLL[1], tmp_path / "evaluated")
    assert result["f1"] == pytest.approx(summary["f1"]) and result["task"] == "ner"
    assert (tmp_path / "evaluated" / "predictions.conll").read_text() == (out / "predictions.conll").read_text()
    (tmp_path / "input.txt").write_text(" ".join(dev[0].words) + "\n" + " ".join(dev[1].words) + "\n")
    lines = predict_file(out / "model", "ner", tmp_path / "input.txt")
    assert [[pair.rsplit("/", 1)[1] for pair in line.split()] for line in lines] == predicted[:2]
    assert main(["evaluate", "--model", str(out / "model"), "--data", str(CONLL[1]),
                 "--out", str(tmp_path / "cli-evaluated")]) == 0
    with pytest.raises(UserError, match="not a classification one"):
        evaluate_model(out / "model", "classification", SST2[1])


def test_the_backbone_runs_once_per_example_whatever_the_epochs(checkpoint, source, tmp_path):
    calls = count_backbone_rows(source)
    cache = FeatureCache()
    examples = len(read_conll(CONLL[0])) + len(read_conll(CONLL[1]))
    run_feature_based(settings(checkpoint, tmp_path / "mix", features="scalar_mix", epochs=3), source, cache)
    assert sum(calls) == examples  # every sample sentence fits one window
    # Another strategy on the same data is derived from the layers the scalar mix kept.
    summary = run_feature_based(settings(checkpoint, tmp_path / "sum", features="sum_all", epochs=2), source, cache)
    assert sum(calls) == examples and cache.hits == 2
    assert summary["f1"] >= 0.0 and summary["epochs_run"] == 2


def test_ner_with_a_linear_probe_per_word(checkpoint, tmp_path):
    summary = run_finetune(settings(checkpoint, tmp_path / "probe", head="linear", epochs=2))
    head, config = load_head(tmp_path / "probe" / "model")
    assert summary["head"] == "linear" and isinstance(head, LinearHead) and config["width"] == HIDDEN
    assert 0.0 <= summary["f1"] <= 1.0 and summary["epochs_run"] == 2


def test_classification_with_a_linear_head_on_pooled_features(checkpoint, tmp_path):
    out = tmp_path / "sst2"
    summary = run_finetune(settings(checkpoint, out, task="classification", files=SST2, features="scalar_mix",
                                    epochs=30, lr=0.1))
    losses = training_losses(out)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5  # measured 0.70 -> 0.07
    assert summary["head"] == "linear" and summary["accuracy"] >= 9 / 12  # measured 10 of 12
    _, config = load_head(out / "model")
    assert config["width"] == HIDDEN and config["num_labels"] == 2 and config["mix_layers"] == LAYERS + 1
    rows = [line.split("\t") for line in (out / "predictions.tsv").read_text().splitlines()]
    dev = read_classification(SST2[1])
    assert len(rows) == 1 + len(dev)
    (tmp_path / "texts.txt").write_text("".join(e.text + "\n" for e in dev))
    predicted = [line.split("\t")[0] for line in predict_file(out / "model", None, tmp_path / "texts.txt")]
    assert predicted == [r[2] for r in rows[1:]]


@pytest.mark.parametrize("changes, message", [
    (dict(head="bilstm", features=None), "add --features"),
    (dict(features="third_layer"), "unknown feature strategy"),
    (dict(task="qa", features="last"), "--features works with"),
    (dict(task="classification", head="bilstm"), "use --head linear"),
    (dict(freeze_encoder=True), "keeps the backbone frozen"),
    (dict(head_hidden=0), "head_hidden"),
])
def test_feature_settings_are_checked(checkpoint, tmp_path, changes, message):
    with pytest.raises(UserError, match=message):
        settings(checkpoint, tmp_path / "x", **changes).validate()


def test_cli_runs_a_feature_based_tagger_with_the_head_lr(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["finetune", "--model", str(checkpoint), "--task", "ner", "--train", str(CONLL[0]),
                 "--eval", str(CONLL[1]), "--out", str(out), "--features", "second_to_last", "--head", "bilstm",
                 "--head-hidden", "8", "--epochs", "1", "--batch-size", "8", "--device", "cpu"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["lr"] == FEATURE_LR and metrics["settings"]["head_hidden"] == 8
    assert metrics["features"] == "second_to_last" and "f1" in metrics


def test_the_cli_lr_default_matches_the_module():
    from lmforge.cli import finetune as cli

    assert cli._FEATURE_LR == FEATURE_LR


def test_ner_batches_hold_one_vector_and_one_label_per_word(source):
    from lmforge.tasks import LabelMap, TaskOptions

    sentences = read_conll(CONLL[1])[:3]
    task = FeatureNerTask(TaskOptions(), LabelMap.from_labels(t for s in sentences for t in s.tags))
    batch = task.collate(task.features_from(sentences, word_features(source, [s.words for s in sentences], "last")))
    assert batch["vectors"].shape == (3, max(len(s.words) for s in sentences), HIDDEN)
    assert batch["attention_mask"].sum(1).tolist() == [len(s.words) for s in sentences]
    for row, sentence in enumerate(sentences):
        n = len(sentence.words)
        assert [task.labels.label_of(i) for i in batch["labels"][row, :n].tolist()] == sentence.tags
        assert (batch["labels"][row, n:] == -100).all() and (batch["vectors"][row, n:] == 0).all()


# ---------------------------------------------------------------------------------------
# ELMo as the backbone


def test_elmo_features_and_a_tagger_on_them(tmp_path):
    elmo = pytest.importorskip("lmforge.lstm.elmo")
    from lmforge.tasks.feature_sources import ElmoSource, load_feature_source

    config = elmo.PRESETS["elmo-tiny"].replace(filters=[[1, 4], [2, 4], [3, 8]], cell_size=24, projection_dim=8,
                                               dropout=0.0)
    torch.manual_seed(0)
    elmo.save_elmo(elmo.ElmoBiLM(config), tmp_path / "elmo")
    source = load_feature_source(tmp_path / "elmo", max_length=128)
    assert isinstance(source, ElmoSource) and source.num_layers == 3 and source.width == 16
    sentences = [s.words for s in read_conll(CONLL[1])][:4]
    stacked = word_features(source, sentences, ALL_LAYERS)
    expected = elmo.elmo_layer_outputs(source.model, sentences)
    for row, words in enumerate(sentences):
        assert stacked[row].shape == (3, len(words), 16)
        for layer in range(3):
            np.testing.assert_allclose(stacked[row][layer], expected.layers[layer][row, :len(words)].numpy(), atol=1e-6)
    summary = run_finetune(FinetuneConfig(model=str(tmp_path / "elmo"), task="ner", train=str(CONLL[0]),
                                          eval=str(CONLL[1]), out=str(tmp_path / "run"), features="scalar_mix",
                                          head_hidden=8, epochs=2, batch_size=8, lr=1e-2, device="cpu"))
    _, head_config = load_head(tmp_path / "run" / "model")
    assert head_config["mix_layers"] == 3 and head_config["width"] == 16 and summary["epochs_run"] == 2
