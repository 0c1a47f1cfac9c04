"""Decoder presets against transformers: parameter counts of every preset (built on the meta
device on both sides, so the 7B model costs nothing) and the configs' round trip through
config.json; Llama 3's rotary scaling against LlamaRotaryEmbedding."""

import pytest
import torch
import transformers

import lmforge
from lmforge.cli.models import parameter_count
from lmforge.families import get_family
from lmforge.families.llama import PRESETS as LLAMA_PRESETS
from lmforge.models.positions import RotaryEmbedding

# From ../shared/FAMILIES.md section 3 (transformers 5.23) and the published model cards.
PUBLISHED = {"gpt2": 124_439_808, "openai-gpt": 116_534_784}

DECODER_PRESETS = [(family, name) for family in ("openai-gpt", "gpt2", "llama")
                   for name in get_family(family).presets]
_CAUSAL_LM = {"openai-gpt": "OpenAIGPTLMHeadModel", "gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
_CONFIG = {"openai-gpt": "OpenAIGPTConfig", "gpt2": "GPT2Config", "llama": "LlamaConfig"}


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family,preset", DECODER_PRESETS)
def test_preset_parameter_count_equals_transformers(family, preset):
    config = get_family(family).presets[preset]
    hf = get_family(family).config_to_hf(config, "causal_lm")
    with torch.device("meta"):
        reference = getattr(transformers, _CAUSAL_LM[family])(getattr(transformers, _CONFIG[family])(**hf))
        ours = lmforge.build(preset, task="causal_lm")
    assert count(ours) == count(reference) == parameter_count(config)
    if preset in PUBLISHED:
        assert count(ours) == PUBLISHED[preset]
    # config.json written for the preset reads back to the same config.
    assert get_family(family).config_from_hf(hf) == config


@pytest.mark.parametrize("preset", ["meta-llama/Llama-3.2-1B", "llama-tiny"])
def test_rotary_tables_equal_llama_rotary_embedding(preset):
    config = LLAMA_PRESETS[preset]
    hf = transformers.LlamaConfig(**get_family("llama").config_to_hf(config, "causal_lm"))
    reference = transformers.models.llama.modeling_llama.LlamaRotaryEmbedding(hf)
    ours = RotaryEmbedding(config)
    assert torch.equal(ours.inv_freq, reference.inv_freq)
    positions = torch.tensor([[0, 1, 7, 100, 5000, 131071]])
    cos, sin = reference(torch.zeros(1, dtype=torch.float32), positions)
    our_cos, our_sin = ours(positions, torch.float32)
    assert torch.equal(our_cos[:, :, 0], cos) and torch.equal(our_sin[:, :, 0], sin)


def test_llama3_scaling_keeps_high_and_stretches_low_frequencies():
    scaled = RotaryEmbedding(LLAMA_PRESETS["meta-llama/Llama-3.2-1B"]).inv_freq
    plain = RotaryEmbedding(LLAMA_PRESETS["meta-llama/Llama-3.2-1B"].replace(rope_scaling="none")).inv_freq
    wavelength = 2 * torch.pi / plain
    assert torch.equal(scaled[wavelength < 8192 / 4], plain[wavelength < 8192 / 4])
    assert torch.equal(scaled[wavelength > 8192], plain[wavelength > 8192] / 32)
    medium = (wavelength >= 8192 / 4) & (wavelength <= 8192)
    assert medium.any() and ((scaled[medium] < plain[medium]) & (scaled[medium] > plain[medium] / 32)).all()


def test_llama_reference_count_of_families_md():
    """FAMILIES.md section 3's LLaMA-style reference (12, 768, 12 heads, I 2048, V 32000), whose
    counts follow the closed form 4H^2 + 3HI + 2H per layer."""
    from lmforge.families.llama import llama_config

    config = llama_config(12, 768, 12, 2048)
    with torch.device("meta"):
        backbone = lmforge.build(config, task="backbone")
        causal_lm = lmforge.build(config, task="causal_lm")
    assert (count(backbone), count(causal_lm)) == (109_529_856, 134_105_856)
    h, i, v = 768, 2048, 32000
    assert count(backbone) == v * h + 12 * (4 * h * h + 3 * h * i + 2 * h) + h


def test_half_precision_models_keep_fp32_rotary_frequencies():
    """Llama 3.2 ships bf16 weights: the model is cast, but transformers keeps inv_freq in fp32,
    and so must we (bf16 frequencies would rotate position 1000 by whole radians off)."""
    config = LLAMA_PRESETS["llama-tiny"].replace(rope_theta=500000.0, rope_scaling="llama3", rope_scaling_factor=32.0,
                                                 rope_original_max_positions=64)
    model = lmforge.build(config, task="causal_lm").to(torch.bfloat16)
    rotary = model.backbone.rotary
    assert rotary.inv_freq.dtype == torch.float32
    assert torch.equal(rotary.inv_freq, RotaryEmbedding(config).inv_freq)
    assert model.backbone.embeddings.word.weight.dtype == torch.bfloat16
    ids = torch.tensor([[5, 6, 7]])
    assert model(ids).dtype == torch.bfloat16
