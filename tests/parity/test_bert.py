"""BERT parity against transformers built from the same config with random weights (fp32, CPU)."""

import pytest
import torch
import transformers

import lmforge
from lmforge.families import get_preset
from lmforge.interop.hf import load_hf, save_hf

TOL = 1e-5


def hf_config(**kw):
    base = dict(vocab_size=211, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                intermediate_size=96, max_position_embeddings=64, type_vocab_size=2,
                attn_implementation="sdpa")
    base.update(kw)
    return transformers.BertConfig(**base)


def make_batch(vocab=211, batch=4, length=17, padded=True, segments=True):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        for b, n in enumerate([length, 9, 3, 12][:batch]):
            mask[b, n:] = 0
            ids[b, n:] = 0
    types = (torch.arange(length) >= length // 2).long().expand(batch, -1).clone() * mask if segments else None
    return ids, mask, types


@pytest.fixture(scope="module")
def pretraining_pair(tmp_path_factory):
    torch.manual_seed(3)
    reference = transformers.BertForPreTraining(hf_config()).eval()
    directory = tmp_path_factory.mktemp("hf")
    reference.save_pretrained(directory)
    ours = load_hf(directory).eval()
    return reference, ours, directory


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("unpad", [False, True])
def test_pretraining_logits_and_hidden_states(pretraining_pair, padded, segments, unpad):
    reference, ours, _ = pretraining_pair
    ids, mask, types = make_batch(padded=padded, segments=segments)
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ours(ids, mask, types, output_hidden_states=True, unpad=unpad)
    real = mask.bool()
    enc = out.encoder
    if unpad:
        # Unpadded outputs hold real tokens only: compare them there.
        assert torch.allclose(out.mlm_logits, ref.prediction_logits[real], atol=TOL, rtol=0)
        for ours_h, ref_h in zip(enc.hidden_states, ref.hidden_states):
            assert torch.allclose(ours_h, ref_h[real], atol=TOL, rtol=0)
    else:
        assert (out.mlm_logits - ref.prediction_logits).abs().max() <= TOL
        assert len(enc.hidden_states) == len(ref.hidden_states) == 4
        for ours_h, ref_h in zip(enc.hidden_states, ref.hidden_states):
            assert (ours_h - ref_h).abs().max() <= TOL
    assert (out.pair_logits - ref.seq_relationship_logits).abs().max() <= TOL


def test_backbone_last_hidden_and_pooled(tmp_path):
    torch.manual_seed(4)
    reference = transformers.BertModel(hf_config()).eval()
    reference.save_pretrained(tmp_path)
    ours = lmforge.load_model(tmp_path).eval()
    assert ours.task == "backbone"
    ids, mask, types = make_batch()
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = ours(ids, mask, types)
    assert (out.last_hidden_state - ref.last_hidden_state).abs().max() <= TOL
    assert (out.pooled - ref.pooler_output).abs().max() <= TOL


def test_predict_mask_selects_rows(pretraining_pair):
    reference, ours, _ = pretraining_pair
    ids, mask, types = make_batch()
    select = torch.zeros_like(mask, dtype=torch.bool)
    select[0, 3] = select[1, 1] = select[3, 7] = True
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, token_type_ids=types).prediction_logits
        for unpad in (False, True):
            out = ours(ids, mask, types, predict_mask=select, unpad=unpad).mlm_logits
            assert out.shape == (3, 211)
            assert (out - ref[select]).abs().max() <= TOL


@pytest.mark.parametrize("task,hf_class", [
    ("sequence_classification", transformers.BertForSequenceClassification),
    ("token_classification", transformers.BertForTokenClassification),
    ("question_answering", transformers.BertForQuestionAnswering),
    ("masked_lm", transformers.BertForMaskedLM),
])
def test_task_heads_match(tmp_path, task, hf_class):
    torch.manual_seed(5)
    labelled = dict(num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    reference = hf_class(hf_config(**({} if task == "question_answering" else labelled))).eval()
    reference.save_pretrained(tmp_path)
    ours = lmforge.load_model(tmp_path).eval()
    assert ours.task == task
    ids, mask, types = make_batch()
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, token_type_ids=types)
        out = ours(ids, mask, types)
    real = mask.bool()
    if task == "sequence_classification":
        assert ours.config.labels == ("a", "b", "c")
        assert (out - ref.logits).abs().max() <= TOL
    elif task == "token_classification":
        assert (out[real] - ref.logits[real]).abs().max() <= TOL
    elif task == "question_answering":
        assert (out[0][real] - ref.start_logits[real]).abs().max() <= TOL
        assert (out[1][real] - ref.end_logits[real]).abs().max() <= TOL
    else:
        assert (out.mlm_logits - ref.logits).abs().max() <= TOL


def test_round_trip_is_bit_identical(pretraining_pair, tmp_path):
    reference, ours, _ = pretraining_pair
    save_hf(ours, tmp_path / "export")
    again, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "export", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ref_state, new_state = reference.state_dict(), again.state_dict()
    assert ref_state.keys() == new_state.keys()
    for name in ref_state:
        assert torch.equal(ref_state[name], new_state[name]), name


def test_native_round_trip_and_export_of_built_model(tmp_path):
    model = lmforge.build("bert-test", seed=0)
    lmforge.save(model, tmp_path / "native")
    loaded = lmforge.load_model(tmp_path / "native")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    lmforge.save(model, tmp_path / "hf", format="hf")
    reference, info = transformers.BertForPreTraining.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not any(info.values())
    ids, mask, types = make_batch(vocab=1024)
    with torch.no_grad():
        assert (model.eval()(ids, mask, types).mlm_logits - reference.eval()(input_ids=ids, attention_mask=mask, token_type_ids=types).prediction_logits).abs().max() <= TOL


def test_strict_loading_names_the_problem(tmp_path):
    from safetensors.torch import load_file, save_file

    reference = transformers.BertForPreTraining(hf_config())
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["bert.encoder.layer.0.attention.self.extra.weight"] = torch.zeros(2)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(lmforge.UserError, match="extra.weight"):
        lmforge.load_model(tmp_path)
    del tensors["bert.encoder.layer.0.attention.self.extra.weight"]
    tensors["bert.pooler.dense.weight"] = torch.zeros(3, 3)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(lmforge.UserError, match="shape mismatch for bert.pooler.dense.weight"):
        lmforge.load_model(tmp_path)
    del tensors["bert.pooler.dense.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(lmforge.UserError, match="no weight for backbone.pooler.dense.weight"):
        lmforge.load_model(tmp_path)


def test_pytorch_bin_and_legacy_names(tmp_path):
    reference = transformers.BertForPreTraining(hf_config()).eval()
    reference.save_pretrained(tmp_path)
    from safetensors.torch import load_file

    state = load_file(tmp_path / "model.safetensors")
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in state.items()}
    state["bert.embeddings.position_ids"] = torch.arange(64)[None]
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = lmforge.load_model(tmp_path).eval()
    ids, mask, types = make_batch()
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, token_type_ids=types).prediction_logits
        assert (ours(ids, mask, types).mlm_logits - ref).abs().max() <= TOL


@pytest.mark.parametrize("fmt", ["hf", "lmforge"])
@pytest.mark.parametrize("task", ["sequence_classification", "token_classification", "question_answering", "backbone",
                                  "masked_lm"])
def test_new_head_from_pretrained_backbone(pretraining_pair, tmp_path, fmt, task):
    _, ours, directory = pretraining_pair
    if fmt == "lmforge":
        directory = lmforge.save(ours, tmp_path / "native")
    model = lmforge.load_model(directory, task=task, labels=["x", "y", "z"])
    backbone = model.backbone
    for name, tensor in ours.backbone.state_dict().items():
        if name in backbone.state_dict():
            assert torch.equal(backbone.state_dict()[name], tensor), name
    assert (backbone.pooler is not None) == (task in ("sequence_classification", "backbone"))


@pytest.mark.parametrize("fmt", ["hf", "lmforge"])
def test_classifier_with_other_labels_gets_a_new_head(tmp_path, fmt):
    model = lmforge.build("bert-test", task="sequence_classification", labels=("a", "b"), seed=1)
    directory = lmforge.save(model, tmp_path / "clf", format=fmt)
    again = lmforge.load_model(directory)
    assert again.config.labels == ("a", "b") and torch.equal(again.classifier.classifier.weight, model.classifier.classifier.weight)
    wider = lmforge.load_model(directory, labels=["a", "b", "c"])
    assert wider.classifier.classifier.weight.shape[0] == 3
    assert torch.equal(wider.backbone.embeddings.word.weight, model.backbone.embeddings.word.weight)


PRESET_COUNTS = {
    # (BertModel, BertForPreTraining) from ../shared/FAMILIES.md section 3 (transformers 5.23)
    "bert-tiny": (4_385_920, 4_433_468),
    "bert-mini": (11_170_560, 11_267_900),
    "bert-small": (28_763_648, 29_058_876),
    "bert-medium": (41_373_184, 41_668_412),
    "bert-base-uncased": (109_482_240, 110_106_428),
    "bert-large-uncased": (335_141_888, 336_226_108),
}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("preset", list(PRESET_COUNTS) + ["bert-base-cased", "bert-test"])
def test_preset_parameter_counts(preset):
    config = get_preset(preset)
    with torch.device("meta"):
        backbone = lmforge.build(preset, task="backbone")
        pretraining = lmforge.build(preset)
        mlm = lmforge.build(preset, task="masked_lm")
        reference_config = hf_config(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                                     num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                                     intermediate_size=config.intermediate_size,
                                     max_position_embeddings=config.max_positions)
        reference = transformers.BertForPreTraining(reference_config)
        reference_mlm = transformers.BertForMaskedLM(reference_config)
        reference_backbone = transformers.BertModel(reference_config)
    assert count(pretraining) == count(reference)
    assert count(backbone) == count(reference_backbone)
    assert count(mlm) == count(reference_mlm)
    if preset in PRESET_COUNTS:
        assert (count(backbone), count(pretraining)) == PRESET_COUNTS[preset]
