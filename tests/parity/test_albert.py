"""ALBERT parity against transformers' Albert* classes built from tiny configs with random
weights (fp32, CPU): the factorised embedding (tables and LayerNorm of width E, then E -> H),
cross-layer sharing in its general form (one group applied L times as released, and 2 groups of
2 inner layers over 4 steps), the MLM head through E, the SOP head on the pooler; strict round
trips; every preset's size."""

import pytest
import torch
import transformers
from encoder_helpers import LABELLED, check_round_trip, check_task, count, hf_config_of, load_through_files
from parity_helpers import randomize

import lmforge

VOCAB = 211
SHARING = {"one group": dict(num_hidden_layers=3, num_hidden_groups=1, inner_group_num=1),
           "2 groups x 2 inner": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2)}


def hf_config(sharing: str, **kw):
    base = dict(vocab_size=VOCAB, embedding_size=24, hidden_size=64, num_attention_heads=4, intermediate_size=96,
                max_position_embeddings=64, hidden_act="gelu_new", attn_implementation="sdpa", **SHARING[sharing])
    return transformers.AlbertConfig(**{**base, **kw})


TASKS = {
    "backbone": transformers.AlbertModel,
    "pretraining": transformers.AlbertForPreTraining,
    "masked_lm": transformers.AlbertForMaskedLM,
    "sequence_classification": transformers.AlbertForSequenceClassification,
    "token_classification": transformers.AlbertForTokenClassification,
    "question_answering": transformers.AlbertForQuestionAnswering,
}


@pytest.fixture(scope="module", params=[(task, sharing) for sharing in SHARING for task in TASKS],
                ids=lambda p: f"{p[0]}-{p[1].replace(' ', '')}")
def pair(request, tmp_path_factory):
    task, sharing = request.param
    labelled = LABELLED if "classification" in task else {}
    reference = randomize(TASKS[task](hf_config(sharing, **labelled)).eval(), seed=12)
    ours = load_through_files(reference, tmp_path_factory.mktemp("hf"))
    return task, sharing, reference, ours


def test_every_head_matches_in_every_layout(pair):
    task, sharing, reference, ours = pair
    assert ours.task == task and ours.config.family == "albert"
    groups = ours.backbone.encoder.groups
    assert len(groups) == SHARING[sharing]["num_hidden_groups"]
    assert all(len(group.layers) == SHARING[sharing]["inner_group_num"] for group in groups)
    worst = check_task(reference, ours, task, VOCAB, f"Albert {task} ({sharing})")
    print(f"Albert {task} ({sharing}): max abs diff {worst:.2e}")


def test_round_trip_is_bit_identical(pair, tmp_path):
    _, _, reference, ours = pair
    check_round_trip(reference, ours, tmp_path / "export")


def test_shared_layers_run_in_the_reference_order():
    """Layer i runs group floor(i / (L / groups)); each group runs its inner layers in order."""
    config = lmforge.build("albert-tiny").config.replace(num_layers=6, num_layer_groups=3, layers_per_group=2)
    stack = lmforge.build(config, task="backbone").backbone.encoder
    order = [(g, j) for block in stack.schedule for g, group in enumerate(stack.groups)
             for j, layer in enumerate(group.layers) if layer is block]
    assert order == [(0, 0), (0, 1), (0, 0), (0, 1), (1, 0), (1, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 0), (2, 1)]
    assert not hasattr(stack, "layers")


def test_released_layout_loads_as_one_shared_layer(tmp_path):
    """A v2-shaped file (one group, one inner layer): 12 steps, one set of layer weights."""
    reference = transformers.AlbertForMaskedLM(hf_config("one group", num_hidden_layers=12))
    ours = load_through_files(reference, tmp_path)
    assert len(ours.backbone.encoder.schedule) == 12 and len(set(map(id, ours.backbone.encoder.schedule))) == 1


PRESET_COUNTS = {
    # (AlbertModel, AlbertForPreTraining, AlbertForMaskedLM) from ../shared/FAMILIES.md section 3
    "albert-base-v2": (11_683_584, 11_813_810, 11_221_680),
    "albert-large-v2": (17_683_968, 17_847_474, 16_795_824),
    "albert-xlarge-v2": (58_724_864, 59_021_490, 54_821_040),
    "albert-xxlarge-v2": (222_595_584, 223_158_450, 206_368_944),
}
PRESETS = ["albert-tiny"] + [f"albert-{size}-v{v}" for v in (1, 2) for size in ("base", "large", "xlarge", "xxlarge")]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_parameter_counts(preset):
    tasks = {"backbone": transformers.AlbertModel, "pretraining": transformers.AlbertForPreTraining,
             "masked_lm": transformers.AlbertForMaskedLM}
    with torch.device("meta"):
        ours = tuple(count(lmforge.build(preset, task=task)) for task in tasks)
        theirs = tuple(count(cls(hf_config_of(preset, task))) for task, cls in tasks.items())
    assert ours == theirs
    size = preset.replace("-v1", "-v2")
    if size in PRESET_COUNTS:  # v1 and v2 differ only in activation and dropout
        assert ours == PRESET_COUNTS[size]


def test_gradients_through_shared_layers_match_transformers(tmp_path):
    """MLM + SOP loss on an unpadded batch: every parameter's gradient (a shared layer's sums
    over every step that runs it) equals AlbertForPreTraining's."""
    import torch.nn.functional as F
    from parity_helpers import assert_close, padded, sequences

    from lmforge.families.albert import WEIGHTS

    config = lmforge.build("albert-tiny").config.replace(num_layers=4, num_layer_groups=2, layers_per_group=2,
                                                         vocab_size=VOCAB)
    model = lmforge.build(config, seed=4).eval()
    lmforge.save(model, tmp_path, format="hf")
    reference = transformers.AlbertForPreTraining.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    ids, mask = padded(sequences(VOCAB), "right")
    labels = torch.where(mask.bool(), ids, torch.full_like(ids, -100))
    order = torch.tensor([0, 1, 1, 0])
    out = model(ids, mask, predict_mask=mask.bool(), unpad=True)
    (F.cross_entropy(out.mlm_logits, ids[mask.bool()]) + F.cross_entropy(out.pair_logits, order)).backward()
    reference(input_ids=ids, attention_mask=mask, labels=labels, sentence_order_label=order).loss.backward()
    theirs = dict(reference.named_parameters())
    ours = WEIGHTS.export_tensors({name: p.grad for name, p in model.named_parameters()}, config)
    for hf_name, grad in ours.items():
        assert_close(grad, theirs[hf_name].grad, f"gradient of {hf_name}")
    assert len(ours) == sum(1 for _ in reference.parameters())


def test_native_round_trip_keeps_the_sharing(tmp_path):
    config = lmforge.build("albert-tiny").config.replace(num_layers=4, num_layer_groups=2, layers_per_group=2)
    model = lmforge.build(config, seed=1)
    loaded = lmforge.load_model(lmforge.save(model, tmp_path / "native"))
    assert loaded.config == model.config and len(loaded.backbone.encoder.schedule) == 8
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
