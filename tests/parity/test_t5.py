"""T5 (Raffel et al. 2020) through the family's own tables (lmforge.families.t5) against
transformers' T5EncoderModel, T5Model and T5ForConditionalGeneration: relative position buckets
(bidirectional in the encoder, causal in the decoder, one table in block 0 of each stack, added
unscaled to every layer's scores, none in cross-attention), unscaled scores, RMSNorm, no biases,
heads x d_kv (4 x 16) wider than d_model (48); v1.0 (relu, tied head reading the decoder output
times d_model^-0.5) and v1.1 (gated tanh-gelu, untied head, no rescale). Sequences reach past
the exact buckets (distance 8) into the logarithmic ones. Every head imports from
``save_pretrained`` files and exports back bit-identically; cached decoding equals recomputation."""

import json

import pytest
import torch
import transformers
from parity_helpers import (
    assert_close,
    check_layouts,
    padded,
    port,
    randomize,
    real_rows,
    sequences,
)
from seq2seq_helpers import check_cached_decoding, check_seq2seq_layouts

import lmforge
from lmforge.families import get_preset
from lmforge.families.t5 import WEIGHTS, config_from_hf

LENGTHS = (13, 9, 1, 11)
VERSIONS = {"v1.0": {"feed_forward_proj": "relu", "tie_word_embeddings": True},
            "v1.1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}}


def hf_config(version: str) -> transformers.T5Config:
    return transformers.T5Config(vocab_size=109, d_model=48, d_kv=16, d_ff=80, num_layers=2, num_decoder_layers=2,
                                 num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=20,
                                 dropout_rate=0.0, layer_norm_epsilon=1e-6, **VERSIONS[version])


def hf_dict(version: str) -> dict:
    """config.json as transformers 5 writes it (no default label names)."""
    return {k: v for k, v in hf_config(version).to_dict().items() if k not in ("id2label", "label2id")}


def _randomized(architecture, version: str):
    """A reference with random weights; a v1.1 head untied from the token table (transformers 5
    ties every T5 at construction; published v1.1 files load untied)."""
    torch.manual_seed(0)
    reference = architecture(hf_config(version)).eval()
    if version == "v1.1" and hasattr(reference, "lm_head"):
        reference.lm_head.weight = torch.nn.Parameter(reference.lm_head.weight.detach().clone())
    return randomize(reference, std=0.1)


@pytest.fixture(scope="module", params=sorted(VERSIONS))
def pair(request):
    version = request.param
    reference = _randomized(transformers.T5ForConditionalGeneration, version)
    config = config_from_hf(hf_dict(version))
    return version, reference, port(reference, config, WEIGHTS, "seq2seq_lm")


def test_config_reads_each_version(pair):
    version, _, ours = pair
    config = ours.config
    assert config.family == "t5" and config.head_dim == 16 and config.relative_max_distance == 20
    expected = ("plain", "relu", True, True) if version == "v1.0" else ("gated", "gelu_tanh", False, False)
    assert (config.feed_forward, config.activation, config.tie_word_embeddings,
            config.scale_output_by_inverse_sqrt_width) == expected
    # The spelling of transformers 4 (tie_word_embeddings alone, no scale_decoder_outputs) reads the same.
    old_style = {k: v for k, v in hf_dict(version).items() if k != "scale_decoder_outputs"}
    old_style["tie_word_embeddings"] = version == "v1.0"
    assert config_from_hf(old_style) == config


def test_encoder_matches_t5_encoder_model(pair):
    version, reference, ours = pair
    encoder_only = transformers.T5EncoderModel(hf_config(version)).eval()
    encoder_only.load_state_dict({k: v for k, v in reference.state_dict().items()
                                  if not k.startswith(("decoder.", "lm_head."))})
    seqs = sequences(109, lengths=LENGTHS)
    with torch.no_grad():
        refs = [encoder_only(input_ids=s[None]).last_hidden_state[0] for s in seqs]
        check_layouts(lambda ids, mask, unpad: ours.backbone.encode(ids, mask, unpad=unpad).padded(), refs, seqs,
                      f"T5EncoderModel {version} (bidirectional buckets)")


def test_decoder_and_logits_match_t5(pair):
    version, reference, ours = pair
    sources = sequences(109, lengths=LENGTHS)
    targets = sequences(109, lengths=(12, 3, 10, 1), seed=1)
    with torch.no_grad():
        refs = [reference(input_ids=s[None], decoder_input_ids=t[None], output_hidden_states=True)
                for s, t in zip(sources, targets)]
        states = [(r.encoder_last_hidden_state[0], r.decoder_hidden_states[-1][0]) for r in refs]

        def run_states(src_ids, src_mask, tgt_ids, tgt_mask, unpad):
            out = ours.backbone(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)
            return out.encoder.padded(), out.decoder.padded()

        worst = check_seq2seq_layouts(run_states, states, sources, targets, f"T5 {version} (causal buckets)")
        logits = [(r.encoder_last_hidden_state[0], r.logits[0]) for r in refs]

        def run_logits(src_ids, src_mask, tgt_ids, tgt_mask, unpad):
            out = ours.backbone(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)
            return out.encoder.padded(), ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad=unpad)

        worst = max(worst, check_seq2seq_layouts(run_logits, logits, sources, targets,
                                                 f"T5ForConditionalGeneration {version} logits"))
    print(f"T5 {version} encoder/decoder states and logits: max abs diff {worst:.2e}")


def test_cache_equals_recomputation(pair):
    """Through a T5 decoder with an LM head: the position bias of each new query is the cached one's."""
    check_cached_decoding(pair[2], 109)


HEADS = {"backbone": transformers.T5Model, "seq2seq_lm": transformers.T5ForConditionalGeneration}


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("task", sorted(HEADS))
def test_every_head_imports_matches_and_exports_bit_identically(task, version, tmp_path):
    architecture = HEADS[task]
    reference = _randomized(architecture, version)
    reference.save_pretrained(tmp_path / "theirs")
    ours = lmforge.load_model(tmp_path / "theirs").eval()
    assert (ours.config.family, ours.task) == ("t5", task)
    assert ours.config == config_from_hf(hf_dict(version))

    sources = sequences(109, lengths=LENGTHS)
    targets = sequences(109, lengths=(12, 3, 10, 1), seed=1)
    with torch.no_grad():
        alone = [reference(input_ids=s[None], decoder_input_ids=t[None]) for s, t in zip(sources, targets)]
        expected = [r.logits[0] if task == "seq2seq_lm" else r.last_hidden_state[0] for r in alone]
        src_ids, src_mask = padded(sources, "left")
        tgt_ids, tgt_mask = padded(targets, "right")
        out = ours(src_ids, src_mask, tgt_ids, tgt_mask, unpad=True)
        mine = out if task == "seq2seq_lm" else out.decoder.padded()
        worst = max(assert_close(row, ref, f"{architecture.__name__} {version}, sequence {index}")
                    for index, (row, ref) in enumerate(zip(real_rows(mine, tgt_mask), expected)))
    print(f"{architecture.__name__} {version}: max abs diff {worst:.2e}")

    lmforge.save(ours, tmp_path / "ours", format="hf")
    written = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert written["architectures"] == [architecture.__name__]
    back, info = architecture.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.values()), info
    assert back.config.scale_decoder_outputs == (version == "v1.0")
    theirs = reference.state_dict()
    assert back.state_dict().keys() == theirs.keys()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name
    if task == "seq2seq_lm":  # the reloaded reference computes what ours does (untied head kept untied)
        with torch.no_grad():
            assert_close(back(input_ids=sources[0][None], decoder_input_ids=targets[0][None]).logits[0],
                         expected[0], f"{architecture.__name__} {version} after the round trip")
    lmforge.save(ours, tmp_path / "native")
    for directory in ("ours", "native"):
        again = lmforge.load_model(tmp_path / directory)
        assert (again.config, again.task) == (ours.config, ours.task)
        for name, tensor in again.state_dict().items():
            assert torch.equal(tensor, ours.state_dict()[name]), (directory, name)


@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_t5_encoder_model_imports_matches_and_exports_bit_identically(version, tmp_path):
    """T5EncoderModel is an architecture="encoder" config of the family: lmforge's single-stack
    encoder with T5's switches (the relative table in its first block, a final norm)."""
    reference = _randomized(transformers.T5EncoderModel, version)
    reference.save_pretrained(tmp_path / "theirs")
    ours = lmforge.load_model(tmp_path / "theirs").eval()
    assert (ours.config.architecture, ours.task) == ("encoder", "backbone")
    seqs = sequences(109, lengths=LENGTHS)
    with torch.no_grad():
        refs = [reference(input_ids=s[None]).last_hidden_state[0] for s in seqs]
        check_layouts(lambda ids, mask, unpad: ours(ids, mask, unpad=unpad).padded(), refs, seqs,
                      f"T5EncoderModel {version}, encoder-only config")
    lmforge.save(ours, tmp_path / "ours", format="hf")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["architectures"] == ["T5EncoderModel"]
    back, info = transformers.T5EncoderModel.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.values()), info
    assert back.state_dict().keys() == reference.state_dict().keys()
    for name, tensor in back.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name
    again = lmforge.load_model(tmp_path / "ours")
    assert again.config == ours.config


def test_fan_in_initialisation_is_t5s():
    """T5's presets start from transformers' T5 initialisation: each matrix N(0, 1/sqrt(fan_in))
    (the query also 1/sqrt(head_dim): T5 leaves scores unscaled), token table and output
    layer N(0, 1), the relative position table N(0, 1/sqrt(d_model)); std within 5%."""
    config = get_preset("t5-small").replace(vocab_size=4000, num_layers=1, num_decoder_layers=1)
    model = lmforge.build(config, task="seq2seq_lm", seed=0)
    d, kv, ff = config.hidden_size, config.head_dim, config.intermediate_size
    attention = model.backbone.encoder.layers[0].attention.sublayer
    queries = attention.qkv.weight[: attention.query_width]
    keys = attention.qkv.weight[attention.query_width:]
    expected = {"q": (queries, (d * kv) ** -0.5), "k/v": (keys, d ** -0.5),
                "o": (attention.output.weight, (config.num_heads * kv) ** -0.5),
                "wo": (model.backbone.encoder.layers[0].feed_forward.sublayer.down.weight, ff ** -0.5),
                "shared": (model.backbone.shared.weight, 1.0)}
    for what, (weight, std) in expected.items():
        assert abs(float(weight.detach().std()) / std - 1) < 0.05, what
