"""ELMo biLM (lmforge.lstm.elmo): shapes and masks over batches of different lengths, each LM
sees only its own direction's past, padding never leaks, save/load is bit-identical, the
preset sizes are AllenNLP's, the scalar mix's math, and the sampled softmax against TF's
formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.lstm.checkpoint import load_lstm, read_lstm_config
from lmforge.lstm.elmo import (
    PRESETS,
    ElmoBiLM,
    elmo_layer_outputs,
    parameter_count,
    save_elmo,
    word_char_ids,
    words_to_char_ids,
)
from lmforge.lstm.sampled_softmax import (
    expected_count,
    log_uniform_probability,
    sample_log_uniform_unique,
    sampled_softmax_loss,
)
from lmforge.lstm.scalar_mix import ScalarMix

SMALL = PRESETS["elmo-tiny"].replace(filters=[[1, 4], [2, 4], [3, 8]], cell_size=24, projection_dim=8,
                                     n_layers=3, vocab_size=50, dropout=0.0, cell_clip=0.5, proj_clip=0.4)


def model(config=SMALL, seed=0):
    torch.manual_seed(seed)
    m = ElmoBiLM(config).eval()
    m.vocab_char_ids.copy_(torch.randint(1, 262, m.vocab_char_ids.shape))
    return m


def test_preset_sizes_are_allennlps():
    # AllenNLP's model table: Small 13.6M, Original 93.6M parameters (no softmax)
    assert parameter_count(PRESETS["elmo-small"]) == 13_593_312
    assert parameter_count(PRESETS["elmo-original"]) == 93_600_864
    assert PRESETS["elmo-original"].filters == [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]]
    # the torch-free count (for `lmforge presets`) is the built model's, softmax and word embeddings too
    for config in [*PRESETS.values(), SMALL, SMALL.replace(token_encoder="word")]:
        with torch.device("meta"):
            built = sum(p.numel() for p in ElmoBiLM(config).parameters())
        assert parameter_count(config) == built


def test_character_ids_follow_allennlps_mapper():
    ids = word_char_ids("ab")
    assert ids[:4] == [259, 98, 99, 260] and set(ids[4:]) == {261} and len(ids) == 50
    assert word_char_ids("<S>")[:3] == [259, 257, 260] and word_char_ids("</S>")[:3] == [259, 258, 260]
    assert len(word_char_ids("x" * 80)) == 50 and word_char_ids("x" * 80)[49] == 260  # cut to 48 bytes
    chars, mask = words_to_char_ids([["a", "b", "c"], ["d"]])
    assert chars.shape == (2, 5, 50) and mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]
    assert chars[1, 3:].eq(0).all()


def test_shapes_and_padding_never_leaks():
    m = model()
    lengths = [7, 3, 5]
    ids = torch.randint(1, 50, (3, 7))
    mask = torch.arange(7)[None] < torch.tensor(lengths)[:, None]
    padded = ids.masked_fill(~mask, 0)
    with torch.no_grad():
        out = m(padded, mask)
        garbage = m(padded.masked_fill(~mask, 17), mask)  # whatever sits in the padding
        layers = m.layers(out)
    assert len(layers) == 4 and all(layer.shape == (3, 7, 16) for layer in layers)
    assert torch.equal(layers[0][..., :8], layers[0][..., 8:])  # the token layer doubled, as AllenNLP
    for row, n in enumerate(lengths):
        with torch.no_grad():
            alone = m.layers(m(ids[row:row + 1, :n], torch.ones(1, n, dtype=torch.long)))
        for batched, single, other in zip(layers, alone, m.layers(garbage)):
            torch.testing.assert_close(batched[row, :n], single[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(other[row, :n], single[0], atol=1e-6, rtol=0)
            assert batched[row, n:].eq(0).all()


def test_each_direction_sees_only_its_past():
    m = model()
    ids = torch.randint(1, 50, (2, 9))
    mask = torch.ones_like(ids)
    t = 4
    later, earlier = ids.clone(), ids.clone()
    later[:, t + 1:] = torch.randint(1, 50, (2, 9 - t - 1))
    earlier[:, :t] = torch.randint(1, 50, (2, t))
    with torch.no_grad():
        base, after, before = m(ids, mask), m(later, mask), m(earlier, mask)
    for layer in range(3):
        assert torch.equal(base.forward_layers[layer][:, :t + 1], after.forward_layers[layer][:, :t + 1])
        assert not torch.allclose(base.forward_layers[layer][:, t + 1:], after.forward_layers[layer][:, t + 1:])
        assert torch.equal(base.backward_layers[layer][:, t:], before.backward_layers[layer][:, t:])
        assert not torch.allclose(base.backward_layers[layer][:, :t], before.backward_layers[layer][:, :t])


def test_clipping_and_skip_connections():
    m = model()
    with torch.no_grad():
        for lstm in [*m.forward_lm, *m.backward_lm]:
            lstm.state_projection.weight.mul_(100)  # outputs far past the clip
        out = m(torch.randint(1, 50, (2, 6)))
    # the first layer's output is a clipped projection; later ones add their input
    assert out.forward_layers[0].abs().max() == pytest.approx(0.4)
    assert (out.forward_layers[1] - out.forward_layers[0]).abs().max() <= 0.4 + 1e-6
    assert out.forward_layers[1].abs().max() > 0.4


def test_save_load_round_trip_is_bit_identical(tmp_path):
    m = model()
    save_elmo(m, tmp_path / "elmo")
    model_type, task, config = read_lstm_config(tmp_path / "elmo")
    assert (model_type, task, config["cell_size"]) == ("elmo", "bilm", 24)
    loaded = load_lstm(tmp_path / "elmo").eval()
    for (name, a), (other, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert name == other and torch.equal(a, b)
    ids = torch.randint(1, 50, (2, 5))
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(m.layers(m(ids)), loaded.layers(loaded(ids))))


def test_word_embedding_option_and_layer_outputs_api():
    word = ElmoBiLM(SMALL.replace(token_encoder="word")).eval()
    assert not hasattr(word.token_encoder, "convolutions")
    assert word.layers(word(torch.randint(1, 50, (1, 4))))[2].shape == (1, 4, 16)
    with pytest.raises(UserError, match="token_encoder"):
        ElmoBiLM(SMALL.replace(token_encoder="bytes"))
    result = elmo_layer_outputs(model(), [["a", "bb", "c"], "d e"])
    assert [layer.shape for layer in result.layers] == [(2, 3, 16)] * 4
    assert result.mask.tolist() == [[True] * 3, [True, True, False]]
    assert result.word_ids.tolist() == [[0, 1, 2], [0, 1, -1]]
    assert result.layers[3][1, 2].eq(0).all()


# ------------------------------------------------------------------ scalar mix
def test_scalar_mix_math():
    layers = [torch.randn(2, 3, 4) for _ in range(3)]
    mix = ScalarMix(3, initial_weights=[0.5, -1.0, 2.0])
    with torch.no_grad():
        mix.gamma.fill_(1.7)
    s = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0)
    expected = 1.7 * (s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2])
    torch.testing.assert_close(mix(layers), expected)
    assert math.isclose(float(mix.layer_weights().sum().detach()), 1.0, rel_tol=1e-6)
    equal = ScalarMix(3)  # starts at equal weights and gamma 1: the average
    torch.testing.assert_close(equal(layers), sum(layers) / 3)
    mix(layers).sum().backward()
    assert mix.scalar_parameters.grad is not None and mix.gamma.grad is not None


def test_scalar_mix_layer_norm_uses_unmasked_elements_only():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]]).bool()
    layers = [torch.randn(2, 3, 4) for _ in range(2)]
    mix = ScalarMix(2, do_layer_norm=True)
    normed = []
    for layer in layers:
        values = layer[mask]  # (3 tokens, 4)
        mean, var = values.mean(), values.var(unbiased=False)
        normed.append((layer - mean) / torch.sqrt(var + 1e-13))
    torch.testing.assert_close(mix(layers, mask), (normed[0] + normed[1]) / 2)
    with pytest.raises(UserError, match="mask"):
        mix(layers)


# ------------------------------------------------------------------ sampled softmax
def test_log_uniform_sampler_follows_zipf():
    vocab = 20
    p = log_uniform_probability(torch.arange(vocab), vocab)
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-9) and bool((p[:-1] > p[1:]).all())
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_log_uniform_unique(1, vocab, generator)[0] for _ in range(4000)]).flatten()
    frequency = torch.bincount(draws, minlength=vocab).double() / len(draws)
    assert (frequency - p).abs().max() < 0.02
    samples, tries = sample_log_uniform_unique(15, vocab, generator)
    assert len(set(samples.tolist())) == 15 and tries >= 15


def test_sampled_softmax_matches_tf_formula():
    torch.manual_seed(1)
    vocab, width = 30, 6
    hidden, weight, bias = torch.randn(5, width), torch.randn(vocab, width), torch.randn(vocab)
    targets = torch.tensor([0, 3, 3, 12, 29])
    loss = sampled_softmax_loss(hidden, targets, weight, bias, 8, torch.Generator().manual_seed(7))
    sampled, tries = sample_log_uniform_unique(8, vocab, torch.Generator().manual_seed(7))
    expected = []
    for h, target in zip(hidden, targets):
        q_true = -math.expm1(tries * math.log1p(-float(log_uniform_probability(target, vocab))))
        logits = [float(h @ weight[target] + bias[target]) - math.log(q_true)]
        for s in sampled.tolist():
            q = -math.expm1(tries * math.log1p(-float(log_uniform_probability(torch.tensor(s), vocab))))
            logits.append(-math.inf if s == int(target) else float(h @ weight[s] + bias[s]) - math.log(q))
        expected.append(-logits[0] + math.log(sum(math.exp(x) for x in logits)))
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float32), atol=1e-5, rtol=1e-5)
    # without repeats in the draws the expected count is p * num_sampled (TF's num_tries == batch case)
    p = torch.tensor([0.1])
    torch.testing.assert_close(expected_count(p, 4, 4), p * 4)


def test_sampled_softmax_approaches_full_softmax_with_the_whole_vocabulary():
    torch.manual_seed(2)
    vocab = 12
    hidden, weight, bias = torch.randn(4, 5), torch.randn(vocab, 5), torch.randn(vocab)
    targets = torch.tensor([1, 5, 7, 11])
    # every id drawn: corrections are all ~log(1) = 0 once the draws are many, so the loss is the full one
    loss = sampled_softmax_loss(hidden, targets, weight, bias, vocab)
    full = F.cross_entropy(hidden @ weight.T + bias, targets, reduction="none")
    assert (loss - full).abs().max() < 0.05
