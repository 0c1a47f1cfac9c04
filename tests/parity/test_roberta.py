"""RoBERTa parity against transformers' Roberta* classes built from one tiny config with random
weights (fp32, CPU): positions numbered from the padding index (rows 2, 3, ... whatever the
padding side), one segment type, eps 1e-5, the exact-gelu LM head, the dense + tanh
classification head on <s>; strict round trips; every preset's size."""

import pytest
import torch
import transformers
from encoder_helpers import LABELLED, check_round_trip, check_task, count, hf_config_of, load_through_files
from parity_helpers import randomize

import lmforge
from lmforge.families import get_preset

VOCAB = 211


def hf_config(**kw):
    # hidden_act gelu_new: the LM head must still use erf-gelu, so the two are told apart.
    base = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
                max_position_embeddings=66, type_vocab_size=1, layer_norm_eps=1e-5, hidden_act="gelu_new",
                pad_token_id=1, bos_token_id=0, eos_token_id=2, attn_implementation="sdpa")
    return transformers.RobertaConfig(**{**base, **kw})


TASKS = {
    "backbone": transformers.RobertaModel,
    "masked_lm": transformers.RobertaForMaskedLM,
    "sequence_classification": transformers.RobertaForSequenceClassification,
    "token_classification": transformers.RobertaForTokenClassification,
    "question_answering": transformers.RobertaForQuestionAnswering,
}


@pytest.fixture(scope="module", params=list(TASKS))
def pair(request, tmp_path_factory):
    task = request.param
    labelled = LABELLED if "classification" in task else {}
    reference = randomize(TASKS[task](hf_config(**labelled)).eval(), seed=11)
    ours = load_through_files(reference, tmp_path_factory.mktemp("hf"))
    return task, reference, ours


def test_every_head_matches_in_every_layout(pair):
    task, reference, ours = pair
    assert ours.task == task and ours.config.family == "roberta"
    assert ours.config.max_positions == 64 and ours.config.position_offset == 2
    worst = check_task(reference, ours, task, VOCAB, f"Roberta {task}")
    print(f"Roberta {task}: max abs diff {worst:.2e}")


def test_round_trip_is_bit_identical(pair, tmp_path):
    _, reference, ours = pair
    check_round_trip(reference, ours, tmp_path / "export")


def test_positions_follow_fairseq_under_left_padding(tmp_path):
    """The reference with padding ids in the batch (its positions come from the ids) gives the
    real tokens of a left-padded row the same rows 2, 3, ... as ours."""
    reference = randomize(transformers.RobertaModel(hf_config()).eval(), seed=11)
    ours = load_through_files(reference, tmp_path)
    ids = torch.tensor([[1, 1, 0, 17, 18, 2], [0, 17, 18, 19, 20, 2]])
    mask = (ids != 1).long()
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        mine = ours(ids, mask).last_hidden_state
    assert (mine[mask.bool()] - theirs[mask.bool()]).abs().max() <= 1e-5


def test_pretraining_model_is_the_masked_lm(tmp_path):
    """RoBERTa pretrains with MLM alone: the "pretraining" model has no pair head and no pooler
    and exports as RobertaForMaskedLM."""
    model = lmforge.build("roberta-tiny", seed=0)
    assert model.pair_head is None and model.backbone.pooler is None
    lmforge.save(model, tmp_path, format="hf")
    reference, info = transformers.RobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values())
    ids = torch.randint(3, 1024, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model.eval()(ids).mlm_logits - reference.eval()(input_ids=ids).logits).abs().max()
    assert diff <= 1e-5
    assert lmforge.load_model(tmp_path).task == "masked_lm"


PRESET_COUNTS = {
    # (RobertaModel, RobertaForMaskedLM) from ../shared/FAMILIES.md section 3 (transformers 5.23)
    "roberta-base": (124_645_632, 124_697_433),
    "roberta-large": (355_359_744, 355_412_057),
}


@pytest.mark.parametrize("preset", ["roberta-tiny", "distilroberta-base", "roberta-base", "roberta-large"])
def test_preset_parameter_counts(preset):
    with torch.device("meta"):
        ours = {task: count(lmforge.build(preset, task=task)) for task in ("backbone", "masked_lm", "pretraining")}
        theirs = {"backbone": count(transformers.RobertaModel(hf_config_of(preset, "backbone"))),
                  "masked_lm": count(transformers.RobertaForMaskedLM(hf_config_of(preset, "masked_lm")))}
    assert ours["backbone"] == theirs["backbone"]
    assert ours["masked_lm"] == ours["pretraining"] == theirs["masked_lm"]
    if preset in PRESET_COUNTS:
        assert (ours["backbone"], ours["masked_lm"]) == PRESET_COUNTS[preset]
    assert get_preset(preset).max_positions + get_preset(preset).position_offset in (130, 514)


def test_published_mlm_file_with_a_pooler_loads(tmp_path):
    """roberta-base's RobertaForMaskedLM file still holds roberta.pooler.*; transformers ignores
    it there, and so does lmforge (the masked-LM model reads no pooler)."""
    from safetensors.torch import load_file, save_file

    reference = randomize(transformers.RobertaForMaskedLM(hf_config()).eval(), seed=3)
    reference.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["roberta.pooler.dense.weight"], tensors["roberta.pooler.dense.bias"] = torch.ones(64, 64), torch.ones(64)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    ours = lmforge.load_model(tmp_path).eval()
    assert ours.task == "masked_lm" and ours.backbone.pooler is None
    ids = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(ids).mlm_logits - reference(input_ids=ids).logits).abs().max() <= 1e-5


def test_gradients_match_transformers(tmp_path):
    """Masked-LM loss on an unpadded batch: every parameter's gradient equals
    RobertaForMaskedLM's (positions from row 2, the exact-gelu head, the tied decoder)."""
    import torch.nn.functional as F
    from parity_helpers import assert_close, padded, sequences

    from lmforge.families.roberta import WEIGHTS

    model = lmforge.build("roberta-tiny", task="masked_lm", seed=4, vocab_size=VOCAB).eval()
    lmforge.save(model, tmp_path, format="hf")
    reference = transformers.RobertaForMaskedLM.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    ids, mask = padded(sequences(VOCAB), "right", pad_id=1)
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    F.cross_entropy(model(ids, mask, predict_mask=mask.bool(), unpad=True).mlm_logits, ids[mask.bool()]).backward()
    reference(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    theirs = dict(reference.named_parameters())
    ours = WEIGHTS.export_tensors({name: p.grad for name, p in model.named_parameters()}, model.config)
    for hf_name, grad in ours.items():
        assert_close(grad, theirs[hf_name].grad, f"gradient of {hf_name}")
    assert len(ours) == sum(1 for _ in reference.parameters())
