"""AWD-LSTM pieces against the formulas of Merity et al. 2017, and the checkpoint round trip."""

import pytest
import torch
import torch.nn.functional as F

from lmforge.errors import UserError
from lmforge.lstm.awd_lstm import (AWDLSTMClassifier, AWDLSTMLanguageModel, LockedDropout, WeightDropLSTM,
                                   WordDropoutEmbedding, activation_regularization, concat_pool)
from lmforge.lstm.awd_lstm_config import PRESETS, AWDLSTMConfig, language_model_parameters
from lmforge.lstm.checkpoint import load_lstm, read_lstm_config, save_lstm

SMALL = AWDLSTMConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_layers=3)


def test_weight_drop_changes_only_hidden_to_hidden_and_only_in_training(monkeypatch):
    layer = WeightDropLSTM(6, 10, weight_dropout=0.5)
    seen = []
    original_lstm = torch.lstm

    def spy(x, state, weights, *args):  # records the weights each forward pass hands the fused op
        seen.append([w.detach().clone() for w in weights])
        return original_lstm(x, state, weights, *args)

    monkeypatch.setattr(torch, "lstm", spy)
    x = torch.randn(2, 4, 6)
    layer.train()(x)
    layer.eval()(x)
    (w_ih, w_hh, b_ih, b_hh), evaluated = seen
    assert torch.equal(w_ih, layer.weight_ih) and torch.equal(b_ih, layer.bias_ih) and torch.equal(b_hh, layer.bias_hh)
    dropped = w_hh == 0
    assert 0.3 < dropped.float().mean() < 0.7  # DropConnect with p = 0.5
    torch.testing.assert_close(w_hh[~dropped], layer.weight_hh.detach()[~dropped] * 2)  # kept / (1 - p)
    for used, parameter in zip(evaluated, layer.parameters()):
        assert torch.equal(used, parameter)  # eval: every weight as stored
    assert not torch.equal(layer.weight_hh, w_hh)  # the stored weight itself is never changed


def test_weight_drop_layer_matches_a_plain_lstm_in_eval():
    layer = WeightDropLSTM(6, 10, weight_dropout=0.5).eval()
    reference = torch.nn.LSTM(6, 10, batch_first=True)
    reference.load_state_dict({"weight_ih_l0": layer.weight_ih, "weight_hh_l0": layer.weight_hh,
                               "bias_ih_l0": layer.bias_ih, "bias_hh_l0": layer.bias_hh})
    x = torch.randn(3, 5, 6)
    output, (h, c) = layer(x)
    expected, (h_ref, c_ref) = reference(x)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_embedding_dropout_drops_whole_words():
    embedding = WordDropoutEmbedding(30, 5, padding_idx=1, p=0.5).train()
    ids = torch.arange(30).repeat(4, 1)
    out = embedding(ids)
    dropped_rows = (out[0] == 0).all(-1)
    assert 0 < dropped_rows.sum() < 30
    for row in out[1:]:  # the same words are dropped at every position they occur
        assert torch.equal((row == 0).all(-1), dropped_rows)
    torch.testing.assert_close(out[0][~dropped_rows], embedding.weight[~dropped_rows] * 2)
    assert torch.equal(embedding.eval()(ids), F.embedding(ids, embedding.weight))


def test_locked_dropout_shares_one_mask_over_time():
    dropout = LockedDropout(0.5).train()
    out = dropout(torch.ones(3, 7, 20))
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert set(out.unique().tolist()) == {0.0, 2.0}
    x = torch.randn(3, 7, 20)
    assert torch.equal(dropout.eval()(x), x)


def test_ar_and_tar_equal_their_formulas():
    raw, dropped = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    alpha, beta = 2.0, 1.0
    ar = alpha * sum(dropped[b, t, f] ** 2 for b in range(2) for t in range(6) for f in range(4)) / 48
    tar = beta * sum((raw[b, t, f] - raw[b, t - 1, f]) ** 2 for b in range(2) for t in range(1, 6) for f in range(4)) / 40
    torch.testing.assert_close(activation_regularization(raw, dropped, alpha, 0.0), ar)
    torch.testing.assert_close(activation_regularization(raw, dropped, 0.0, beta), tar)
    torch.testing.assert_close(activation_regularization(raw, dropped, alpha, beta), ar + tar)
    # With a mask only the real positions count (the second text is 3 tokens long).
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    ar_masked = alpha * (dropped[0].pow(2).sum() + dropped[1, :3].pow(2).sum()) / (9 * 4)
    tar_masked = beta * ((raw[0, 1:] - raw[0, :-1]).pow(2).sum() + (raw[1, 1:3] - raw[1, :2]).pow(2).sum()) / (7 * 4)
    torch.testing.assert_close(activation_regularization(raw, dropped, alpha, beta, mask), ar_masked + tar_masked)


def test_language_model_loss_adds_ar_tar_in_training_only():
    model = AWDLSTMLanguageModel(SMALL)
    ids = torch.randint(0, 50, (2, 7))
    torch.manual_seed(3)
    output = model.train()(ids)
    loss, cross_entropy = model.loss(output, ids)
    regularisation = activation_regularization(output.encoded.raw, output.encoded.dropped, 2.0, 1.0)
    torch.testing.assert_close(loss, cross_entropy + regularisation)
    loss, cross_entropy = model.eval().loss(model(ids), ids)
    assert torch.equal(loss, cross_entropy)


def test_classifier_padding_never_leaks():
    model = AWDLSTMClassifier(SMALL.for_classifier(("neg", "pos"))).eval()
    short = torch.randint(2, 50, (1, 4))
    padded = torch.cat([short, torch.full((1, 5), SMALL.pad_id)], dim=1)
    alone = model(short, torch.tensor([4])).logits
    in_batch = model(torch.cat([padded, torch.randint(2, 50, (1, 9))]), torch.tensor([4, 9])).logits
    torch.testing.assert_close(in_batch[:1], alone, atol=1e-6, rtol=0)


def test_concat_pool_is_last_max_mean():
    output = torch.randn(2, 5, 3)
    pooled = concat_pool(output, torch.tensor([5, 2]))
    for row, length in ((0, 5), (1, 2)):
        real = output[row, :length]
        torch.testing.assert_close(pooled[row], torch.cat([real[-1], real.max(0).values, real.mean(0)]))


def test_layer_groups_bottom_to_top():
    model = AWDLSTMClassifier(SMALL.for_classifier(("a", "b")))
    groups = model.layer_groups()
    assert groups[0] is model.encoder.embedding and groups[-1] is model.head
    assert groups[1:-1] == list(model.encoder.layers)
    lm = AWDLSTMLanguageModel(SMALL)
    assert list(lm.layer_groups()[:-1]) == list(lm.encoder.layers)


def test_preset_counts_match_the_built_model():
    for name, config in PRESETS.items():
        with torch.device("meta"):
            model = AWDLSTMLanguageModel(config)
        assert sum(p.numel() for p in model.parameters()) == language_model_parameters(config), name
    # fastai's AWD-LSTM LM with ULMFiT's 60,000-word vocabulary
    assert language_model_parameters(PRESETS["awd-lstm"]) == 60000 * 400 + 60000 + 4 * 1152 * (400 + 1152) + 8 * 1152 \
        + 4 * 1152 * (1152 + 1152) + 8 * 1152 + 4 * 400 * (1152 + 400) + 8 * 400


@pytest.mark.parametrize("task", ["language_model", "classification"])
def test_save_load_round_trip_is_bit_identical(tmp_path, task):
    config = SMALL if task == "language_model" else SMALL.for_classifier(("neg", "pos"))
    model = (AWDLSTMLanguageModel if task == "language_model" else AWDLSTMClassifier)(config)
    if task == "classification":
        model.head[0][0].running_mean.normal_()
    save_lstm(model, config.to_dict(), "awd_lstm", task, tmp_path / "ckpt")
    loaded = load_lstm(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == config
    assert read_lstm_config(tmp_path / "ckpt")[:2] == ("awd_lstm", task)
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    if task == "language_model":
        assert loaded.decoder.weight is loaded.encoder.embedding.weight  # still tied after loading
    ids = torch.randint(2, 50, (2, 6))
    lengths = torch.tensor([6, 3])
    args = (ids,) if task == "language_model" else (ids, lengths)
    first, second = model.eval()(*args).logits, loaded.eval()(*args).logits
    assert torch.equal(first, second)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        AWDLSTMConfig(weight_dropout=1.0)
    with pytest.raises(UserError):
        AWDLSTMClassifier(SMALL)  # no labels
    with pytest.raises(UserError):
        AWDLSTMConfig.from_dict({"vocab_size": 10, "cell_size": 3})
