"""Feature extraction (BERT paper §5.3, Table 7): the six layer strategies against manual
combinations of one-sentence forward passes, pooling, the word map, input order, the
output files and the `lmforge features` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.features import STRATEGIES, Features, extract_features
from lmforge.tokenization import Tokenizer

# Different lengths on purpose (sorted batching must put them back in order); "playing" and
# "walked" split into two sub-tokens each, so a word maps to several vectors.
TEXTS = [
    "the cat sat .",
    "a dog was playing in the park with the cat and a bird .",
    "the bird walked",
    "dog",
    "the park was quiet and the dog sat with a cat .",
]
WORDS = ["the", "cat", "sat", "a", "dog", "was", "play", "in", "park", "with", "and", "bird", "walk", "quiet"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 4-layer bert-test (the last-four strategies need 4) with a hand-made WordPiece."""
    root = tmp_path_factory.mktemp("features")
    chars = sorted(set("".join(WORDS)) | {"."})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##ing", "##ed", *chars, *("##" + c for c in chars)]
    (root / "vocab").mkdir()
    (root / "vocab/vocab.txt").write_text("".join(token + "\n" for token in vocab))
    tokenizer = Tokenizer.from_dir(root / "vocab")
    model = lmforge.build("bert-test", task="pretraining", seed=0, vocab_size=tokenizer.vocab_size, num_layers=4)
    return lmforge.save(model, root / "ckpt", tokenizer, format="hf")


@pytest.fixture(scope="module")
def loaded(checkpoint):
    model, tokenizer = lmforge.load(checkpoint)
    return model.eval(), tokenizer


def one_by_one(model, tokenizer) -> list[list[torch.Tensor]]:
    """Each text alone (no padding at all): [embeddings, layer 1, ..., layer 4], each (T, H)."""
    states = []
    with torch.no_grad():
        for text in TEXTS:
            batch = tokenizer([text])
            out = model.backbone(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                                 output_hidden_states=True)
            states.append([h[0] for h in out.hidden_states])
    return states


def manual(layers: list[torch.Tensor], strategy: str) -> torch.Tensor:
    embeddings, transformer = layers[0], layers[1:]
    return {
        "embeddings": embeddings,
        "second_to_last": transformer[-2],
        "last": transformer[-1],
        "sum_last_four": transformer[-4] + transformer[-3] + transformer[-2] + transformer[-1],
        "concat_last_four": torch.cat([transformer[-4], transformer[-3], transformer[-2], transformer[-1]], dim=-1),
        "sum_all": transformer[0] + transformer[1] + transformer[2] + transformer[3],
    }[strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_per_token_strategies_match_manual_combinations(loaded, strategy):
    model, tokenizer = loaded
    features = extract_features(model, tokenizer, TEXTS, strategy=strategy, pooling="none", batch_size=2)
    hidden = model.config.hidden_size
    assert features.vectors.shape[1] == (4 * hidden if strategy == "concat_last_four" else hidden)
    for i, layers in enumerate(one_by_one(model, tokenizer)):
        rows = features.vectors[features.offsets[i]:features.offsets[i + 1]]
        np.testing.assert_allclose(rows, manual(layers, strategy).numpy(), atol=2e-5, rtol=1e-5)


def test_weighted_sum_uses_the_given_weights(loaded):
    model, tokenizer = loaded
    weights = [0.1, 0.2, 0.3, 0.4]
    features = extract_features(model, tokenizer, TEXTS, strategy="sum_last_four", pooling="cls",
                                layer_weights=weights)
    for i, layers in enumerate(one_by_one(model, tokenizer)):
        expected = sum(w * h[0] for w, h in zip(weights, layers[-4:]))
        np.testing.assert_allclose(features.vectors[i], expected.numpy(), atol=2e-5, rtol=1e-5)
    with pytest.raises(UserError, match="takes 4 layer weights"):
        extract_features(model, tokenizer, TEXTS, strategy="sum_last_four", layer_weights=[1.0, 2.0])


def test_cls_and_mean_pooling_in_input_order(loaded):
    model, tokenizer = loaded
    reference = one_by_one(model, tokenizer)
    cls = extract_features(model, tokenizer, TEXTS, strategy="second_to_last", pooling="cls", batch_size=2)
    mean = extract_features(model, tokenizer, TEXTS, strategy="second_to_last", pooling="mean", batch_size=2)
    assert cls.vectors.shape == mean.vectors.shape == (len(TEXTS), model.config.hidden_size)
    assert cls.offsets is None and mean.word_ids is None
    for i, layers in enumerate(reference):
        np.testing.assert_allclose(cls.vectors[i], layers[-2][0].numpy(), atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(mean.vectors[i], layers[-2].mean(0).numpy(), atol=2e-5, rtol=1e-5)
    # One text at a time gives the same rows: the length-sorted batching is undone.
    for i, text in enumerate(TEXTS):
        alone = extract_features(model, tokenizer, [text], strategy="second_to_last", pooling="mean")
        np.testing.assert_allclose(mean.vectors[i], alone.vectors[0], atol=2e-5, rtol=1e-5)


def test_word_map_points_each_word_to_its_sub_token_vectors(loaded):
    model, tokenizer = loaded
    features = extract_features(model, tokenizer, TEXTS, strategy="last", pooling="none", batch_size=3)
    assert features.offsets.tolist() == np.cumsum([0] + [len(tokenizer.encode(t)["input_ids"]) for t in TEXTS]).tolist()
    second = features.word_ids[features.offsets[1]:features.offsets[2]]
    tokens = tokenizer.convert_ids_to_tokens(tokenizer.encode(TEXTS[1])["input_ids"])
    # [CLS] a dog was play ##ing in ... . [SEP]: specials are -1, "playing" is word 3 twice.
    assert second[0] == -1 and second[-1] == -1
    assert tokens[4:6] == ["play", "##ing"] and second[4:6].tolist() == [3, 3]
    assert second[1:-1].tolist() == [0, 1, 2, 3, 3, *range(4, len(TEXTS[1].split()))]
    walked = features.word_ids[features.offsets[2]:features.offsets[3]]
    assert walked.tolist() == [-1, 0, 1, 2, 2, -1]  # the bird walk ##ed


def test_outputs_npy_and_safetensors(loaded, tmp_path):
    from safetensors.numpy import load_file

    model, tokenizer = loaded
    pooled = extract_features(model, tokenizer, TEXTS, strategy="last", pooling="mean")
    np.testing.assert_array_equal(np.load(pooled.save(tmp_path / "pooled.npy")), pooled.vectors)
    np.testing.assert_array_equal(load_file(pooled.save(tmp_path / "pooled.safetensors"))["vectors"], pooled.vectors)
    tokens = extract_features(model, tokenizer, TEXTS, strategy="last", pooling="none")
    saved = load_file(tokens.save(tmp_path / "tokens.safetensors"))
    for key in ("vectors", "offsets", "word_ids"):
        np.testing.assert_array_equal(saved[key], getattr(tokens, key))
    with pytest.raises(UserError, match="need a .safetensors"):
        tokens.save(tmp_path / "tokens.npy")
    with pytest.raises(UserError, match=".npy or .safetensors"):
        Features(pooled.vectors).save(tmp_path / "pooled.txt")


def test_strategy_and_pooling_mistakes(loaded):
    model, tokenizer = loaded
    with pytest.raises(UserError, match="unknown pooling"):
        extract_features(model, tokenizer, TEXTS, pooling="max")
    with pytest.raises(UserError, match="unknown strategy"):
        extract_features(model, tokenizer, TEXTS, strategy="first")
    two_layers = lmforge.build("bert-test", task="backbone", vocab_size=tokenizer.vocab_size)
    with pytest.raises(UserError, match="at least 4 layers"):
        extract_features(two_layers, tokenizer, TEXTS, strategy="concat_last_four")


def test_features_command(checkpoint, loaded, tmp_path, capsys):
    from safetensors.numpy import load_file

    model, tokenizer = loaded
    inputs = tmp_path / "texts.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "cls.npy"
    assert main(["features", "--model", str(checkpoint), "--input", str(inputs), "--out", str(out),
                 "--strategy", "concat_last_four", "--pooling", "cls", "--batch-size", "2"]) == 0
    vectors = np.load(out)
    assert vectors.shape == (len(TEXTS), 4 * model.config.hidden_size)
    for i, layers in enumerate(one_by_one(model, tokenizer)):
        np.testing.assert_allclose(vectors[i], manual(layers, "concat_last_four")[0].numpy(), atol=2e-5, rtol=1e-5)
    assert f"{len(TEXTS)} x {4 * model.config.hidden_size}" in capsys.readouterr().out

    out = tmp_path / "tokens.safetensors"
    assert main(["features", "--model", str(checkpoint), "--input", str(inputs), "--out", str(out),
                 "--strategy", "embeddings", "--pooling", "none"]) == 0
    saved = load_file(out)
    expected = extract_features(model, tokenizer, TEXTS, strategy="embeddings", pooling="none")
    np.testing.assert_allclose(saved["vectors"], expected.vectors, atol=1e-6)
    np.testing.assert_array_equal(saved["word_ids"], expected.word_ids)

    assert main(["features", "--model", str(checkpoint), "--input", str(tmp_path / "none.txt"),
                 "--out", str(tmp_path / "x.npy")]) == 2
    assert "no such input file" in capsys.readouterr().err
