"""AllenNLP's released ELMo format (lmforge.lstm.elmo_convert): a weights file written here in
bilm-tf's layout with random values is converted, and the model's layers must equal a NumPy
forward pass that reads the file with TensorFlow's own conventions (gate order i, j, f, o,
forget bias 1 inside the sigmoid, highway carry gate); exporting the model back gives the same
arrays; `lmforge convert from-allennlp` writes a checkpoint whose features match."""

import json

import h5py
import numpy as np
import pytest
import torch

from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.lstm.elmo import elmo_layer_outputs, load_elmo, words_to_char_ids
from lmforge.lstm.elmo_convert import read_allennlp, write_allennlp

OPTIONS = {"lstm": {"use_skip_connections": True, "projection_dim": 6, "cell_clip": 3, "proj_clip": 3, "dim": 10,
                    "n_layers": 2},
           "char_cnn": {"activation": "relu", "filters": [[1, 4], [2, 4], [3, 8]], "n_highway": 2,
                        "embedding": {"dim": 5}, "n_characters": 262, "max_characters_per_token": 50},
           "n_tokens_vocab": 100}


def write_tf_layout(path, seed=0):
    """Random weights under bilm-tf's dataset names and shapes (as dump_weights writes them)."""
    rng = np.random.default_rng(seed)
    arrays = {"char_embed": rng.normal(size=(261, 5))}
    for i, (width, num) in enumerate(OPTIONS["char_cnn"]["filters"]):
        arrays[f"CNN/W_cnn_{i}"] = rng.normal(scale=0.5, size=(1, width, 5, num))
        arrays[f"CNN/b_cnn_{i}"] = rng.normal(size=num)
    for k in range(2):
        for name, shape in (("W_carry", (16, 16)), ("W_transform", (16, 16)), ("b_carry", (16,)), ("b_transform", (16,))):
            arrays[f"CNN_high_{k}/{name}"] = rng.normal(scale=0.3, size=shape)
    arrays["CNN_proj/W_proj"], arrays["CNN_proj/b_proj"] = rng.normal(scale=0.3, size=(16, 6)), rng.normal(size=6)
    for direction in range(2):
        for layer in range(2):
            group = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
            arrays[f"{group}/W_0"] = rng.normal(scale=0.5, size=(6 + 6, 40))
            arrays[f"{group}/B"] = rng.normal(size=40)
            arrays[f"{group}/W_P_0"] = rng.normal(scale=0.5, size=(10, 6))
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f[name] = value.astype(np.float32)
    return {k: v.astype(np.float32).astype(np.float64) for k, v in arrays.items()}


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def tf_reference(w, char_ids):
    """bilm-tf's graph in NumPy, on one unpadded sentence of character ids (T, 50)."""
    embedded = np.where((char_ids > 0)[..., None], w["char_embed"][np.maximum(char_ids - 1, 0)], 0.0)
    pooled = []
    for i, (width, _) in enumerate(OPTIONS["char_cnn"]["filters"]):
        kernel = w[f"CNN/W_cnn_{i}"][0]  # (width, dim, num)
        conv = np.stack([np.einsum("tkd,kdn->tn", embedded[:, p:p + width], kernel)
                         for p in range(50 - width + 1)], axis=1) + w[f"CNN/b_cnn_{i}"]
        pooled.append(np.maximum(conv.max(axis=1), 0))
    x = np.concatenate(pooled, -1)
    for k in range(2):
        carry = sigmoid(x @ w[f"CNN_high_{k}/W_carry"] + w[f"CNN_high_{k}/b_carry"])
        transform = np.maximum(x @ w[f"CNN_high_{k}/W_transform"] + w[f"CNN_high_{k}/b_transform"], 0)
        x = carry * transform + (1 - carry) * x
    tokens = x @ w["CNN_proj/W_proj"] + w["CNN_proj/b_proj"]
    layers = [np.concatenate([tokens, tokens], -1)]
    directions = []
    for direction in range(2):
        inputs = tokens if direction == 0 else tokens[::-1]
        outputs = []
        for layer in range(2):
            group = f"RNN_{direction}/RNN/MultiRNNCell/Cell{layer}/LSTMCell"
            c, h, out = np.zeros(10), np.zeros(6), []
            for step in inputs:
                i, j, f, o = np.split(np.concatenate([step, h]) @ w[f"{group}/W_0"] + w[f"{group}/B"], 4)
                c = np.clip(sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j), -3, 3)
                h = np.clip((sigmoid(o) * np.tanh(c)) @ w[f"{group}/W_P_0"], -3, 3)
                out.append(h)
            out = np.stack(out) + (inputs if layer > 0 else 0)
            outputs.append(out if direction == 0 else out[::-1])
            inputs = out
        directions.append(outputs)
    return layers + [np.concatenate([f, b], -1) for f, b in zip(*directions)]


@pytest.fixture()
def released(tmp_path):
    (tmp_path / "options.json").write_text(json.dumps(OPTIONS))
    weights = write_tf_layout(tmp_path / "weights.hdf5")
    return tmp_path / "options.json", tmp_path / "weights.hdf5", weights


def test_converted_model_matches_tensorflow_conventions(released):
    options, weight_file, weights = released
    model = read_allennlp(options, weight_file)
    sentence = ["The", "cat", "sat", "on", "the", "mat", "."]
    char_ids, _ = words_to_char_ids([sentence])
    expected = tf_reference(weights, char_ids[0].numpy())
    with torch.no_grad():
        ours = model.layers(model(char_ids=char_ids))
    assert len(ours) == 3
    for layer, reference in zip(ours, expected):
        np.testing.assert_allclose(layer[0].double().numpy(), reference, atol=1e-5, rtol=0)
    # the public API drops <S> and </S>
    stripped = elmo_layer_outputs(model, [sentence])
    np.testing.assert_allclose(stripped.layers[2][0].double().numpy(), expected[2][1:-1], atol=1e-5, rtol=0)


def test_export_gives_back_the_same_arrays(released, tmp_path):
    options, weight_file, weights = released
    write_allennlp(read_allennlp(options, weight_file), tmp_path / "out-options.json", tmp_path / "out.hdf5")
    with h5py.File(tmp_path / "out.hdf5") as f:
        names = set()
        f.visititems(lambda name, node: names.add(name) if isinstance(node, h5py.Dataset) else None)
        assert names == set(weights)
        for name, value in weights.items():
            # the forget bias goes +1 on reading and -1 on writing: one float32 rounding there
            tolerance = 1e-6 if name.endswith("/B") else 0
            np.testing.assert_allclose(f[name][...], value, atol=tolerance, rtol=0, err_msg=name)
    written = json.loads((tmp_path / "out-options.json").read_text())
    assert written["lstm"] == OPTIONS["lstm"] and written["char_cnn"] == OPTIONS["char_cnn"]


def test_convert_command_and_mistakes(released, tmp_path, capsys):
    options, weight_file, _ = released
    assert main(["convert", "from-allennlp", str(options), str(weight_file), str(tmp_path / "elmo")]) == 0
    assert "elmo" in capsys.readouterr().out
    model = load_elmo(tmp_path / "elmo")
    original = read_allennlp(options, weight_file)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), original.state_dict().values()))
    # features of the converted model (no tokenizer: the character CNN reads whole words)
    (tmp_path / "in.txt").write_text("The cat sat on the mat .\n")
    assert main(["features", "--model", str(tmp_path / "elmo"), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "f.safetensors"), "--pooling", "none", "--strategy", "layer_1"]) == 0
    from safetensors.numpy import load_file

    vectors = load_file(str(tmp_path / "f.safetensors"))["vectors"]
    with torch.no_grad():
        expected = elmo_layer_outputs(model.eval(), [["The", "cat", "sat", "on", "the", "mat", "."]]).layers[1][0]
    np.testing.assert_array_equal(vectors, expected.numpy())
    bad = dict(OPTIONS, lstm=dict(OPTIONS["lstm"], dim=12))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match="shape"):
        read_allennlp(tmp_path / "bad.json", weight_file)
    with pytest.raises(UserError, match="no such file"):
        read_allennlp(options, tmp_path / "missing.hdf5")
