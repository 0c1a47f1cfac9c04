"""ELMo biLM pretraining (`objective.kind: bilm`, lmforge.lstm.elmo_training): the block stream
frames every sentence as <S> ... </S>, predictions stay inside sentences, the loss is both
directions' cross-entropy (full or sampled softmax), the elmo-tiny recipe's held-out perplexity
falls on the bundled corpus, and `lmforge features` / `lmforge presets` serve the result."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

from lmforge.cli import main
from lmforge.errors import UserError
from lmforge.lstm.elmo import elmo_layer_outputs, load_elmo
from lmforge.lstm.elmo_training import (
    BiLMDataset,
    BiLMObjective,
    build_pretraining_model,
)
from lmforge.pretraining import load_recipe, run_pretraining
from lmforge.training.loop import read_metrics

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "pretrain" / "elmo-tiny.yaml"
CORPUS = REPO / "data" / "brown" / "brown-sample.jsonl"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from lmforge.data.prepare import prepare_corpus
    from lmforge.tokenization import Tokenizer

    root = tmp_path_factory.mktemp("prepared")
    Tokenizer.train([CORPUS], kind="wordpiece", vocab_size=1000, show_progress=False).save(root / "tok")
    prepare_corpus([CORPUS], root / "tok", root / "data", heldout_docs=3, show_progress=False)
    return root / "data"


def recipe(prepared, *overrides):
    return load_recipe(RECIPE, [f"data.prepared={prepared}", *overrides])


def test_blocks_are_the_framed_sentence_stream(prepared):
    from lmforge.data.shards import TokenShards

    data = BiLMDataset(prepared, "heldout", block_length=16, bos_id=2, eos_id=3)
    shards = TokenShards(prepared / "heldout")
    stream = np.concatenate([np.concatenate(([2], shards.sentence(s), [3])) for s in range(shards.num_sentences)])
    assert len(data) == len(stream) // 16
    blocks = np.concatenate([data[i]["input_ids"] for i in range(len(data))])
    assert np.array_equal(blocks, stream[:len(blocks)])
    with pytest.raises(IndexError):
        data[len(data)]


def test_loss_counts_each_direction_inside_sentences(prepared):
    from lmforge.tokenization import Tokenizer

    tokenizer = Tokenizer.from_dir(prepared / "tokenizer")
    model = build_pretraining_model(recipe(prepared, "model.config={dropout: 0.0}"), tokenizer).eval()
    bos, eos = tokenizer.cls_id, tokenizer.sep_id
    objective = BiLMObjective(tokenizer.pad_id, bos, eos)
    batch = objective.collate([{"input_ids": [bos, 50, 51, eos, bos, 60]}, {"input_ids": [70, eos, bos, 80]}])
    forward, backward = objective._chosen(batch)
    # forward: not after </S> nor from padding; backward: not before <S>
    assert forward.tolist() == [[True, True, True, False, True], [True, False, True, False, False]]
    assert backward.tolist() == [[True, True, True, False, True], [True, False, True, False, False]]
    assert objective.counts(batch) == {"bilm": 12}
    with torch.no_grad():
        out = model(batch["input_ids"], batch["attention_mask"])
        logits_f = model.softmax(out.forward_layers[-1][:, :-1][forward])
        logits_b = model.softmax(out.backward_layers[-1][:, 1:][backward])
        expected = (F.cross_entropy(logits_f, batch["input_ids"][:, 1:][forward], reduction="sum")
                    + F.cross_entropy(logits_b, batch["input_ids"][:, :-1][backward], reduction="sum"))
        assert torch.allclose(objective.loss_sums(model, batch, False)["bilm"], expected)
        sums = objective.eval_sums(model, batch, False)
    assert sums["lm_loss"][1] == 12 and sums["forward_loss"][1] == 6
    assert sums["lm_loss"][0] == pytest.approx(float(expected), rel=1e-5)
    # sampled softmax in training: a finite loss with gradients into the shared softmax
    sampled = build_pretraining_model(recipe(prepared, "model.config={sampled_softmax: 64}"), tokenizer).train()
    loss = objective.loss_sums(sampled, batch, False)["bilm"]
    loss.backward()
    assert torch.isfinite(loss) and sampled.softmax.weight.grad.abs().sum() > 0


def test_elmo_tiny_recipe_perplexity_falls_and_features_work(prepared, tmp_path, capsys):
    r = recipe(prepared, "train.max_steps=30", "train.eval_every=15", "train.log_every=5", "train.batch_size=16",
               "train.eval_batches=2")
    result = run_pretraining(r, tmp_path / "run")
    assert result["steps"] == 30
    evals = [m for m in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval_perplexity" in m]
    assert [m["step"] for m in evals] == [0, 15, 30]
    assert evals[-1]["eval_perplexity"] < 0.5 * evals[0]["eval_perplexity"], evals
    for m in evals:
        assert m["eval_perplexity"] == pytest.approx(np.exp(m["eval_lm_loss"]), rel=1e-6)
        assert {"eval_forward_perplexity", "eval_backward_perplexity"} <= set(m)
    model_dir = tmp_path / "run" / "model"
    manifest = json.loads((model_dir / "config.json").read_text())
    assert manifest["model_type"] == "elmo" and manifest["format"] == "lmforge-lstm"
    model = load_elmo(model_dir).eval()
    assert model.config.vocab_size == manifest["vocab_size"] and (model_dir / "tokenizer.json").is_file()

    from lmforge.tokenization import Tokenizer

    tokenizer = Tokenizer.from_dir(model_dir)
    result = elmo_layer_outputs(model, ["the jury said", "it was unbelievable"], tokenizer)
    assert len(result.layers) == 3 and result.layers[0].shape[-1] == 128
    words = result.word_ids[1][result.mask[1]].tolist()
    assert words[0] == 0 and words[-1] == 2 and words == sorted(words)  # sub-tokens keep their word

    (tmp_path / "in.txt").write_text("the jury said\nit was unbelievable today\n")
    for strategy in ("layer_0", "average", "scalar_mix", "last"):
        out = tmp_path / f"{strategy}.safetensors"
        assert main(["features", "--model", str(model_dir), "--input", str(tmp_path / "in.txt"), "--out", str(out),
                     "--pooling", "none", "--strategy", strategy]) == 0
        arrays = load_file(str(out))
        assert arrays["vectors"].shape[1] == 128 and arrays["offsets"][0] == 0
        assert arrays["word_ids"][arrays["offsets"][1] - 1] == 2  # the first line's last word
    mix = load_file(str(tmp_path / "scalar_mix.safetensors"))["vectors"]
    average = load_file(str(tmp_path / "average.safetensors"))["vectors"]
    np.testing.assert_allclose(mix, average, atol=1e-6)  # an untrained mix: equal weights, gamma 1
    assert main(["features", "--model", str(model_dir), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "pooled.npy"), "--strategy", "layer_2"]) == 0
    assert np.load(tmp_path / "pooled.npy").shape == (2, 128)
    assert main(["features", "--model", str(model_dir), "--input", str(tmp_path / "in.txt"),
                 "--out", str(tmp_path / "bad.npy"), "--strategy", "layer_3"]) != 0
    assert "layers 0..2" in capsys.readouterr().err


def test_presets_and_recipe_mistakes(prepared, tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "elmo-small" in out and "13,593,312" in out and "93,600,864" in out
    with pytest.raises(UserError, match="unknown ELMo preset"):
        run_pretraining(recipe(prepared, "model.preset=elmo-huge"), tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()


def test_resume_continues_exactly(prepared, tmp_path):
    import shutil

    from safetensors.torch import load_file as load_tensors

    overrides = ["train.batch_size=8", "train.eval_every=4", "train.eval_batches=1", "train.save_every=4",
                 "train.max_steps=8"]
    run_pretraining(recipe(prepared, *overrides), tmp_path / "straight")
    run_pretraining(recipe(prepared, *overrides), tmp_path / "resumed")
    checkpoints = tmp_path / "resumed" / "checkpoints"
    shutil.rmtree(checkpoints / "step-00000008")  # as if stopped after step 4's checkpoint
    (checkpoints / "latest").write_text("step-00000004\n")
    run_pretraining(recipe(prepared, *overrides), tmp_path / "resumed", resume=True)
    straight = load_tensors(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_tensors(tmp_path / "resumed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
