"""BART fine-tuned through the existing classification and qa tasks, unchanged from the encoder
families' commands: a tiny random bart-tiny with RoBERTa's byte-level BPE, trained on the
bundled samples, stands in for a pretrained BartForConditionalGeneration checkpoint. The task
models take the encoders' inputs (ids + mask) and feed the decoder the input shifted right
(Lewis et al. 2020 §3.1): classification reads the decoder state at the final </s>, span QA
every decoder state. The fine-tuned classifier is one transformers loads strictly."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from finetune_samples import MRPC, SQUAD, one_thread  # noqa: F401 (fixture)
from test_encoder_families import finetune, losses, sample_corpus

import lmforge
from lmforge.families import get_preset
from lmforge.tasks.classification import read_classification
from lmforge.tasks.qa import read_squad
from lmforge.tokenization import Tokenizer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("bart")
    tokenizer = Tokenizer.train([sample_corpus(root / "corpus.txt")], kind="byte_bpe", vocab_size=400,
                                lowercase=False, min_frequency=1, show_progress=False)
    model = lmforge.build("bart-tiny", task="seq2seq_lm", seed=0, vocab_size=tokenizer.vocab_size,
                          hidden_dropout=0.0, attention_dropout=0.0)
    return lmforge.save(model, root / "ckpt", tokenizer, format="hf")


def test_bart_sequence_classification(checkpoint, tmp_path):
    out = tmp_path / "mrpc"
    finetune(checkpoint, out, "classification", (MRPC[0], MRPC[0]), epochs=4)
    curve = losses(out)
    assert sum(curve[-2:]) / 2 < sum(curve[:2]) / 2
    model = lmforge.load_model(out / "model").eval()
    assert (model.task, model.config.family) == ("sequence_classification", "bart")
    reference, info = transformers.BartForSequenceClassification.from_pretrained(out / "model",
                                                                                 output_loading_info=True)
    assert not any(info.values())
    tokenizer = lmforge.load_tokenizer(checkpoint)
    pairs = read_classification(MRPC[0])[:3]
    batch = tokenizer([p.text for p in pairs], [p.pair for p in pairs])
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"])
        theirs = reference.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert (ours - theirs).abs().max() <= 1e-5


def test_bart_span_qa(checkpoint, tmp_path):
    out = tmp_path / "qa"
    summary = finetune(checkpoint, out, "qa", SQUAD, epochs=2, max_length=64, doc_stride=24)
    curve = losses(out)
    assert curve[-1] < curve[0]
    predictions = json.loads((out / "predictions.json").read_text())
    contexts = {e.id: e.context for e in read_squad(SQUAD[1])}
    assert predictions and all(answer in contexts[qid] for qid, answer in predictions.items())
    assert 0.0 <= summary["exact_match"] <= summary["f1"] <= 1.0
    model = lmforge.load_model(out / "model")
    assert (model.task, model.config.family) == ("question_answering", "bart")
    _, info = transformers.BartForQuestionAnswering.from_pretrained(out / "model", output_loading_info=True)
    assert not any(info.values())


@pytest.mark.parametrize("preset,task", [("bart-tiny", "sequence_classification"), ("bart-tiny", "question_answering"),
                                         ("bart-tiny", "seq2seq_lm"), ("t5-tiny", "seq2seq_lm")])
def test_layer_groups_hold_every_parameter_once(preset, task):
    """Discriminative rates and gradual unfreezing see every parameter of an encoder-decoder in
    one group: the embeddings (shared table, positions, norms) at the bottom, T5's
    position tables and final norms with their stack's first and last layers, the heads on top."""
    config = get_preset(preset).replace(labels=("a", "b"))
    model = lmforge.build(config, task=task, seed=0)
    groups = model.layer_groups()
    ids = [id(p) for group in groups for p in group.parameters()]
    assert set(ids) == {id(p) for p in model.parameters()}
    # Only a tied output projection (the shared table) shows again, in the heads on top.
    assert {i for i in ids if ids.count(i) > 1} <= {id(model.backbone.shared.weight)}
    assert len(groups) == 1 + config.num_layers + config.num_decoder_layers + 1
    assert any(p is model.backbone.shared.weight for p in groups[0].parameters())
