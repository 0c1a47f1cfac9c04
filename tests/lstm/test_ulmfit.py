"""ULMFiT's three stages on the bundled samples: perplexity falls, unfreezing goes top-down one
layer group per epoch, discriminative rates divide by 2.6, and `lmforge ulmfit` writes one
loadable checkpoint per stage."""

import json
from pathlib import Path

import pytest
import torch
from finetune_samples import DATA, SST2, one_thread  # noqa: F401  (fixture)

from lmforge.cli import main
from lmforge.lstm.awd_lstm import AWDLSTMClassifier, AWDLSTMLanguageModel
from lmforge.lstm.awd_lstm_config import preset
from lmforge.lstm.checkpoint import load_lstm
from lmforge.finetune.ulmfit import (STAGE_DIRS, batchify, classifier_from_language_model, optimizer_for, read_corpus,
                                 split_held_out, token_stream, train_classifier, train_language_model,
                                 train_tokenizer, windows)

BROWN = DATA / "brown" / "brown-sample.jsonl"


@pytest.fixture(scope="module")
def brown_tokens():
    documents = read_corpus([str(BROWN)], max_words=30000)
    train, held_out = split_held_out(documents, every=10)
    tokenizer = train_tokenizer(train, 400)
    return tokenizer, token_stream(tokenizer, train)[:24000], token_stream(tokenizer, held_out)[:4000]


def test_tiny_recipe_held_out_perplexity_falls_on_the_bundled_corpus(brown_tokens):
    tokenizer, train, held_out = brown_tokens
    torch.manual_seed(0)
    model = AWDLSTMLanguageModel(preset("awd-lstm-tiny", vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id))
    history = train_language_model(model, train, held_out, epochs=1, lr=1e-2, decay=1.0, batch_size=16, bptt=35,
                                   weight_decay=0.01, clip=0.25, name="stage 1", log=lambda line: None)
    before, after = history[0]["held_out_perplexity"], history[-1]["held_out_perplexity"]
    assert before > 0.8 * tokenizer.vocab_size  # an untrained model is near uniform
    assert after < 0.7 * before


def test_windows_cover_the_stream_with_next_token_targets():
    stream = torch.arange(103)
    batched = batchify(stream, 4)
    pairs = windows(batched, 10)
    assert torch.equal(torch.cat([x for x, _ in pairs], 1), batched[:, :-1])
    assert torch.equal(torch.cat([y for _, y in pairs], 1), batched[:, 1:])
    assert torch.equal(batched[1], torch.arange(25, 50))  # contiguous rows


def test_discriminative_rates_divide_by_2_6_per_layer_group():
    model = AWDLSTMClassifier(preset("awd-lstm-tiny", vocab_size=50).for_classifier(("a", "b")))
    optimizer = optimizer_for(model, 1e-2, 2.6, 0.01)
    rates = {group["layer_group"]: group["lr"] for group in optimizer.param_groups}
    assert sorted(rates) == [0, 1, 2, 3, 4]
    for depth in range(4):
        assert rates[depth] == pytest.approx(rates[depth + 1] / 2.6)
    assert optimizer.defaults["betas"] == (0.7, 0.99)


def test_gradual_unfreezing_trains_one_more_group_per_epoch_from_the_top():
    torch.manual_seed(0)
    language_model = AWDLSTMLanguageModel(preset("awd-lstm-tiny", vocab_size=60))
    model = classifier_from_language_model(language_model, ["neg", "pos"])
    for name, tensor in model.encoder.state_dict().items():
        assert torch.equal(tensor, language_model.encoder.state_dict()[name])  # the encoder carried over
    groups = model.layer_groups()
    rows = [torch.randint(5, 60, (n,)).tolist() for n in torch.randint(3, 12, (24,)).tolist()]
    labels = [len(row) % 2 for row in rows]
    snapshots = [[[p.detach().clone() for p in group.parameters()] for group in groups]]
    train_classifier(model, rows, labels, rows[:6], labels[:6], epochs=len(groups), lr=1e-2, decay=2.6,
                     batch_size=8, weight_decay=0.01, clip=0.25, seed=0,
                     log=lambda line: snapshots.append([[p.detach().clone() for p in g.parameters()] for g in groups]))
    for epoch in range(len(groups)):
        changed = [any(not torch.equal(a, b) for a, b in zip(before, after))
                   for before, after in zip(snapshots[epoch], snapshots[epoch + 1])]
        expected = [index >= len(groups) - 1 - epoch for index in range(len(groups))]
        assert changed == expected, f"epoch {epoch}"


def test_three_stages_end_to_end(tmp_path, capsys):
    train, dev = SST2
    common = ["--train", str(train), "--dev", str(dev), "--preset", "awd-lstm-tiny", "--batch-size", "8",
              "--bptt", "20", "--finetune-epochs", "1", "--classifier-epochs", "2", "--classifier-batch-size", "8"]
    out = tmp_path / "run"
    assert main(["ulmfit", "--general", str(BROWN), "--general-tokens", "4000", "--vocab-size", "300",
                 "--out", str(out), *common]) == 0
    assert "dev accuracy" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    stages = [record["stage"] for record in metrics["history"]]
    assert stages == ["stage 1"] * 2 + ["stage 2"] * 2 + ["stage 3"] * 2
    assert all(record["held_out_perplexity"] > 1 for record in metrics["history"][:4])
    assert 0 <= metrics["dev_accuracy"] <= 1 and metrics["labels"] == ["0", "1"]
    assert json.loads((out / "ulmfit.json").read_text())["general_tokens"] == 4000  # the settings, for a rerun
    for directory, kind in zip(STAGE_DIRS, (AWDLSTMLanguageModel, AWDLSTMLanguageModel, AWDLSTMClassifier)):
        assert isinstance(load_lstm(out / directory), kind)
        assert (out / directory / "tokenizer.json").is_file()
    assert load_lstm(out / STAGE_DIRS[2]).config.input_dropout == 0.4  # fastai's classifier dropouts

    # A finished run is never overwritten; stage 1 can be reused.
    assert main(["ulmfit", "--general", str(BROWN), "--out", str(out), *common]) == 2
    assert "already holds" in capsys.readouterr().err
    again = tmp_path / "again"
    assert main(["ulmfit", "--pretrained", str(out / STAGE_DIRS[0]), "--out", str(again), *common]) == 0
    assert not (again / STAGE_DIRS[0]).exists() and (again / STAGE_DIRS[2] / "model.safetensors").is_file()


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    train, dev = SST2
    assert main(["ulmfit", "--train", str(train), "--dev", str(dev), "--out", str(tmp_path / "x")]) == 2
    assert "--general" in capsys.readouterr().err
    assert main(["ulmfit", "--general", str(tmp_path / "missing.txt"), "--train", str(train), "--dev", str(dev),
                 "--out", str(tmp_path / "x")]) == 2
    assert main(["ulmfit", "--pretrained", str(Path(train).parent), "--train", str(train), "--dev", str(dev),
                 "--out", str(tmp_path / "y")]) == 2
    assert "not an lmforge LSTM checkpoint" in capsys.readouterr().err
