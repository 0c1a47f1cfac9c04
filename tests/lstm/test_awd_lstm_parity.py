"""AWD-LSTM against fastai's AWD_LSTM (the oracle; fastai is a test extra): same weights, same
outputs in eval mode, within 1e-5. fastai keeps the recurrent state inside the module; ours is
passed in and out, so the second window checks that carrying it gives the same thing."""

import os

import pytest
import torch

if not os.environ.get("CI"):  # CI installs the oracle (make setup-test): there a missing one fails
    pytest.importorskip("fastai.text.models.core")

from fastai.text.models.awdlstm import AWD_LSTM
from fastai.text.models.core import get_language_model, get_text_classifier

from lmforge.lstm.awd_lstm import AWDLSTMClassifier, AWDLSTMLanguageModel
from lmforge.lstm.awd_lstm_config import AWDLSTMConfig

VOCAB = 37
CONFIG = AWDLSTMConfig(vocab_size=VOCAB, embedding_size=12, hidden_size=20, num_layers=3)


def fastai_config(config: AWDLSTMConfig) -> dict:
    return dict(emb_sz=config.embedding_size, n_hid=config.hidden_size, n_layers=config.num_layers,
                pad_token=config.pad_id, bidir=False, output_p=config.output_dropout, hidden_p=config.hidden_dropout,
                input_p=config.input_dropout, embed_p=config.embedding_dropout, weight_p=config.weight_dropout)


def copy_encoder(fastai_encoder, ours) -> None:
    """fastai names -> ours; the raw (undropped) hidden-to-hidden matrix is weight_hh_l0_raw."""
    with torch.no_grad():
        ours.embedding.weight.copy_(fastai_encoder.encoder.weight)
        for rnn, layer in zip(fastai_encoder.rnns, ours.layers):
            layer.weight_ih.copy_(rnn.module.weight_ih_l0)
            layer.weight_hh.copy_(rnn.weight_hh_l0_raw)
            layer.bias_ih.copy_(rnn.module.bias_ih_l0)
            layer.bias_hh.copy_(rnn.module.bias_hh_l0)


def test_language_model_matches_fastai_in_eval_mode():
    torch.manual_seed(1)
    reference = get_language_model(AWD_LSTM, VOCAB, config={**fastai_config(CONFIG), "tie_weights": True,
                                                             "out_bias": True}).eval()
    torch.nn.init.normal_(reference[1].decoder.bias)  # fastai starts it at 0: make the copy count
    ours = AWDLSTMLanguageModel(CONFIG).eval()
    copy_encoder(reference[0], ours.encoder)
    with torch.no_grad():
        ours.decoder.bias.copy_(reference[1].decoder.bias)
    assert ours.decoder.weight is ours.encoder.embedding.weight
    ids = torch.randint(0, VOCAB, (3, 9))
    reference[0].reset()
    state = None
    with torch.no_grad():
        for window in ids.split(5, dim=1):  # two BPTT windows, the state carried between them
            expected = reference(window)[0]
            output = ours(window, state)
            state = output.encoded.state
            torch.testing.assert_close(output.logits, expected, atol=1e-5, rtol=0)


def test_classifier_matches_fastai_in_eval_mode():
    torch.manual_seed(2)
    reference = get_text_classifier(AWD_LSTM, VOCAB, 3, seq_len=72, config=fastai_config(CONFIG),
                                    lin_ftrs=[CONFIG.classifier_hidden], ps=[CONFIG.classifier_dropout]).eval()
    ours = AWDLSTMClassifier(CONFIG.for_classifier(("a", "b", "c"))).eval()
    copy_encoder(reference[0].module, ours.encoder)
    # fastai head: layers[0] = LinBnDrop(bn, dropout, linear, relu), layers[1] = LinBnDrop(bn, dropout, linear)
    for fastai_block, block in zip(reference[1].layers, ours.head):
        fastai_block[0].running_mean.normal_()
        fastai_block[0].running_var.uniform_(0.5, 2)
        torch.nn.init.normal_(fastai_block[0].weight)
        block.load_state_dict(fastai_block.state_dict())
    ids = torch.randint(2, VOCAB, (4, 11))  # no padding: fastai pads on the left, we on the right
    with torch.no_grad():
        expected = reference(ids)[0]
        got = ours(ids, torch.full((4,), 11)).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
