"""Encoder-decoder presets (BART, T5) against transformers: parameter counts of every preset,
built on the meta device on both sides, against FAMILIES.md section 3 where it has them, and
the configs' round trip through config.json."""

import pytest
import torch
import transformers

import lmforge
from lmforge.cli.models import parameter_count
from lmforge.families import get_family, get_preset

# FAMILIES.md section 3 (transformers 5.23) and the published model cards.
PUBLISHED = {"facebook/bart-base": 139_420_416, "facebook/bart-large": 406_291_456, "t5-small": 60_506_624,
             "t5-base": 222_903_552, "t5-large": 737_668_096, "google/t5-v1_1-small": 76_961_152,
             "google/t5-v1_1-base": 247_577_856, "google/flan-t5-small": 76_961_152}
PRESETS = [(family, name) for family in ("bart", "t5") for name in get_family(family).presets]
_CLASSES = {"bart": ("BartConfig", "BartForConditionalGeneration"), "t5": ("T5Config", "T5ForConditionalGeneration")}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family,preset", PRESETS)
def test_preset_parameter_count_equals_transformers(family, preset):
    config = get_family(family).presets[preset]
    hf = get_family(family).config_to_hf(config, "seq2seq_lm")
    config_class, model_class = (getattr(transformers, name) for name in _CLASSES[family])
    with torch.device("meta"):
        reference = model_class(config_class(**hf))
        if not config.tie_word_embeddings:
            # transformers 5 ties every T5 head at construction; v1.1 checkpoints load untied.
            reference.lm_head.weight = torch.nn.Parameter(torch.empty_like(reference.lm_head.weight))
        ours = lmforge.build(preset, task="seq2seq_lm")
    assert count(ours) == count(reference) == parameter_count(config)
    if preset in PUBLISHED:
        assert count(ours) == PUBLISHED[preset]
    assert get_family(family).config_from_hf(hf) == config


def test_tiny_presets_have_the_agreed_shapes():
    bart, t5 = get_preset("bart-tiny"), get_preset("t5-tiny")
    assert (bart.vocab_size, bart.hidden_size, bart.num_layers, bart.num_decoder_layers, bart.num_heads,
            bart.intermediate_size, bart.max_positions, bart.position_offset) == (50265, 128, 2, 2, 4, 512, 512, 2)
    assert (t5.vocab_size, t5.hidden_size, t5.head_dim, t5.num_heads, t5.intermediate_size, t5.num_layers,
            t5.num_decoder_layers, t5.relative_buckets, t5.relative_max_distance) == (
        32128, 128, 32, 4, 512, 2, 2, 32, 128)
    assert (t5.feed_forward, t5.activation, t5.tie_word_embeddings, t5.scale_output_by_inverse_sqrt_width) == (
        "gated", "gelu_tanh", False, False)
